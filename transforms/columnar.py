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

A path that goes on through a list or map column (`items.0.id`, `emails.X`,
`event_params[key=currency].value.*`) is read as far as that column from the schema; the rest of
the path is applied per row to that column's values (each column is converted once per batch,
however many paths read it). Only when a struct has two fields with the same name is the batch
mapped row by row from dicts.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from transforms import reasons
from transforms.arrow_rows import arrow_values, is_json_type, parquet_batch_to_rows
from transforms.deadletter import DeadLetter
from transforms.mapper import MapResult, RowMapper
from transforms.mapping import MappingPlan, rewrite_row_paths
from transforms.paths import EACH, Path, ValueSource, present_column
from transforms.user_fields import UserBuilder


class _Unsupported(Exception):
    """The schema cannot serve this path column-wise; map the batch from row dicts."""


class _Position:
    """A row-level path replaced by its position in the row tuple (duck-types Path).

    The row tuples hold `present` values (ColumnarMapper._columns applies it column-wise), so
    `present_get` is ValueSource.get for a source that reads this position alone.
    """

    __slots__ = ("text", "index", "get", "present_get")

    has_each = False

    def __init__(self, text: str, index: int):
        self.text = text
        self.index = index
        self.get = operator.itemgetter(index)

        def present_get(row: Any, counters: Any = None) -> Any:
            return row[index]
        self.present_get = present_get


class _PositionalPlan:
    """A copy of a MappingPlan whose row-level paths read positions, and the paths in order.

    Derived from the plan by mapping.rewrite_row_paths: every field of the plan is rewritten,
    so a new field cannot be left reading a path of a row that is now a tuple.
    """

    def __init__(self, plan: MappingPlan):
        self.paths: list[Path] = []
        self._index: dict[str, int] = {}
        self.plan = rewrite_row_paths(plan, self._path)

    def _path(self, path: Path) -> _Position:
        if path.text not in self._index:
            self._index[path.text] = len(self.paths)
            self.paths.append(path)
        return _Position(path.text, self._index[path.text])


def _field_index(fields: Sequence[pa.Field], name: str) -> int | None:
    found = [index for index, field in enumerate(fields) if field.name == name]
    if len(found) > 1:
        raise _Unsupported(f"two fields are named {name!r}")
    return found[0] if found else None


_Chain = tuple[tuple[int, ...], Callable[[Any], Any] | None]


def _path_chains(fields: Sequence[pa.Field], path: Path) -> list[_Chain]:
    """Where `path` can be read in a batch of this schema: per reading, the chain of field
    indexes down the structs, and what to apply per row to the value found there (the rest of
    the path, from the first list or map column on, or the path's `X`/`[key=value]` steps)."""
    segments = path.segments
    tail = path.tail()
    if path.has_each:
        at = segments.index(EACH)
        each = Path(".".join(segments[at:]))
        segments, tail = segments[:at], each.get
        if not segments:
            raise _Unsupported(f"{path.text} reads each element of the row")
    return _leaf_chains(fields, tuple(segments), 0, tail)


def _then(first: Callable[[Any], Any], second: Callable[[Any], Any] | None
          ) -> Callable[[Any], Any]:
    if second is None:
        return first
    return lambda node: second(first(node))


def _leaf_chains(fields: Sequence[pa.Field], segments: tuple[str, ...], start: int,
                 tail: Callable[[Any], Any] | None, prefix: tuple[int, ...] = ()
                 ) -> list[_Chain]:
    """Every field-index chain that spells segments[start:], in the order Path tries them
    (nested reading first, then longer dotted names; the first non-null one wins per row)."""
    chains: list[_Chain] = []
    stop = len(segments)
    for end in range(start + 1, stop + 1):
        index = _field_index(fields, ".".join(segments[start:end]))
        if index is None:
            continue
        if end == stop:
            chains.append((prefix + (index,), tail))
            continue
        arrow_type = fields[index].type
        if pa.types.is_struct(arrow_type):
            chains.extend(_leaf_chains(list(arrow_type), segments, end, tail, prefix + (index,)))
        elif pa.types.is_nested(arrow_type) or is_json_type(arrow_type):
            # a list, a map or JSON documents (SQL sources, parsed): the rest is read per row
            rest = Path(".".join(segments[end:]))
            chains.append((prefix + (index,), _then(rest.get, tail)))
    return chains


def _chain_values(batch: pa.RecordBatch, chain: _Chain, converted: dict) -> list[Any]:
    indexes, tail = chain
    values = converted.get(indexes)
    if values is None:
        array = batch.column(indexes[0])
        if len(indexes) > 1:
            array = pc.struct_field(array, list(indexes[1:]))   # a null parent gives null
        values = converted[indexes] = arrow_values(array)
    if tail is None:
        return values
    return [None if value is None else tail(value) for value in values]


def _column_source(source: ValueSource) -> bool:
    """A source whose value per row is `present` of one position (users built column-wise)."""
    return (not source.has_constant and source.default is None and len(source.refs) == 1
            and isinstance(source.refs[0], _Position) and source.query is None)


def _rows_of(columns: list[list[Any]], count: int) -> list[tuple[Any, ...]]:
    return list(zip(*columns, strict=True)) if columns else [()] * count


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
        self._positional = _PositionalPlan(plan)
        self._by_columns = RowMapper(self._positional.plan, clock_ms, positional=True)
        self._by_columns.counters = self.counters
        builder = self._by_columns.user_builder
        self._users: UserBuilder | None = builder if builder is not None and all(
            _column_source(source) for _, source in builder.sources) else None
        self._chains: dict[pa.Schema, list[list[_Chain]] | None] = {}

    def map_row(self, row: Any, source: str | None = None) -> MapResult:
        """One row dict (any other source than Parquet), as RowMapper.map_row."""
        return self._by_rows.map_row(row, source)

    def map_group(self, rows: Sequence[Any], sources: Sequence[str]) -> MapResult:
        """One group of row dicts (plan.group_by), as RowMapper.map_group."""
        return self._by_rows.map_group(rows, sources)

    def map_batch(self, batch: pa.RecordBatch, sources: Sequence[str]) -> Iterator[MapResult]:
        """One MapResult per row of `batch`, in order; `sources[i]` names row i."""
        columns = self._columns(batch)
        if columns is None:
            try:
                dicts = parquet_batch_to_rows(batch)
            except (ValueError, pa.ArrowException) as exc:   # e.g. a struct naming a field twice
                yield from self._unreadable(batch, sources, exc)
                return
            map_row = self._by_rows.map_row
            for row, source in zip(dicts, sources, strict=True):
                yield map_row(row, source)
            return
        map_row = self._by_columns.map_row
        rows = _rows_of(columns, batch.num_rows)
        users = self.built_users(columns, batch.num_rows)
        if users is None:
            for row, source in zip(rows, sources, strict=True):
                yield map_row(row, source)
        else:
            for row, source, user in zip(rows, sources, users, strict=True):
                yield map_row(row, source, built_user=user)

    def _unreadable(self, batch: pa.RecordBatch, sources: Sequence[str], exc: Exception
                    ) -> Iterator[MapResult]:
        """Rows pyarrow cannot turn into Python values: each one a mapping_error dead letter."""
        detail = (f"the file's rows cannot be read as records ({type(exc).__name__}:"
                  f" {str(exc)[:200]}); fix the export's schema (for example rename a struct"
                  " field that appears twice) and run again")
        for source in sources:
            yield MapResult(dead_letter=DeadLetter(reasons.MAPPING_ERROR, detail, source=source))

    def positional_rows(self, batch: pa.RecordBatch) -> list[tuple[Any, ...]] | None:
        """The batch as tuples of path values, or None when the schema needs row dicts."""
        columns = self._columns(batch)
        return None if columns is None else _rows_of(columns, batch.num_rows)

    def _columns(self, batch: pa.RecordBatch) -> list[list[Any]] | None:
        """Per path of the positional plan, every row's value, `present` (blank text and empty
        lists are None, as ValueSource reads them); None: the schema needs row dicts."""
        chains = self._schema_chains(batch.schema)
        if chains is None:
            return None
        converted: dict = {}
        return [present_column(_first_not_none([_chain_values(batch, chain, converted)
                                                for chain in path_chains]))
                if path_chains else [None] * batch.num_rows for path_chains in chains]

    def built_users(self, columns: list[list[Any]], count: int) -> list[Any] | None:
        """UserBuilder.build_columns over the path columns (passed to map_row by name), or None
        when users are built row by row."""
        if self._users is None:
            return None

        def column_of(source: ValueSource) -> list[Any]:   # the columns are present already
            column = columns[source.refs[0].index]
            return present_column(column, source.placeholders) if source.placeholders else column
        return self._users.build_columns(column_of, count)

    def _schema_chains(self, schema: pa.Schema) -> list[list[_Chain]] | None:
        if schema not in self._chains:
            try:
                chains = [_path_chains(list(schema), path) for path in self._positional.paths]
            except _Unsupported:
                chains = None
            self._chains[schema] = chains
        return self._chains[schema]
