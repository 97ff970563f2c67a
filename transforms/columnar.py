"""Map Arrow record batches (Parquet) without building a dict per row.

    mapper = ColumnarMapper(plan)
    for result in mapper.map_batch(batch, sources):   # one MapResult per row, in order
        ...
    mapper.counters                                   # as RowMapper.counters

A row dict costs a Python dict per struct per row, and resolving a dotted path in it costs a few
look-ups per field per row. Here each path the mapping reads is resolved once per schema to the
Arrow leaf column(s) it can reach, those columns are converted in C++ (`to_pylist`), and a row
becomes a tuple with one value per path. The same RowMapper then maps the tuples through a copy
of the plan whose paths read tuple positions: one mapping code, so events, dead letters and
counters are the ones the row path gives (tests/transforms/test_columnar.py checks this).

It holds a whole batch of values at once, so run it with the garbage collector tuned for batch
work (pipeline.steps.tune_gc_for_batch_work, as the pipeline's workers do): with Python's default
thresholds the young-generation collections rescan the batch and it is slower than the row path.

When a path cannot be resolved from the schema alone (it goes through a list or a map, uses `X`
at row level, or a struct has two fields with the same name), the batch is mapped row by row
from dicts, exactly as before.
"""
from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.rows import arrow_values, is_json_type, parquet_batch_to_rows
from transforms import reasons
from transforms.deadletter import DeadLetter
from transforms.mapper import MapResult, RowMapper
from transforms.mapping import ConsentPlan, ContentsPlan, ItemValueSource, MappingPlan
from transforms.paths import Path, Template, ValueSource
from transforms.user_fields import NOT_BUILT, TEXT_OR_NONE, UserBuilder

_VALUE_SOURCE_FIELDS = ("id", "type", "timestamp_ms", "custom_event_name", "oppref",
                        "action_source", "source_url", "opt_out", "amount", "currency",
                        "plan_id", "pixel_id")


class _Unsupported(Exception):
    """The schema cannot serve this path column-wise; map the batch from row dicts."""


class _Position:
    """A row-level path replaced by its position in the row tuple (duck-types Path)."""

    __slots__ = ("text", "index", "get")

    has_each = False

    def __init__(self, text: str, index: int):
        self.text = text
        self.index = index
        self.get = operator.itemgetter(index)


class _PositionalPlan:
    """A copy of a MappingPlan whose row-level paths read positions, and the paths in order."""

    def __init__(self, plan: MappingPlan):
        self.paths: list[Path] = []
        self._index: dict[str, int] = {}
        changes: dict[str, Any] = {
            name: self._source(getattr(plan, name)) for name in _VALUE_SOURCE_FIELDS}
        changes["custom_data"] = tuple((member, self._source(source))
                                       for member, source in plan.custom_data)
        changes["user_fields"] = tuple((logical, self._source(source))
                                       for logical, source in plan.user_fields)
        if plan.consent is not None:
            changes["consent"] = ConsentPlan(self._source(plan.consent.source),
                                             plan.consent.granted)
        if plan.contents is not None:
            changes["contents"] = ContentsPlan(
                path=self._path(plan.contents.path),
                fields=tuple((field, self._item_source(source))
                             for field, source in plan.contents.fields),
                amount_unit=plan.contents.amount_unit)
        self.plan = dataclasses.replace(plan, **changes)

    def _path(self, path: Path) -> _Position:
        if path.has_each:
            raise _Unsupported(f"{path.text} reads each element of a list at row level")
        if path.text not in self._index:
            self._index[path.text] = len(self.paths)
            self.paths.append(path)
        return _Position(path.text, self._index[path.text])

    def _reference(self, ref: Path | Template) -> Any:
        if isinstance(ref, Template):
            template = Template.__new__(Template)
            template.text = ref.text
            template.parts = tuple(self._path(part) if isinstance(part, Path) else part
                                   for part in ref.parts)
            return template
        return self._path(ref)

    def _source(self, source: ValueSource | None) -> ValueSource | None:
        if source is None:
            return None
        return ValueSource(source.name, tuple(self._reference(ref) for ref in source.refs),
                           has_constant=source.has_constant, constant=source.constant,
                           default=source.default)

    def _item_source(self, source: ItemValueSource) -> ItemValueSource:
        refs = tuple((reads_item, path if reads_item else self._path(path))
                     for reads_item, path in source.refs)
        return ItemValueSource(source.name, refs, has_constant=source.has_constant,
                               constant=source.constant, default=source.default)


def _field_index(fields: Sequence[pa.Field], name: str) -> int | None:
    found = [index for index, field in enumerate(fields) if field.name == name]
    if len(found) > 1:
        raise _Unsupported(f"two fields are named {name!r}")
    return found[0] if found else None


def _leaf_chains(fields: Sequence[pa.Field], segments: tuple[str, ...], start: int,
                 prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every field-index chain that spells segments[start:], in the order Path tries them
    (nested reading first, then longer dotted names; the first non-null one wins per row)."""
    chains: list[tuple[int, ...]] = []
    stop = len(segments)
    for end in range(start + 1, stop + 1):
        index = _field_index(fields, ".".join(segments[start:end]))
        if index is None:
            continue
        if end == stop:
            chains.append(prefix + (index,))
            continue
        arrow_type = fields[index].type
        if pa.types.is_struct(arrow_type):
            chains.extend(_leaf_chains(list(arrow_type), segments, end, prefix + (index,)))
        elif pa.types.is_nested(arrow_type) or is_json_type(arrow_type):
            # a list, a map or JSON documents (SQL sources): indexes and keys are per row
            raise _Unsupported(f"{'.'.join(segments)} goes through a list, map or JSON column")
    return chains


def _chain_values(batch: pa.RecordBatch, chain: tuple[int, ...]) -> list[Any]:
    array = batch.column(chain[0])
    if len(chain) > 1:
        array = pc.struct_field(array, list(chain[1:]))   # a null parent gives null
    return arrow_values(array)


def _single_position(source: ValueSource) -> bool:
    return (not source.has_constant and source.default is None and len(source.refs) == 1
            and isinstance(source.refs[0], _Position))


def _present(values: list[Any]) -> list[Any]:
    """What ValueSource.get gives for one path: blank text and empty lists/objects are None."""
    if TEXT_OR_NONE.issuperset(map(type, values)):   # the common case: text or nothing
        return [value if value and not value.isspace() else None for value in values]
    return [None if value is not None and not value and type(value) in (str, list, tuple, dict)
            or type(value) is str and value.isspace() else value for value in values]


class _PrecomputedUsers:
    """The user builder of positional rows whose last value is UserBuilder.build_columns'
    result for the row: its user object, with the counters build() would have bumped."""

    def __init__(self, builder: UserBuilder):
        self.builder = builder

    def build(self, row: tuple[Any, ...], counters: Any) -> dict[str, Any] | None:
        built = row[-1]
        if built is NOT_BUILT:
            return self.builder.build(row, counters)
        user, keys = built
        for key in keys:
            counters[key] += 1
        return user


def _first_not_none(columns: list[list[Any]]) -> list[Any]:
    out = list(columns[0])
    for column in columns[1:]:
        out = [value if value is not None else other for value, other in zip(out, column, strict=True)]
    return out


class ColumnarMapper:
    """RowMapper for Arrow record batches. Keep one per worker, like RowMapper."""

    def __init__(self, plan: MappingPlan, clock_ms: Callable[[], int] | None = None):
        self.plan = plan
        self._by_rows = RowMapper(plan, clock_ms)
        self.counters = self._by_rows.counters
        try:
            self._positional: _PositionalPlan | None = _PositionalPlan(plan)
            self._by_columns: RowMapper | None = RowMapper(self._positional.plan, clock_ms,
                                                           positional=True)
            self._by_columns.counters = self.counters
        except _Unsupported:
            self._positional = self._by_columns = None
        self._users: UserBuilder | None = None
        if self._by_columns is not None and self._by_columns.user_builder is not None:
            builder = self._by_columns.user_builder
            sources = [source for _, source in builder.sources]
            if all(_single_position(source) for source in sources):
                self._users = builder
                self._by_columns.user_builder = _PrecomputedUsers(builder)
        self._chains: dict[pa.Schema, list[list[tuple[int, ...]]] | None] = {}

    def map_row(self, row: Any, source: str | None = None) -> MapResult:
        """One row dict (any other source than Parquet), as RowMapper.map_row."""
        return self._by_rows.map_row(row, source)

    def map_batch(self, batch: pa.RecordBatch, sources: Sequence[str]) -> Iterator[MapResult]:
        """One MapResult per row of `batch`, in order; `sources[i]` names row i."""
        rows = self.positional_rows(batch)
        mapper = self._by_columns
        if rows is None:
            mapper = self._by_rows
            try:
                rows = parquet_batch_to_rows(batch)
            except (ValueError, pa.ArrowException) as exc:   # e.g. a struct naming a field twice
                yield from self._unreadable(batch, sources, exc)
                return
        map_row = mapper.map_row
        for row, source in zip(rows, sources, strict=True):
            yield map_row(row, source)

    def _unreadable(self, batch: pa.RecordBatch, sources: Sequence[str], exc: Exception
                    ) -> Iterator[MapResult]:
        """Rows pyarrow cannot turn into Python values: each one a mapping_error dead letter."""
        detail = (f"the file's rows cannot be read as records ({type(exc).__name__}:"
                  f" {str(exc)[:200]}); fix the export's schema (for example rename a struct"
                  " field that appears twice) and run again")
        self.counters[f"dead_letter.{reasons.MAPPING_ERROR}"] += batch.num_rows
        for source in sources:
            yield MapResult(dead_letter=DeadLetter(reasons.MAPPING_ERROR, detail, source=source))

    def positional_rows(self, batch: pa.RecordBatch) -> list[tuple[Any, ...]] | None:
        """The batch as tuples of path values, or None when the schema needs row dicts."""
        chains = self._schema_chains(batch.schema)
        if chains is None:
            return None
        columns = []
        for path_chains in chains:
            if not path_chains:
                columns.append([None] * batch.num_rows)
            else:
                columns.append(_first_not_none([_chain_values(batch, chain)
                                                for chain in path_chains]))
        if self._users is not None:
            columns.append(self._users.build_columns(
                lambda source: _present(columns[source.refs[0].index]), batch.num_rows))
        return list(zip(*columns, strict=True)) if columns else [()] * batch.num_rows

    def _schema_chains(self, schema: pa.Schema) -> list[list[tuple[int, ...]]] | None:
        if schema not in self._chains:
            chains = None
            if self._positional is not None:
                try:
                    chains = [_leaf_chains(list(schema), tuple(path.segments), 0)
                              for path in self._positional.paths]
                except _Unsupported:
                    chains = None
            self._chains[schema] = chains
        return self._chains[schema]
