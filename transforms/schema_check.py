"""A mapping checked against the source's columns, before any row is read.

    columns = columns_from_arrow(pq.read_schema("export.parquet"))
    result = check_mapping(plan, columns, "export.parquet")
    result.problems      # paths that can match no column: a configuration error (exit 2)
    result.notes         # fallbacks and default-mapping fields that match nothing (a warning)
    raise_for_problems(result)  # MappingFileError naming each path and the nearest columns

A path resolves as `transforms.paths.Path` resolves it: through struct fields (`user.email`
in a struct column `user`), a flat column literally named with dots (`user.email`), or a mix;
`X` or a digit steps into a list; a map (or a column whose structure is unknown, such as JSON)
takes any key. A scalar column has nothing below it.

Which paths must match: every field the user's mapping file names (none of a field's
fallbacks can match -> problem), and `event.id` / `event.type` always (without them no row
can become an event). A field the file inherits from the default mapping, and a fallback
that cannot match while another one can, are notes: one mapping may serve exports that lack
optional columns. Pure: no I/O; the column lists come from the connectors.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from transforms.errors import MappingFileError
from transforms.paths import EACH, Path, Template, ValueSource

SCALAR, STRUCT, LIST, MAP, ANY = "scalar", "struct", "list", "map", "any"
ALWAYS_REQUIRED = ("event.id", "event.type")
_MAX_SUGGESTIONS = 3
_MAX_DEPTH = 6


@dataclasses.dataclass(frozen=True)
class Column:
    """One column (or struct field) of a source: its name, kind and what is below it.

    STRUCT: `children` are the fields; LIST: one child, the element; MAP: one child, the value;
    ANY: structure unknown (JSON), every path below it may match; SCALAR: nothing below.
    """

    name: str
    kind: str = SCALAR
    children: tuple[Column, ...] = ()

    def child(self, name: str) -> Column | None:
        for column in self.children:
            if column.name == name:
                return column
        return None

    @property
    def element(self) -> Column:
        return self.children[0] if self.children else Column(EACH, ANY)


@dataclasses.dataclass(frozen=True)
class FieldPaths:
    """The paths one mapping field reads: fallback alternatives, each all of whose paths must
    match (a template's placeholders). `item_list` is the contents list for item fields."""

    location: str                          # the mapping key, e.g. user.fields.email
    alternatives: tuple[tuple[str, ...], ...]
    item_list: str | None = None           # item paths are relative to this list's elements
    inherited: bool = False                # taken unchanged from the default mapping


@dataclasses.dataclass(frozen=True)
class SchemaCheck:
    source: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


# --- columns from source schemas -------------------------------------------------------------

def columns_from_names(names: Iterable[str], kind: str = SCALAR) -> tuple[Column, ...]:
    """A CSV header or a query's result columns whose types say nothing about structure."""
    return tuple(Column(name, kind) for name in names)


def columns_from_arrow(schema: Any) -> tuple[Column, ...]:
    """A pyarrow Schema (Parquet file schema, DuckDB result) -> columns."""
    return tuple(_arrow_column(field.name, field.type) for field in schema)


def _arrow_column(name: str, arrow_type: Any) -> Column:
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return Column(name, STRUCT, tuple(_arrow_column(arrow_type.field(i).name,
                                                        arrow_type.field(i).type)
                                          for i in range(arrow_type.num_fields)))
    if pa.types.is_map(arrow_type):
        return Column(name, MAP, (_arrow_column("value", arrow_type.item_type),))
    if (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)
            or pa.types.is_fixed_size_list(arrow_type)):
        return Column(name, LIST, (_arrow_column(EACH, arrow_type.value_type),))
    if pa.types.is_dictionary(arrow_type):
        return _arrow_column(name, arrow_type.value_type)
    if getattr(arrow_type, "extension_name", None) in ("arrow.json", "duckdb.json"):
        return Column(name, ANY)
    return Column(name, SCALAR)


def columns_from_bigquery(fields: Iterable[Any]) -> tuple[Column, ...]:
    """A BigQuery table schema: `google.cloud.bigquery.SchemaField`s or Beam's
    `TableFieldSchema`s (name, field_type or type, mode, fields)."""
    return tuple(_bigquery_column(field) for field in fields)


def _bigquery_column(field: Any) -> Column:
    kind = str(getattr(field, "field_type", None) or getattr(field, "type", "")).upper()
    mode = str(getattr(field, "mode", None) or "NULLABLE").upper()
    if kind in ("RECORD", "STRUCT"):
        column = Column(field.name, STRUCT, columns_from_bigquery(field.fields or ()))
    else:       # JSON arrives as its text (connectors/bigquery_source.py): a scalar
        column = Column(field.name, SCALAR)
    if mode == "REPEATED":
        return Column(field.name, LIST, (dataclasses.replace(column, name=EACH),))
    return column


# --- what a plan reads -------------------------------------------------------------------------

def _alternatives(source: ValueSource) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(p.schema_text for p in ref.paths) if isinstance(ref, Template)
                 else (ref.schema_text,) for ref in source.refs)


def planned_paths(plan: Any, default_plan: Any = None) -> tuple[FieldPaths, ...]:
    """Every field of a compiled MappingPlan that reads the source, with its paths.

    Derived from the plan's own fields, so a new field is checked without a change here.
    `default_plan`: fields equal to its field of the same location are marked inherited.
    """
    inherited = {location: source for location, source, _ in _sources(default_plan)} \
        if default_plan is not None else {}
    found = []
    for location, source, item_list in _sources(plan):
        if getattr(source, "has_constant", False):
            continue
        if item_list is not None:
            alternatives = tuple(((f"{item_list}.{EACH}.{path.schema_text}" if reads_item
                                   else path.schema_text),) for reads_item, path in source.refs)
        else:
            alternatives = _alternatives(source)
        if alternatives:
            found.append(FieldPaths(location, alternatives, item_list,
                                    inherited.get(location) == source))
    return tuple(found)


def _sources(plan: Any) -> Iterator[tuple[str, Any, str | None]]:
    for field in dataclasses.fields(plan):
        value = getattr(plan, field.name)
        if isinstance(value, ValueSource):
            yield value.name, value, None
        elif hasattr(value, "source") and isinstance(value.source, ValueSource):   # consent
            yield value.source.name, value.source, None
        elif isinstance(value, tuple) and value and all(
                isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], ValueSource)
                for pair in value):                                         # user/custom fields
            for _, source in value:
                yield source.name, source, None
        elif hasattr(value, "path") and isinstance(value.path, Path):   # contents
            yield "data.contents.path", ValueSource("data.contents.path", (value.path,)), None
            for _, item_source in value.fields:
                yield item_source.name, item_source, value.path.text


# --- resolution --------------------------------------------------------------------------------

def _resolve(column: Column, segments: Sequence[str]) -> list[Column]:
    """Every column the segments can reach from `column` (its children), as Path resolves."""
    if not segments:
        return [column]
    if column.kind == ANY:
        return [Column(EACH, ANY)]
    if column.kind == LIST:
        if segments[0] == EACH or segments[0].isdigit():
            return _resolve(column.element, segments[1:])
        return []
    found: list[Column] = []
    for stop in range(1, len(segments) + 1):
        key = ".".join(segments[:stop])
        if column.kind == MAP:
            below = column.element
        elif column.kind == STRUCT:
            below = column.child(key)
        else:
            below = None
        if below is not None:
            found.extend(_resolve(below, segments[stop:]))
    return found


def _matches(root: Column, path: str, item_list: str | None) -> bool:
    if item_list is not None and path.startswith(f"{item_list}.{EACH}."):
        elements = []
        for reached in _resolve(root, item_list.split(".")):
            # a text column holding a JSON list is decoded by the mapper: structure unknown
            elements.append(reached.element if reached.kind == LIST else Column(EACH, ANY))
        rest = path[len(item_list) + len(EACH) + 2:].split(".")
        return any(_resolve(element, rest) for element in elements)
    return bool(_resolve(root, path.split(".")))


def reachable_paths(columns: Sequence[Column]) -> list[str]:
    """Every path a mapping could write for these columns (for suggestions)."""
    paths: list[str] = []

    def walk(column: Column, prefix: str, depth: int) -> None:
        here = f"{prefix}{column.name}"
        paths.append(here)
        if depth >= _MAX_DEPTH:
            return
        if column.kind == STRUCT:
            for child in column.children:
                walk(child, here + ".", depth + 1)
        elif column.kind == LIST:
            walk(dataclasses.replace(column.element, name=EACH), here + ".", depth + 1)

    for column in columns:
        walk(column, "", 0)
    return paths


def nearest(path: str, candidates: Sequence[str]) -> list[str]:
    """The closest paths, those as deep as `path` first (`items.X.qty` -> `items.X.quantity`
    rather than `items.X`)."""
    depth = path.count(".")
    same_depth = [c for c in candidates if c.count(".") == depth]
    for pool in (same_depth, candidates):
        close = difflib.get_close_matches(path, pool, n=_MAX_SUGGESTIONS, cutoff=0.6)
        if close:       # only those about as close as the best one
            scores = [difflib.SequenceMatcher(None, path, c).ratio() for c in close]
            return [c for c, score in zip(close, scores, strict=True) if score >= scores[0] - 0.05]
    leaf = path.rsplit(".", 1)[-1]       # `products.X.qty` -> a path ending in a similar leaf
    by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
    return [by_leaf[name] for name in difflib.get_close_matches(leaf, list(by_leaf),
                                                                 n=_MAX_SUGGESTIONS, cutoff=0.75)]


def _unmatched_text(path: str, candidates: Sequence[str]) -> str:
    close = nearest(path, candidates)
    if close:
        return f"`{path}` matches no column; did you mean " + " or ".join(
            f"`{c}`" for c in close) + "?"
    return f"`{path}` matches no column"


def check_mapping(plan: Any, columns: Sequence[Column], source: str,
                  default_plan: Any = None) -> SchemaCheck:
    """The plan's paths against the columns of `source` (see the module docstring)."""
    root = Column("", STRUCT, tuple(columns))
    candidates = reachable_paths(columns)
    problems: list[str] = []
    notes: list[str] = []
    unmatched_inherited: list[str] = []
    lists_unmatched: set[str] = set()
    for field in planned_paths(plan, default_plan):
        if field.item_list in lists_unmatched:
            continue        # the list itself was reported
        misses = [[path for path in alternative if not _matches(root, path, field.item_list)]
                  for alternative in field.alternatives]
        if all(missing for missing in misses):
            if field.location == "data.contents.path":
                lists_unmatched.add(field.alternatives[0][0])
            if field.inherited and field.location not in ALWAYS_REQUIRED:
                unmatched_inherited.append(f"{field.location} (`{field.alternatives[0][0]}`)")
                continue
            texts = [_unmatched_text(path, candidates)
                     for missing in misses for path in missing]
            problems.append(f"{field.location}: " + "; ".join(dict.fromkeys(texts)))
        else:
            for missing in misses:
                for path in missing:
                    if not field.inherited:
                        notes.append(f"{field.location}: the fallback "
                                     f"{_unmatched_text(path, candidates)}")
    if unmatched_inherited:
        notes.append("fields of the default mapping that match no column (left empty): "
                     + ", ".join(unmatched_inherited))
    return SchemaCheck(source, tuple(problems), tuple(notes))


def raise_for_problems(check: SchemaCheck, mapping_name: str) -> None:
    """MappingFileError listing every path of `mapping_name` that matches no column."""
    if not check.problems:
        return
    shown = "\n".join(f"  - {problem}" for problem in check.problems)
    raise MappingFileError(
        f"Mapping {mapping_name!r} reads paths that match no column of {check.source}:\n{shown}\n"
        "Fix: correct these paths in the mapping (names are case-sensitive; a struct field is "
        "written user.email, each list element items.X.qty), then run `capi-sync preview` "
        "to see the mapped events. Nothing was read or sent.")
