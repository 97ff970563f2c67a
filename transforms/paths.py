"""Dotted source paths, compiled once and resolved against every row.

A path such as `context.device.ip` resolves through nested structs/maps (Parquet struct columns,
JSON objects) and also matches a flat column whose name is literally the dotted text (a CSV or
warehouse column called `user.email`), or any mix of the two (a struct column `context.device`
holding `ip`). The all-nested reading is tried first because it is the common case.

`X` as a segment means "each element of this list": `items.X.id` resolves to the list of every
item's `id`. An all-digit segment indexes a list (`items.0.id`). Arrow map columns, which
`pyarrow` turns into lists of `(key, value)` pairs, are looked up like dicts.

`name[key=value]` picks the first element of the list `name` whose `key` member equals `value`
(GA4's `event_params[key=page_location].value`), and `*` takes the first non-empty member of a
struct in its field order (`value.*`: string_value, int_value, double_value, ...). Segments after
the first of these are read nested only.

Templates (`order_{properties.order_id}`) are literal text with `{path}` placeholders; `{{` and
`}}` are literal braces. A template renders to None when any placeholder is empty, so it can
sit in a fallback list like a path.
"""
from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from transforms.normalize import number_text

EACH = "X"
FIRST_MEMBER = "*"
NO_PLACEHOLDERS: frozenset[str] = frozenset()

_BAD_SEGMENT_CHARS = re.compile(r"[{}|]")
_SELECT = re.compile(r"([^\[\]=]+)\[([^\[\]=]+)=([^\[\]]*)\]")
_TEXT_OR_NONE = frozenset({str, type(None)})
_LIST_OR_NONE = frozenset({list, type(None)})
_MAY_BE_EMPTY = (str, list, tuple, dict)   # with their subclasses: the kinds present() empties


class PathSyntaxError(ValueError):
    """A path or template that cannot be compiled; the message says what to write instead."""


def present(value: Any, placeholders: frozenset[str] = NO_PLACEHOLDERS) -> Any:
    """The value, or None when it counts as 'no value' (the next fallback is tried).

    The one rule of emptiness: None, blank text, empty lists/objects, and text that is one of
    the mapping's placeholders (compared stripped and lower-cased: '(not set)', 'null').
    """
    kind = type(value)
    if kind is str:
        if not value or value.isspace():
            return None
        if placeholders and value.strip().lower() in placeholders:
            return None
        return value
    if kind is list or kind is tuple or kind is dict:
        return value or None
    if isinstance(value, str):                          # a str subclass: the same rule
        return value if present(str(value), placeholders) is not None else None
    if isinstance(value, (list, tuple, dict)):
        return value or None
    return value


def is_empty(value: Any, placeholders: frozenset[str] = NO_PLACEHOLDERS) -> bool:
    return present(value, placeholders) is None


def present_column(values: list[Any], placeholders: frozenset[str] = NO_PLACEHOLDERS
                   ) -> list[Any]:
    """`[present(v) for v in values]`, faster for the common columns: text or nothing, lists or
    nothing, and values that are never empty (numbers, booleans, timestamps)."""
    kinds = set(map(type, values))
    if not placeholders and kinds <= _TEXT_OR_NONE:
        # Blank text is rare: looked for in C first, and the column is returned as it is.
        if "" not in values and not any(map(str.isspace, filter(None, values))):
            return values
        return [value if value and not value.isspace() else None for value in values]
    if kinds <= _LIST_OR_NONE:
        return values if [] not in values else [value or None for value in values]
    if not any(issubclass(kind, _MAY_BE_EMPTY) for kind in kinds):
        return values
    return [present(value, placeholders) for value in values]


def query_parameter(value: Any, name: str) -> str | None:
    """`oppref` of 'https://shop.example/?oppref=abc&x=1' -> 'abc' (first value; None if absent)."""
    if not isinstance(value, str):
        return None
    found = urllib.parse.parse_qs(urllib.parse.urlsplit(value.strip()).query).get(name)
    return found[0] if found else None


def _lookup(node: Any, key: str) -> Any:
    """One step of a path: a dict/Mapping key, a list index, or a key of an Arrow map."""
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, (list, tuple)):
        if key.isdigit():
            index = int(key)
            return node[index] if index < len(node) else None
        for entry in node:  # Arrow map<k, v> as [(k, v), ...] or [{"key": k, "value": v}, ...]
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == key:
                return entry[1]
            if isinstance(entry, Mapping) and entry.get("key") == key:
                return entry.get("value")
    return None


class Path:
    """A compiled dotted path. `get(row)` returns the value, or None when the path is absent.

    A path containing `X` returns a list (one value per element, empty values dropped).
    Picklable: it pickles as its text and recompiles.
    """

    __slots__ = ("text", "segments", "schema_text", "_split_options", "_each_at", "_rest",
                 "_dotted_keys", "_head", "_tail", "get")

    def __init__(self, text: str):
        raw = _split_dots(text)
        for segment in raw:
            if not segment:
                raise PathSyntaxError(
                    f"path {text!r} has an empty segment; write segments separated by single dots,"
                    " e.g. user.email")
            if segment != segment.strip():
                raise PathSyntaxError(
                    f"path {text!r} has a segment with leading or trailing spaces;"
                    " remove the spaces around the dots")
            if _BAD_SEGMENT_CHARS.search(segment):
                raise PathSyntaxError(
                    f"path {text!r} contains one of '{{', '}}', '|' in a segment; use"
                    " 'a | b' only between whole paths and braces only in templates")
        self.text = text
        self.schema_text = _schema_text(raw)
        self._head: Path | None = None
        self._tail: tuple[Any, ...] = ()
        special = next((i for i, segment in enumerate(raw) if _is_step(segment)), -1)
        each = raw.index(EACH) if EACH in raw else -1
        if special >= 0 and (each < 0 or special < each):
            segments, self._tail = _split_steps(text, raw, special)
            self._head = Path(".".join(segments))
        else:
            segments = tuple(raw)
        self.segments = tuple(segments)
        self._each_at = self.segments.index(EACH) if EACH in self.segments else -1
        rest = raw[self._each_at + 1:] if self._each_at >= 0 else ()
        self._rest = Path(".".join(rest)) if rest else None
        # For the flat/mixed readings: at position i, the candidate keys joining i..j-1.
        n = len(self.segments)
        self._split_options = tuple(
            tuple((".".join(self.segments[i:j]), j) for j in range(i + 1, n + 1))
            for i in range(n))
        # at level i, the keys that join two or more segments: 'a.b', 'a.b.c' at level 0
        self._dotted_keys = tuple(tuple(key for key, j in options if j > i + 1)
                                  for i, options in enumerate(self._split_options))
        self.get = self._compile_getter()

    def __reduce__(self):
        return (Path, (self.text,))

    def __repr__(self) -> str:
        return f"Path({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def has_each(self) -> bool:
        return self._each_at >= 0

    def top_level_columns(self) -> tuple[str, ...]:
        """Every top-level column name this path may read: `a`, `a.b`, `a.b.c` for `a.b.c`."""
        stop = self._each_at if self._each_at >= 0 else len(self.segments)
        return tuple(key for key, _ in self._split_options[0][:max(stop, 1)])

    def head_and_steps(self) -> tuple[Path, Steps] | None:
        """For a path with a `[key=value]` or `*` step: the path of its plain segments and the
        steps after them (`get(row)` is `steps(head.get(row))`); None for any other path."""
        return (self._head, Steps(self._tail)) if self._tail else None

    def tail(self) -> Callable[[Any], Any] | None:
        """What follows `segments` (a `[key=value]` or `*` step and after), as a function of
        the value `segments` reach; None when the path is all plain segments."""
        if not self._tail:
            return None
        return Steps(self._tail)

    def _get_with_steps(self, row: Any) -> Any:
        return _apply_steps(self._head.get(row), self._tail)

    def _compile_getter(self):
        """`get` specialised for the common shapes (this runs ~30 times per row)."""
        if self._tail:
            return self._get_with_steps
        if self._each_at >= 0:
            return self._get_each
        general = self._get
        if len(self.segments) == 1:
            key = self.segments[0]

            def get1(row: Any) -> Any:
                return row.get(key) if type(row) is dict else _lookup(row, key)
            return get1
        if len(self.segments) == 2:
            first, second = self.segments
            joined = self.text

            def get2(row: Any) -> Any:
                if type(row) is dict:
                    node = row.get(first)
                    if type(node) is dict:
                        value = node.get(second)
                        if value is not None or joined in row:
                            return value if value is not None else general(row)
                        return None
                return general(row)
            return get2
        if len(self.segments) == 3:
            first, second, third = self.segments
            dotted_row, dotted_mid = self._dotted_keys[0], self._dotted_keys[1]

            def get3(row: Any) -> Any:
                if type(row) is dict:
                    mid = row.get(first)
                    if type(mid) is dict:
                        node = mid.get(second)
                        if type(node) is dict:
                            value = node.get(third)
                            if value is not None:
                                return value
                            if (dotted_row[0] not in row and dotted_row[1] not in row
                                    and dotted_mid[0] not in mid):
                                return None
                return general(row)
            return get3
        return general

    def _get(self, row: Any) -> Any:
        """Resolve against `row`: the value, or None when the path is absent."""
        node = row
        for segment in self.segments:  # fast path: fully nested dicts
            if type(node) is dict:
                node = node.get(segment)
            else:
                node = _lookup(node, segment)
            if node is None:
                break
        else:
            return node
        if len(self.segments) == 1:
            return None
        # A flat or mixed reading can only succeed through a dotted key ('user.email') in one
        # of the dicts the nested walk passed through; look for one before searching.
        node = row
        for dotted, segment in zip(self._dotted_keys, self.segments, strict=True):
            if type(node) is not dict:
                return self._resolve(row, 0, len(self.segments))
            for key in dotted:
                if key in node:
                    return self._resolve(row, 0, len(self.segments))
            node = node.get(segment)
            if node is None:
                return None
        return None

    def _resolve(self, node: Any, start: int, stop: int) -> Any:
        """Every split of segments[start:stop] into keys, nested first; first non-None wins."""
        for key, nxt in self._split_options[start]:
            if nxt > stop:
                break
            value = _lookup(node, key)
            if value is None:
                continue
            if nxt == stop:
                return value
            found = self._resolve(value, nxt, stop)
            if found is not None:
                return found
        return None

    def _get_each(self, row: Any) -> list[Any]:
        at = self._each_at
        container = self._resolve(row, 0, at) if at else row
        if not isinstance(container, (list, tuple)):
            return []
        rest = self._rest
        if rest is None:
            return [v for v in container if present(v) is not None]
        values: list[Any] = []
        for element in container:
            value = rest.get(element)
            if isinstance(value, list) and rest.has_each:
                values.extend(value)
            elif present(value) is not None:
                values.append(value)
        return values


def _split_outside(text: str, separator: str, opening: str, closing: str) -> list[str]:
    """`text` split at each `separator` that stands outside `opening`...`closing` pairs."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == opening:
            depth += 1
        elif char == closing:
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _split_dots(text: str) -> list[str]:
    """'a.b[key=x.y].c' -> ['a', 'b[key=x.y]', 'c']: dots inside brackets do not split."""
    return _split_outside(text, ".", "[", "]")


def _schema_text(raw: list[str]) -> str:
    """The columns a path needs, as a plain path a schema check resolves:
    `event_params[key=currency].value.*` -> `event_params.X.value` (a list element; any member)."""
    plain: list[str] = []
    for segment in raw:
        if segment == FIRST_MEMBER:
            break
        match = _SELECT.fullmatch(segment)
        plain.extend((match.group(1), EACH) if match else (segment,))
    return ".".join(plain)


def _is_step(segment: str) -> bool:
    return segment == FIRST_MEMBER or "[" in segment or "]" in segment


class _Select:
    """`[key=value]`: the first element of a list whose `key` member reads as `value`."""

    __slots__ = ("member", "value")

    def __init__(self, member: str, value: str):
        self.member, self.value = member, value

    def __call__(self, node: Any) -> Any:
        if not isinstance(node, (list, tuple)):
            return None
        for element in node:
            if isinstance(element, Mapping):
                key = element.get(self.member)
                if key is not None and template_text(key) == self.value:
                    return element
        return None


def select_index(node: Any, member: str) -> dict[str, Any] | None:
    """What `[member=value]` picks from `node`, for every value at once: per text of an
    element's `member`, the first element with it (None when `node` is not a list).

    Several paths selecting from one list (GA4's `event_params[key=page_location]`,
    `[key=currency]`, ...) then scan it once per row instead of once per path."""
    if not isinstance(node, (list, tuple)):
        return None
    index: dict[str, Any] = {}
    for element in node:
        if isinstance(element, Mapping):
            key = element.get(member)
            if key is not None:
                text = template_text(key)
                if text is not None and text not in index:
                    index[text] = element
    return index


class Steps:
    """A path's steps after its plain segments, applied to the value those reach (Path.tail)."""

    __slots__ = ("steps",)

    def __init__(self, steps: tuple[Any, ...]):
        self.steps = steps

    def __call__(self, node: Any) -> Any:
        return _apply_steps(node, self.steps)

    def apply_column(self, values: list[Any]) -> list[Any]:
        """`self(value)` for each value (None stays None), one step at a time over the whole
        column (transforms.columnar): no Python call per value for a key of a dict."""
        for step in self.steps:
            if type(step) is str:
                values = [None if node is None else node.get(step) if type(node) is dict
                          else _lookup(node, step) for node in values]
            else:
                values = [None if node is None else step(node) for node in values]
        return values

    def leading_select(self) -> tuple[str, str, Steps | None] | None:
        """(member, value, the steps after it) when the first step is `[member=value]`."""
        first = self.steps[0]
        if type(first) is not _Select:
            return None
        return first.member, first.value, Steps(self.steps[1:]) if len(self.steps) > 1 else None


def _first_member(node: Any) -> Any:
    """`*`: the first non-empty member of a struct, in its field order."""
    if not isinstance(node, Mapping):
        return None
    for value in node.values():
        if present(value) is not None:
            return value
    return None


def _split_steps(text: str, raw: list[str], first: int) -> tuple[list[str], tuple[Any, ...]]:
    """The plain segments before the first `[key=value]`/`*` step, and the steps from it on."""
    segments = list(raw[:first])
    steps: list[Any] = []
    for segment in raw[first:]:
        if segment == EACH:
            raise PathSyntaxError(
                f"path {text!r} uses '{EACH}' after a [key=value] or '*' step; pick one element"
                " with [key=value], or use X before the step (items.X.params[key=a])")
        if segment == FIRST_MEMBER:
            steps.append(_first_member)
            continue
        if "[" not in segment and "]" not in segment:
            steps.append(segment)
            continue
        match = _SELECT.fullmatch(segment)
        if match is None or match.group(1) != match.group(1).strip():
            raise PathSyntaxError(
                f"path {text!r}: {segment!r} is not a lookup; write name[key=value], e.g."
                " event_params[key=page_location].value.*")
        name, member, value = match.group(1), match.group(2).strip(), match.group(3).strip()
        (steps if steps else segments).append(name)   # the first lookup's list is a column
        steps.append(_Select(member, value))
    if not segments:
        raise PathSyntaxError(f"path {text!r} must start with a column name before '*'")
    # `segments` are read with every flat/nested reading; the steps nested only.
    return segments, tuple(steps)


def _apply_steps(node: Any, steps: tuple[Any, ...]) -> Any:
    for step in steps:
        if node is None:
            return None
        node = _lookup(node, step) if type(step) is str else step(node)
    return node


def template_text(value: Any) -> str | None:
    """How a placeholder value is written into a template (1234.0 -> '1234', True -> 'true')."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return number_text(value)


class Template:
    """`order_{properties.order_id}`: literal text with `{path}` placeholders."""

    __slots__ = ("text", "parts", "placeholders")

    def __init__(self, text: str, placeholders: frozenset[str] = NO_PLACEHOLDERS):
        self.text = text
        self.parts = _parse_template(text)
        self.placeholders = frozenset(placeholders)   # a part reading one renders None

    def with_paths(self, replace: Callable[[Path], Any]) -> Template:
        """The same template with each placeholder path replaced (transforms.columnar)."""
        copy = Template.__new__(Template)
        copy.text, copy.placeholders = self.text, self.placeholders
        copy.parts = tuple(replace(part) if isinstance(part, Path) else part
                           for part in self.parts)
        return copy

    def __reduce__(self):
        return (Template, (self.text, self.placeholders))

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(part for part in self.parts if isinstance(part, Path))

    def get(self, row: Any) -> str | None:
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            text = template_text(present(part.get(row), self.placeholders))
            if text is None:
                return None
            pieces.append(text)
        return "".join(pieces)


def _parse_template(text: str) -> tuple[str | Path, ...]:
    parts: list[str | Path] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in "{}" and text[i:i + 2] in ("{{", "}}"):
            literal.append(char)
            i += 2
        elif char == "}":
            raise PathSyntaxError(
                f"template {text!r} has a '}}' without a matching '{{' at position {i};"
                " write '}}' for a literal brace")
        elif char == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise PathSyntaxError(
                    f"template {text!r} has a '{{' that is never closed; close the placeholder"
                    " like order_{order_id}, or write '{{' for a literal brace")
            inner = text[i + 1:end].strip()
            if not inner or "{" in inner:
                raise PathSyntaxError(
                    f"template {text!r} has an empty or nested placeholder; put one path inside"
                    " each pair of braces, e.g. order_{order_id}")
            if inner.split(".").count(EACH):
                raise PathSyntaxError(
                    f"template {text!r}: placeholders cannot use '{EACH}' (each element);"
                    " use a path to one value")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Path(inner))
            i = end + 1
        else:
            literal.append(char)
            i += 1
    if literal:
        parts.append("".join(literal))
    if not any(isinstance(part, Path) for part in parts):
        raise PathSyntaxError(
            f"template {text!r} has no placeholder; use {{constant: ...}} for a fixed value")
    return tuple(parts)


def is_template(text: str) -> bool:
    return "{" in text or "}" in text


def compile_reference(text: str, placeholders: frozenset[str] = NO_PLACEHOLDERS
                      ) -> Path | Template:
    """One entry of a fallback chain: a Template when it contains braces, else a Path."""
    text = text.strip()
    if not text:
        raise PathSyntaxError("empty path; write a column name or dotted path such as user.email")
    return Template(text, placeholders) if is_template(text) else Path(text)


def split_alternatives(spec: str | Iterable[str]) -> list[str]:
    """'a | b' and ['a', 'b | c'] both mean 'first non-empty of a, b, c'.

    A '|' inside template braces does not split: 'order_{a} | b' is a template, then a path.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    return [part.strip() for item in items for part in _split_outside(item, "|", "{", "}")]


class ValueSource:
    """Where one field's value comes from: a constant, or the first non-empty of a fallback
    chain of paths/templates, else a default. Compiled once per mapping, picklable.

    Each reference's value is read as `query` parameter of a URL when `query` is set, and
    counts as empty by `present` (blank, or one of `placeholders`).
    `get(row, counters)` counts `<name>.defaulted` in `counters` when the default was used.
    """

    __slots__ = ("name", "refs", "has_constant", "constant", "default", "placeholders", "query",
                 "_defaulted", "get")

    def __init__(self, name: str, refs: tuple[Path | Template, ...] = (), *,
                 has_constant: bool = False, constant: Any = None, default: Any = None,
                 placeholders: frozenset[str] = NO_PLACEHOLDERS, query: str | None = None):
        self.name = name
        self.refs = tuple(refs)
        self.has_constant = has_constant
        self.constant = constant
        self.default = default
        self.placeholders = frozenset(placeholders)
        self.query = query
        self._defaulted = f"{name}.defaulted"
        self.get = self._get
        if has_constant or self.placeholders or query is not None or not self.refs:
            return
        # References that name positions of `present` values in a row tuple (transforms.columnar)
        # are read directly: one call per value instead of three.
        indexes = tuple(getattr(ref, "present_index", None) for ref in self.refs)
        if None not in indexes:
            self.get = (_present_position_getter(indexes[0]) if len(indexes) == 1 and default is None
                        else _present_positions_getter(indexes, default, self._defaulted))
        elif default is None and len(self.refs) == 1:
            self.get = _single_reference_getter(self.refs[0].get)

    def with_refs(self, refs: tuple[Any, ...]) -> ValueSource:
        """The same source reading other references (transforms.columnar: tuple positions)."""
        state = list(self.__getstate__())
        state[1] = tuple(refs)
        copy = ValueSource.__new__(ValueSource)
        copy.__setstate__(tuple(state))
        return copy

    def __getstate__(self):
        return (self.name, self.refs, self.has_constant, self.constant, self.default,
                self.placeholders, self.query)

    def __setstate__(self, state):
        self.__init__(state[0], state[1], has_constant=state[2], constant=state[3],
                      default=state[4], placeholders=state[5], query=state[6])

    def __repr__(self) -> str:
        if self.has_constant:
            return f"ValueSource({self.name!r}, constant={self.constant!r})"
        return f"ValueSource({self.name!r}, {[r.text for r in self.refs]}, default={self.default!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueSource) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash((self.name, self.refs))

    @property
    def paths(self) -> tuple[Path, ...]:
        found: list[Path] = []
        for ref in self.refs:
            found.extend(ref.paths if isinstance(ref, Template) else (ref,))
        return tuple(found)

    def value_of(self, raw: Any) -> Any:
        """One reference's value as this source reads it (query parameter, then `present`)."""
        if self.query is not None:
            raw = query_parameter(raw, self.query)
        return present(raw, self.placeholders)

    def _get(self, row: Any, counters: Any = None) -> Any:
        """The value for `row`; `counters` counts `<name>.defaulted` when the default is used."""
        if self.has_constant:
            return self.constant
        value_of = self.value_of
        for ref in self.refs:
            value = value_of(ref.get(row))
            if value is not None:
                return value
        return defaulted_value(self.default, counters, self._defaulted)


def _present_position_getter(index: int):
    def get(row: Any, counters: Any = None) -> Any:
        return row[index]
    return get


def _present_positions_getter(indexes: tuple[int, ...], default: Any, defaulted: str):
    """ValueSource.get over positions of `present` values: the first that is not None, else
    the default (counted as `defaulted`)."""
    def get(row: Any, counters: Any = None) -> Any:
        for index in indexes:
            value = row[index]
            if value is not None:
                return value
        return defaulted_value(default, counters, defaulted)
    return get


def defaulted_value(default: Any, counters: Any, defaulted: str) -> Any:
    """What a source gives when no reference has a value: its default, counted as `defaulted`
    (`<name>.defaulted`) in `counters` when there is one."""
    if default is not None and counters is not None:
        counters[defaulted] += 1
    return default


def _single_reference_getter(get_value):
    """ValueSource.get for the most common case: one path, no default, no placeholders."""
    def get(row: Any, counters: Any = None) -> Any:
        return present(get_value(row))
    return get
