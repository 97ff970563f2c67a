"""Mapping files: load, validate, and compile into a MappingPlan once, before any row is read.

    plan = load_mapping("mapping.yaml")   # or load_mapping() for the packaged default
    plan.required_columns                 # ('context', 'context.event_id', ..., 'items', ...)

Validation happens in three steps, each failing with MappingFileError naming the file, the key
path and the fix: YAML syntax (duplicate keys included), the JSON schema in
transforms.mapping_schema (unknown keys, wrong types, unknown CAPI fields or event types), then
rules a schema cannot express (path and template syntax, `X` placement, ISO codes, phone
regions, an event name listed under two types). The format is documented in docs/mapping.md.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import importlib.resources
import os
from collections.abc import Callable
from typing import Any

import phonenumbers
import yaml

from transforms.errors import InvalidValueError, MappingFileError
from transforms.events import CUSTOM
from transforms.mapping_guards import check_path_characters, check_yaml_size
from transforms.mapping_schema import PRESET_FILES, check_schema, format_problems, yaml_type
from transforms.money import CURRENCY_EXPONENTS, MAJOR
from transforms.paths import (
    EACH,
    NO_PLACEHOLDERS,
    Path,
    PathSyntaxError,
    Template,
    ValueSource,
    compile_reference,
    defaulted_value,
    present,
    split_alternatives,
    template_text,
)
from transforms.source_url import is_absolute_url
from transforms.timestamps import MILLISECONDS, to_epoch_ms
from transforms.user_fields import DEFAULT_PROFILE, LOGICAL_FIELDS
from transforms.validate import check_custom_event_name

DEFAULT_MAPPING_RESOURCE = "default_mapping.yaml"
PRESETS_DIRECTORY = "presets"
DEFAULT_MAPPING_NAME = "<default mapping>"
DEFAULT_ACTION_SOURCE = "web"
DEFAULT_CONSENT_VALUES = (True, 1, "true", "yes", "y", "1", "granted")


# --- the compiled plan ---------------------------------------------------------------------------

class ItemValueSource:
    """A contents item field: fallbacks that read the item (`items.X.id` -> `id` of each item)
    or the row (`content_type`), then a default. Emptiness is paths.present. Picklable."""

    __slots__ = ("name", "refs", "has_constant", "constant", "default", "placeholders",
                 "_defaulted", "get")

    def __init__(self, name: str, refs: tuple[tuple[bool, Path], ...] = (), *,
                 has_constant: bool = False, constant: Any = None, default: Any = None,
                 placeholders: frozenset[str] = NO_PLACEHOLDERS):
        self.name = name
        self.refs = tuple(refs)   # (reads the item?, path)
        self.has_constant = has_constant
        self.constant = constant
        self.default = default
        self.placeholders = frozenset(placeholders)
        self._defaulted = f"{name}.defaulted"
        self.get = self._get
        if has_constant or placeholders or not self.refs:
            return
        positions = tuple((reads_item, getattr(path, "present_index", None))
                          for reads_item, path in self.refs)
        if all(index is not None for _, index in positions):
            self.get = _present_item_positions_getter(positions, default, self._defaulted)
        elif default is None and len(self.refs) == 1:
            self.get = _single_item_getter(*self.refs[0])

    def __getstate__(self):
        return (self.name, self.refs, self.has_constant, self.constant, self.default,
                self.placeholders)

    def __setstate__(self, state):
        self.__init__(state[0], state[1], has_constant=state[2], constant=state[3],
                      default=state[4], placeholders=state[5])

    def with_refs(self, refs: tuple[tuple[bool, Any], ...]) -> ItemValueSource:
        state = list(self.__getstate__())
        state[1] = tuple(refs)
        copy = ItemValueSource.__new__(ItemValueSource)
        copy.__setstate__(tuple(state))
        return copy

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemValueSource) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.name, self.refs))

    def __repr__(self) -> str:
        return f"ItemValueSource({self.name!r}, {self.refs!r}, default={self.default!r})"

    def _get(self, item: Any, row: Any, counters: Any = None) -> Any:
        """The value for one item of `row`; counts `<name>.defaulted` when the default is used."""
        if self.has_constant:
            return self.constant
        placeholders = self.placeholders
        for reads_item, path in self.refs:
            value = present(path.get(item if reads_item else row), placeholders)
            if value is not None:
                return value
        return defaulted_value(self.default, counters, self._defaulted)


def _present_item_positions_getter(positions: tuple[tuple[bool, int], ...], default: Any,
                                   defaulted: str) -> Callable[..., Any]:
    """ItemValueSource.get when every reference is a position of a `present` value in the item
    tuple or the row tuple (transforms.columnar's item-tuple layout)."""
    if len(positions) == 1 and positions[0][0] and default is None:
        index = positions[0][1]

        def get_at(item: Any, row: Any, counters: Any = None) -> Any:
            return item[index]
        return get_at

    def get(item: Any, row: Any, counters: Any = None) -> Any:
        for reads_item, index in positions:
            value = (item if reads_item else row)[index]
            if value is not None:
                return value
        return defaulted_value(default, counters, defaulted)
    return get


def _single_item_getter(reads_item: bool, path: Any) -> Callable[..., Any]:
    """ItemValueSource.get for the common case: one path, no default, no placeholders."""
    get_value = path.get
    if reads_item:
        def get(item: Any, row: Any, counters: Any = None) -> Any:
            return present(get_value(item))
    else:
        def get(item: Any, row: Any, counters: Any = None) -> Any:
            return present(get_value(row))
    return get


@dataclasses.dataclass(frozen=True)
class ContentsPlan:
    path: Path | None                                   # the list, e.g. items; None with group_by:
                                                        # each row of the group is one item
    fields: tuple[tuple[str, ItemValueSource], ...]     # CAPI item field -> source
    amount_unit: str = MAJOR


@dataclasses.dataclass(frozen=True)
class ConsentPlan:
    source: ValueSource
    granted: tuple[Any, ...] = DEFAULT_CONSENT_VALUES   # strings compared lower-cased

    def is_granted(self, row: Any) -> bool:
        value = self.source.get(row)
        if isinstance(value, str):
            value = value.strip().lower()
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None:
            return False
        return any(value == g and type(value) is type(g) for g in self.granted)


def filter_text(value: Any) -> str | None:
    """How a filter compares values: stripped, lower-cased text ('Paid ' -> 'paid', 2.0 -> '2')."""
    text = template_text(value)
    return text.lower() if text is not None else None


@dataclasses.dataclass(frozen=True)
class RowFilter:
    """`{path: financial_status, in: [paid, partially_refunded]}`: rows whose value is not
    listed (or, with not_in, is listed) are skipped as filtered_out, never dead-lettered."""

    source: ValueSource
    values: frozenset[str]     # filter_text of each listed value
    keep_listed: bool          # in: keep the listed values; not_in: skip them

    def keeps(self, row: Any) -> bool:
        return (filter_text(self.source.get(row)) in self.values) is self.keep_listed


@dataclasses.dataclass(frozen=True)
class MappingPlan:
    """A validated, compiled mapping. Frozen and picklable (Beam ships it to workers)."""

    name: str                                   # the mapping file, for messages
    id: ValueSource
    type: ValueSource                           # the source event name
    event_names: tuple[tuple[str, str], ...]    # (lower-case source name, CAPI type)
    exclude: tuple[str, ...]                    # lower-case source names or CAPI types
    timestamp_ms: ValueSource | None = None
    timestamp_unit: str = MILLISECONDS
    custom_event_name: ValueSource | None = None
    oppref: ValueSource | None = None
    action_source: ValueSource | None = None
    source_url: ValueSource | None = None
    source_url_keep_query: bool = False         # event.source_url: {path: ..., keep_query: true}
    opt_out: ValueSource | None = None
    amount: ValueSource | None = None
    amount_unit: str = MAJOR
    currency: ValueSource | None = None
    plan_id: ValueSource | None = None
    contents: ContentsPlan | None = None
    custom_data: tuple[tuple[str, ValueSource], ...] = ()
    user_enabled: bool = True
    user_profile: str = DEFAULT_PROFILE
    default_phone_region: str | None = None
    user_fields: tuple[tuple[str, ValueSource], ...] = ()
    consent: ConsentPlan | None = None
    pixel_id: ValueSource | None = None
    filters: tuple[RowFilter, ...] = ()
    group_by: ValueSource | None = None          # rows with one key value make one event
    base: str = "default"                        # what the plan's unlisted fields come from:
                                                 # "default" or the preset it is or extends
    required_columns: tuple[str, ...] = ()
    """Every top-level column the plan may read. A dotted path yields all its readings
    (`user.email` -> `user`, `user.email`); intersect with the source's schema."""

    def event_type_for(self, name: str) -> str:
        return dict(self.event_names).get(name.strip().lower(), CUSTOM)

    def source_paths(self) -> tuple[Path, ...]:
        """Every path the plan reads from a row, once each, in plan order (item-level paths
        such as the `id` of `items.X.id` are not row paths; their list `items` is)."""
        found: dict[Path, None] = {}

        def record(path: Path) -> Path:
            found.setdefault(path)
            return path
        rewrite_row_paths(self, record)
        return tuple(found)


def columns_of(paths: tuple[Path, ...]) -> tuple[str, ...]:
    """The top-level columns `paths` may read, once each, in order."""
    return tuple(dict.fromkeys(column for path in paths for column in path.top_level_columns()))


def rewrite_row_paths(node: Any, replace: Callable[[Path], Any],
                      replace_item: Callable[[Path], Any] | None = None) -> Any:
    """`node` (a plan or any part of one) with every row-level Path replaced by `replace(path)`
    and, when `replace_item` is given, every path read from a contents item by it.

    The one walk over a plan's fields: `MappingPlan.source_paths` records with it and
    transforms.columnar swaps in tuple positions with it, so a new plan field is seen by both.
    """
    if isinstance(node, Path):
        return replace(node)
    if isinstance(node, Template):
        return node.with_paths(replace)
    if isinstance(node, ValueSource):
        return node.with_refs(tuple(rewrite_row_paths(ref, replace) for ref in node.refs))
    if isinstance(node, ItemValueSource):
        return node.with_refs(tuple(
            (reads_item, (path if replace_item is None else replace_item(path)) if reads_item
             else replace(path)) for reads_item, path in node.refs))
    if isinstance(node, tuple):
        return tuple(rewrite_row_paths(member, replace, replace_item) for member in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {field.name: rewrite_row_paths(getattr(node, field.name), replace, replace_item)
                   for field in dataclasses.fields(node) if field.name != "required_columns"}
        return dataclasses.replace(node, **changes)
    return node


# --- public entry points -------------------------------------------------------------------------

def default_mapping_text() -> str:
    """The packaged default mapping (what `--print-default-mapping` prints)."""
    return importlib.resources.files("transforms").joinpath(DEFAULT_MAPPING_RESOURCE).read_text(
        encoding="utf-8")


def preset_text(name: str) -> str:
    """A packaged preset (`--print-mapping ga4`); names are mapping_schema.PRESET_FILES."""
    if name not in PRESET_FILES:
        raise MappingFileError(
            f"There is no preset named {name!r}. Fix: use one of {', '.join(PRESET_FILES)}, or"
            " pass the path of a YAML mapping file")
    return importlib.resources.files("transforms").joinpath(PRESETS_DIRECTORY).joinpath(
        PRESET_FILES[name]).read_text(encoding="utf-8")


def load_mapping(path: str | None = None) -> MappingPlan:
    """Load, validate and compile a mapping file; None = the packaged default mapping; a
    preset's name (`ga4`, `segment`, `rudderstack`, `snowplow`, `shopify`) = that preset, unless
    a file of that name exists."""
    if path is None:
        return _default_plan()
    if path in PRESET_FILES and not os.path.exists(path):
        return _preset_plan(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        near = difflib.get_close_matches(path.lower(), PRESET_FILES, n=1, cutoff=0.6)
        preset = f"did you mean the preset {near[0]!r}? " if near and os.sep not in path else ""
        raise MappingFileError(
            f"Mapping file {path!r} does not exist. Fix: {preset}pass the path of a YAML mapping "
            f"file or a preset ({', '.join(PRESET_FILES)}) to --mapping, or leave --mapping out "
            f"to use the default mapping") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingFileError(
            f"Mapping file {path!r} cannot be read ({type(exc).__name__}: {exc}). Fix: check the"
            " path and that the file is UTF-8 text") from None
    return parse_mapping(text, path)


def parse_mapping(text: str, name: str = "<mapping>") -> MappingPlan:
    """Validate and compile mapping YAML text; `name` is used in error messages."""
    own = _read_yaml(text, name)
    check_schema(own, name)
    plan = _compile(_extended(own), name, own=own)
    check_path_characters(plan.required_columns, name)     # usеr.email with a Cyrillic е
    return dataclasses.replace(plan, base=own.get("extends") or "default")


def base_plan(plan: MappingPlan) -> MappingPlan:
    """The plan `plan` starts from: the default mapping, or the preset it is or extends (a
    source check treats fields equal to the base's as optional: one preset serves exports that
    lack some of its columns)."""
    return _default_plan() if plan.base == "default" else _preset_plan(plan.base)


def _extended(own: dict[str, Any]) -> dict[str, Any]:
    """The document to compile: `own` merged over what it extends (default or a preset)."""
    base = own.get("extends")
    if base is None:
        return own
    if base == "default":
        return _merge(_default_document(), own)
    return _merge(_extended(_read_yaml(preset_text(base), f"<preset {base}>")), own)


@functools.lru_cache(maxsize=8)
def _preset_plan(name: str) -> MappingPlan:
    plan = parse_mapping(preset_text(name), f"<preset {name}>")
    return dataclasses.replace(plan, base=name)


@functools.lru_cache(maxsize=1)
def _default_plan() -> MappingPlan:
    # The packaged default is checked against the schema by the test suite
    # (test_default_mapping_passes_the_schema), not on every run: the check costs the launcher
    # ~0.1 s, most of it importing jsonschema.
    document = _default_document()
    return _compile(document, DEFAULT_MAPPING_NAME, own=document)


@functools.lru_cache(maxsize=1)
def _default_document_cached() -> dict[str, Any]:
    return _read_yaml(default_mapping_text(), DEFAULT_MAPPING_NAME)


def _default_document() -> dict[str, Any]:
    return copy.deepcopy(_default_document_cached())


def builtin_event_names() -> dict[str, str]:
    """The contract's event-name table (from the default mapping): source name -> CAPI type."""
    table: dict[str, str] = {}
    for event_type, names in _default_document_cached()["event_names"]["types"].items():
        for source_name in names:
            table[source_name.strip().lower()] = event_type
    return table


# --- step 1: YAML ------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; a key may appear once per section", mark)
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(text: str, name: str) -> dict[str, Any]:
    check_yaml_size(text, name)      # before anything is built: size and alias expansion
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MappingFileError(
            f"Mapping file {name!r} is not valid YAML{where}: {problem}. Fix: correct the YAML"
            " syntax (indent with spaces, quote values containing ': ' or '#')") from None
    if document is None:
        raise MappingFileError(
            f"Mapping file {name!r} is empty. Fix: start from `capi-sync --print-default-mapping`"
            " or write `extends: default`")
    if not isinstance(document, dict):
        raise MappingFileError(
            f"Mapping file {name!r}: the top level must be a mapping of keys (event:, data:, ...),"
            f" not a {yaml_type(document)}. Fix: see docs/mapping.md for the layout")
    return document


# --- extends: default ----------------------------------------------------------------------------

# Sections merged key by key; everything else (a field spec, a list) is replaced as a whole.
_MERGED_SECTIONS = {("event",), ("event_names",), ("event_names", "types"), ("data",),
                    ("data", "contents"), ("data", "contents", "fields"), ("data", "custom"),
                    ("user",), ("user", "fields")}


def _merge(base: dict[str, Any], overlay: dict[str, Any], at: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        here = at + (key,)
        if here == ("data", "contents") and isinstance(value, dict) and \
                value.get("path") not in (None, (merged.get(key) or {}).get("path")):
            merged[key] = value     # another list: its item fields start from scratch
        elif (here in _MERGED_SECTIONS and isinstance(value, dict)
                and isinstance(merged.get(key), dict)):
            merged[key] = _merge(merged[key], value, here)
        else:
            merged[key] = value
    return merged


# --- step 3: compile, with the checks a schema cannot express ------------------------------------

def _placeholder_set(texts: Any) -> frozenset[str]:
    return frozenset(text.strip().lower() for text in texts or () if isinstance(text, str))


class _Compiler:
    def __init__(self, name: str, placeholders: frozenset[str] = NO_PLACEHOLDERS):
        self.name = name
        self.problems: list[tuple[str, str, str]] = []
        self.placeholders = placeholders   # the mapping's: every field counts them as empty

    def problem(self, where: str, what: str, fix: str) -> None:
        self.problems.append((where, what, fix))

    def references(self, spec: Any, where: str, *, allow_each: bool = False,
                   placeholders: frozenset[str] = NO_PLACEHOLDERS
                   ) -> tuple[Path | Template, ...]:
        refs = []
        for text in split_alternatives(spec):
            try:
                ref = compile_reference(text, self.placeholders | placeholders)
            except PathSyntaxError as exc:
                self.problem(where, str(exc), "see 'Paths' in docs/mapping.md")
                continue
            paths = ref.paths if isinstance(ref, Template) else (ref,)
            if not allow_each and any(p.has_each for p in paths):
                self.problem(where, f"{text!r} uses '{EACH}' (each list element) where one value"
                                    " is expected",
                             "use X only in user fields and data.contents.fields; point to one"
                             " value here, e.g. items.0.id")
                continue
            refs.append(ref)
        return tuple(refs)

    def value_source(self, spec: Any, where: str, *, allow_each: bool = False
                     ) -> ValueSource | None:
        if spec is None:
            return None
        if isinstance(spec, dict):
            if "constant" in spec:
                if "default" in spec:
                    self.problem(where, "has both 'constant' and 'default'",
                                 "a constant is always used; remove 'default'")
                return ValueSource(where, has_constant=True, constant=spec["constant"])
            own = _placeholder_set(spec.get("placeholders"))
            refs = self.references(spec["path"], where + ".path", allow_each=allow_each,
                                   placeholders=own)
            return ValueSource(where, refs, default=spec.get("default"),
                               placeholders=self.placeholders | own, query=spec.get("query"))
        return ValueSource(where, self.references(spec, where, allow_each=allow_each),
                           placeholders=self.placeholders)

    def item_source(self, spec: Any, where: str, list_path: str | None
                    ) -> ItemValueSource | None:
        if spec is None:
            return None
        if isinstance(spec, dict) and "constant" in spec:
            if "default" in spec:
                self.problem(where, "has both 'constant' and 'default'",
                             "a constant is always used; remove 'default'")
            return ItemValueSource(where, has_constant=True, constant=spec["constant"])
        paths_spec = spec["path"] if isinstance(spec, dict) else spec
        where_paths = where + ".path" if isinstance(spec, dict) else where
        prefix = f"{list_path}.{EACH}." if list_path is not None else None
        refs = []
        for text in split_alternatives(paths_spec):
            if not text or "{" in text or "}" in text:
                self.problem(where_paths, f"{text!r} is not a path (templates are not supported"
                                          " in contents fields)",
                             f"write a path of each item such as {prefix}id, or a row column")
                continue
            reads_item = prefix is not None and text.startswith(prefix)
            try:
                path = Path(text[len(prefix):] if reads_item else text)
            except PathSyntaxError as exc:
                self.problem(where_paths, str(exc), "see 'Paths' in docs/mapping.md")
                continue
            if path.has_each:
                self.problem(where_paths, f"{text!r} does not read each item as {prefix}<field>",
                             f"item fields read {prefix}<field> (each item) or a row column")
                continue
            refs.append((reads_item, path))
        default = spec.get("default") if isinstance(spec, dict) else None
        own = _placeholder_set(spec.get("placeholders")) if isinstance(spec, dict) else frozenset()
        return ItemValueSource(where, tuple(refs), default=default,
                               placeholders=self.placeholders | own)

    def check_currency_values(self, spec: Any, where: str) -> None:
        if isinstance(spec, dict):
            for key in ("constant", "default"):
                value = spec.get(key)
                if value is not None and str(value).strip().upper() not in CURRENCY_EXPONENTS:
                    self.problem(f"{where}.{key}", f"{value!r} is not an ISO 4217 currency code",
                                 "use a code such as USD, EUR or JPY")

    def check_number_values(self, spec: Any, where: str) -> None:
        if isinstance(spec, dict):
            for key in ("constant", "default"):
                value = spec.get(key)
                if value is not None and (isinstance(value, bool) or value < 0):
                    self.problem(f"{where}.{key}", "must be a non-negative number",
                                 "write an amount such as 0 or 19.99")


def _compile(document: dict[str, Any], name: str, own: dict[str, Any]) -> MappingPlan:
    """`document` is what to compile (merged with the default when the file extends it);
    `own` is the file itself (its event-name lists are checked for duplicates)."""
    c = _Compiler(name, _placeholder_set(document.get("placeholders")))
    event = document.get("event") or {}
    for required in ("id", "type"):
        if event.get(required) is None:
            c.problem(f"event.{required}", "is not mapped",
                      "map it, e.g. id: order_{order_id} / type: event_name or"
                      " {constant: purchase}")
    if isinstance(event.get("id"), dict) and "constant" in event["id"]:
        c.problem("event.id", "is a constant, so every event would have the same id (the API"
                              " deduplicates on type and id)",
                  "use a column or a template such as order_{order_id}")

    id_source = c.value_source(event.get("id"), "event.id")
    type_source = c.value_source(event.get("type"), "event.type")
    timestamp_spec = event.get("timestamp_ms")
    timestamp_unit = (timestamp_spec.get("unit", MILLISECONDS)
                      if isinstance(timestamp_spec, dict) else MILLISECONDS)
    timestamp = c.value_source(timestamp_spec, "event.timestamp_ms")
    if isinstance(timestamp_spec, dict):
        for key in ("constant", "default"):
            if timestamp_spec.get(key) is not None:
                try:
                    to_epoch_ms(timestamp_spec[key], timestamp_unit)
                except InvalidValueError:
                    c.problem(f"event.timestamp_ms.{key}",
                              f"cannot be read as a timestamp with unit {timestamp_unit}",
                              "write an ISO-8601 text or epoch milliseconds")
    custom_name_spec = event.get("custom_event_name")
    if isinstance(custom_name_spec, dict) and isinstance(custom_name_spec.get("constant"), str):
        violation = check_custom_event_name(custom_name_spec["constant"].strip().lower())
        if violation is not None:
            c.problem("event.custom_event_name.constant", violation.detail,
                      "use a name such as newsletter_signup")
    source_url_spec = event.get("source_url")
    keep_query = isinstance(source_url_spec, dict) and source_url_spec.get("keep_query", False)
    if isinstance(source_url_spec, dict):
        for key in ("constant", "default"):
            value = source_url_spec.get(key)
            if isinstance(value, str) and not is_absolute_url(value.strip()):
                c.problem(f"event.source_url.{key}", "is not an absolute URL with a scheme and a"
                                                     " host", "write a URL such as"
                                                              " https://shop.example.com/checkout")
    action_source = c.value_source(event.get("action_source"), "event.action_source")
    if action_source is None:    # the contract: missing -> web
        action_source = ValueSource("event.action_source", default=DEFAULT_ACTION_SOURCE)

    event_names, exclude = _compile_event_names(c, document.get("event_names") or {},
                                                own.get("event_names") or {})

    data = document.get("data") or {}
    c.check_currency_values(data.get("currency"), "data.currency")
    c.check_number_values(data.get("amount"), "data.amount")
    amount_spec = data.get("amount")
    group_by = c.value_source(document.get("group_by"), "group_by")
    contents = _compile_contents(c, data.get("contents"), grouped=group_by is not None)
    custom_data = tuple(
        (member, source) for member, spec in sorted((data.get("custom") or {}).items())
        if (source := c.value_source(spec, f"data.custom.{member}")) is not None)

    user = document.get("user") or {}
    user_enabled = user.get("enabled", True)
    region = user.get("default_phone_region")
    if region is not None:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            c.problem("user.default_phone_region", f"{region!r} is not a region phone numbers"
                                                   " can be read for",
                      "use an ISO 3166-1 alpha-2 code such as US, GB or FR, or null")
    user_fields = tuple(
        (logical, source) for logical in LOGICAL_FIELDS
        if (source := c.value_source((user.get("fields") or {}).get(logical),
                                     f"user.fields.{logical}", allow_each=True)) is not None)

    consent = _compile_consent(c, document.get("consent"))
    pixel_id = c.value_source(document.get("pixel_id"), "pixel_id")
    custom_event_name = c.value_source(custom_name_spec, "event.custom_event_name")
    oppref = c.value_source(event.get("oppref"), "event.oppref")
    source_url = c.value_source(event.get("source_url"), "event.source_url")
    opt_out = c.value_source(event.get("opt_out"), "event.opt_out")
    amount = c.value_source(amount_spec, "data.amount")
    currency = c.value_source(data.get("currency"), "data.currency")
    plan_id = c.value_source(data.get("plan_id"), "data.plan_id")

    if c.problems:
        raise MappingFileError(format_problems(name, c.problems))
    plan = MappingPlan(
        name=name,
        id=id_source,
        type=type_source,
        event_names=event_names,
        exclude=exclude,
        timestamp_ms=timestamp,
        timestamp_unit=timestamp_unit,
        custom_event_name=custom_event_name,
        oppref=oppref,
        action_source=action_source,
        source_url=source_url,
        source_url_keep_query=keep_query,
        opt_out=opt_out,
        amount=amount,
        amount_unit=amount_spec.get("unit", MAJOR) if isinstance(amount_spec, dict) else MAJOR,
        currency=currency,
        plan_id=plan_id,
        contents=contents,
        custom_data=custom_data,
        user_enabled=user_enabled,
        user_profile=user.get("profile", DEFAULT_PROFILE),
        default_phone_region=region,
        user_fields=user_fields if user_enabled else (),
        consent=consent,
        pixel_id=pixel_id,
        filters=_compile_filters(c, document.get("filter") or ()),
        group_by=group_by,
    )
    return dataclasses.replace(plan, required_columns=columns_of(plan.source_paths()))


def _compile_event_names(c: _Compiler, section: dict[str, Any], own: dict[str, Any]
                         ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    table = {} if section.get("replace") else builtin_event_names()
    listed: dict[str, str] = {}
    for event_type, names in (own.get("types") or {}).items():
        for index, source_name in enumerate(names):
            key = source_name.strip().lower()
            if key in listed and listed[key] != event_type:
                c.problem(f"event_names.types.{event_type}[{index}]",
                          f"{source_name!r} is also listed under {listed[key]}",
                          "list each source event name under one type only")
            listed[key] = event_type
    table.update(listed)
    # Entries are source names or CAPI types (`page_viewed` also skips page_view rows).
    exclude = tuple(dict.fromkeys(name.strip().lower() for name in section.get("exclude") or ()))
    return tuple(sorted(table.items())), exclude


def _compile_filters(c: _Compiler, specs: Any) -> tuple[RowFilter, ...]:
    filters = []
    for index, spec in enumerate(specs):
        where = f"filter[{index}]"
        keep_listed = "in" in spec
        source = ValueSource(where, c.references(spec["path"], where + ".path"),
                             placeholders=c.placeholders)
        values = frozenset(filter_text(v) for v in spec["in" if keep_listed else "not_in"])
        filters.append(RowFilter(source, values, keep_listed))
    return tuple(filters)


def _compile_contents(c: _Compiler, section: dict[str, Any] | None, *, grouped: bool = False
                      ) -> ContentsPlan | None:
    if not section:
        return None
    if section.get("path") is None:
        if not grouped:
            c.problem("data.contents.path", "is required but missing",
                      "write the path of the list of items, e.g. path: items (only with"
                      " group_by may it be left out: then each row of the group is one item)")
            return None
        return _contents_fields(c, section, None)
    try:
        list_path = Path(section["path"].strip())
    except PathSyntaxError as exc:
        c.problem("data.contents.path", str(exc), "write the path of the list, e.g. items")
        return None
    if list_path.has_each:
        c.problem("data.contents.path", f"the list path must not contain '{EACH}'",
                  "write the list itself, e.g. items (item fields then use items.X.id)")
        return None
    return _contents_fields(c, section, list_path)


def _contents_fields(c: _Compiler, section: dict[str, Any], list_path: Path | None
                     ) -> ContentsPlan:
    fields_spec = section.get("fields") or {}
    c.check_currency_values(fields_spec.get("currency"), "data.contents.fields.currency")
    c.check_number_values(fields_spec.get("amount"), "data.contents.fields.amount")
    fields = tuple(
        (field, source) for field, spec in fields_spec.items()
        if (source := c.item_source(spec, f"data.contents.fields.{field}",
                                    list_path.text if list_path is not None else None))
        is not None)
    amount_spec = fields_spec.get("amount")
    unit = amount_spec.get("unit", MAJOR) if isinstance(amount_spec, dict) else MAJOR
    return ContentsPlan(path=list_path, fields=fields, amount_unit=unit)


def _compile_consent(c: _Compiler, spec: Any) -> ConsentPlan | None:
    if spec is None:
        return None
    if isinstance(spec, dict):
        source = ValueSource("consent", c.references(spec["path"], "consent.path"),
                             placeholders=c.placeholders)
        granted = tuple(value.strip().lower() if isinstance(value, str) else value
                        for value in spec.get("granted", DEFAULT_CONSENT_VALUES))
        return ConsentPlan(source, granted)
    return ConsentPlan(ValueSource("consent", c.references(spec, "consent"),
                                   placeholders=c.placeholders))
