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

import dataclasses
import itertools
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
from transforms.paths import EACH, Path, Steps, ValueSource, present_column, select_index
from transforms.user_fields import UserBuilder


class _Unsupported(Exception):
    """The schema cannot serve this path column-wise; map the batch from row dicts."""


class _Position:
    """A path replaced by its position in a tuple of values (duck-types Path): a row-level
    path in the row tuple, or an item path in an item tuple (item-tuple layout).

    The tuples hold `present` values (ColumnarMapper._columns applies it column-wise), so a
    source that reads this position alone reads `row[present_index]` (paths.ValueSource).
    """

    __slots__ = ("text", "get", "present_index")

    has_each = False

    def __init__(self, text: str, index: int):
        self.text = text
        self.present_index = index
        self.get = operator.itemgetter(index)


class _Positions:
    """Paths in order of first use, each replaced by its _Position (one per distinct text)."""

    def __init__(self):
        self.paths: list[Path] = []
        self._index: dict[str, int] = {}

    def __call__(self, path: Path) -> _Position:
        if path.text not in self._index:
            self._index[path.text] = len(self.paths)
            self.paths.append(path)
        return _Position(path.text, self._index[path.text])


class _PositionalPlan:
    """A copy of a MappingPlan whose row-level paths read positions, and the paths in order.

    Derived from the plan by mapping.rewrite_row_paths: every field of the plan is rewritten,
    so a new field cannot be left reading a path of a row that is now a tuple.

    With `item_tuples`, the contents list (`data.contents.path`, e.g. `items`) reads, per row,
    a list of item tuples instead of item dicts, and the item paths read positions in them
    (`item_paths`); `items_index` is the list's position in the row tuple. That layout serves
    schemas where the list is a list of structs (ColumnarMapper._item_layout).
    """

    def __init__(self, plan: MappingPlan, item_tuples: bool = False):
        rows = _Positions()
        self.items_index: int | None = None
        self.item_paths: list[Path] = []
        contents = plan.contents
        if not item_tuples:
            self.plan = rewrite_row_paths(plan, rows)
        else:
            items = _Positions()
            rewritten = rewrite_row_paths(
                dataclasses.replace(plan, contents=dataclasses.replace(contents, path=None)),
                rows, items)
            self.items_index = len(rows.paths)
            rows.paths.append(contents.path)   # a position of its own: never shared
            self.item_paths = items.paths
            self.plan = dataclasses.replace(rewritten, contents=dataclasses.replace(
                rewritten.contents, path=_Position(contents.path.text, self.items_index)))
        self.paths: list[Path] = rows.paths


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


def _leaf_array(root: pa.RecordBatch | pa.StructArray, indexes: tuple[int, ...]) -> pa.Array:
    """The array at `indexes` down the structs of a batch or of a struct array (items)."""
    if isinstance(root, pa.RecordBatch):
        array = root.column(indexes[0])
        indexes = indexes[1:]
    else:
        array = root
    for depth, index in enumerate(indexes):
        if array.null_count:    # a null parent makes its children null: struct_field does that
            return pc.struct_field(array, list(indexes[depth:]))
        array = array.field(index)   # no null parent: the child as it is, without a kernel call
    return array


def _chain_values(root: pa.RecordBatch | pa.StructArray, chain: _Chain, converted: dict
                  ) -> list[Any]:
    indexes, tail = chain
    values = converted.get(indexes)
    if values is None:
        values = converted[indexes] = arrow_values(_leaf_array(root, indexes))
    if tail is None:
        return values
    return _tail_values(values, tail, converted, indexes)


def _tail_values(values: list[Any], tail: Callable[[Any], Any], cache: dict, column: Any
                 ) -> list[Any]:
    """`tail(value)` for each value of `column` (None stays None), a column at a time."""
    if type(tail) is not Steps:    # the rest of a path through a list or map column
        return [None if value is None else tail(value) for value in values]
    select = tail.leading_select()
    if select is None:
        return tail.apply_column(values)
    # `list[key=value]...`: each row's list is indexed by key once for every path selecting
    # from it (kept in `cache` beside the column), then each path looks its key up.
    member, wanted, rest = select
    indexed = cache.get((column, member))
    if indexed is None:
        indexed = cache[(column, member)] = [
            None if value is None else select_index(value, member) for value in values]
    picked = [None if index is None else index.get(wanted) for index in indexed]
    return picked if rest is None else rest.apply_column(picked)


def _dict_path_values(path: Path, rows: Sequence[dict], cache: dict) -> list[Any]:
    """`path.get(row)` for each row dict; a path with steps reads its plain head once per
    chunk for every path sharing it, then applies its steps a column at a time."""
    split = path.head_and_steps()
    if split is None:
        return [path.get(row) for row in rows]
    head, steps = split
    values = cache.get(head.text)
    if values is None:
        values = cache[head.text] = [head.get(row) for row in rows]
    return _tail_values(values, steps, cache, head.text)


def _present_values(root: pa.RecordBatch | pa.StructArray, chains: list[list[_Chain]],
                    count: int) -> list[list[Any]]:
    """Per path, the `present` value of every row (or item): the first non-null reading."""
    converted: dict = {}
    return [present_column(_first_not_none([_chain_values(root, chain, converted)
                                            for chain in path_chains]))
            if path_chains else [None] * count for path_chains in chains]


class _ItemLayout:
    """Where the contents list and its item paths are in one schema (item-tuple layout)."""

    __slots__ = ("list_indexes", "item_chains")

    def __init__(self, list_indexes: tuple[int, ...], item_chains: list[list[_Chain]]):
        self.list_indexes = list_indexes
        self.item_chains = item_chains

    def item_tuples(self, batch: pa.RecordBatch) -> list[list[tuple[Any, ...]] | None]:
        """Per row, its items as tuples of present item values; None for a null/empty list."""
        array = _leaf_array(batch, self.list_indexes)
        lengths = pc.list_value_length(array).to_pylist()
        flat = array.flatten()   # the items of every non-null list, in order
        columns = _present_values(flat, self.item_chains, len(flat))
        return _regroup(_rows_of(columns, len(flat)), lengths)


class _DocumentItemLayout:
    """The contents list as a JSON column (PostgreSQL jsonb, DuckDB JSON, Snowflake VARIANT):
    each row's document parsed, then its items read as tuples by dict_item_tuples."""

    __slots__ = ("list_indexes", "item_paths")

    def __init__(self, list_indexes: tuple[int, ...], item_paths: list[Path]):
        self.list_indexes = list_indexes
        self.item_paths = item_paths

    def item_tuples(self, batch: pa.RecordBatch) -> list[list[tuple[Any, ...]] | None] | None:
        """As _ItemLayout.item_tuples; None when a document is not a list of objects."""
        documents = arrow_values(_leaf_array(batch, self.list_indexes))
        return dict_item_tuples(documents, self.item_paths)


_LIST_OR_NONE = frozenset((list, type(None)))
_ITEM_OR_NONE = frozenset((dict, type(None)))


def dict_item_tuples(lists: Sequence[Any], item_paths: Sequence[Path]
                     ) -> list[list[tuple[Any, ...]] | None] | None:
    """Per row, its items as tuples of the item paths' `present` values, read from lists of
    item dicts (None for a null or empty list): what _ItemLayout reads from a list of structs,
    so the item-tuple plan maps both. None when a row's value is anything else (JSON text, an
    object, a list holding other than objects or nulls): the row path's rules for those
    (parse the text, a dead letter for an object, an empty item for a scalar) are kept by
    mapping the chunk with its items as dicts."""
    if not set(map(type, lists)) <= _LIST_OR_NONE:
        return None
    flat = list(itertools.chain.from_iterable(filter(None, lists)))
    if not set(map(type, flat)) <= _ITEM_OR_NONE:
        return None
    columns = _dict_columns(item_paths, flat, {})   # a fresh cache: these are items, not rows
    if columns is None:
        return None
    return _regroup(_rows_of(columns, len(flat)),
                    [0 if items is None else len(items) for items in lists])


def _dict_columns(paths: Sequence[Path], rows: Sequence[dict], cache: dict
                  ) -> list[list[Any]] | None:
    """Per path, the `present` value of every row dict (or item dict); None when a path cannot
    be read: mapped one by one, the same failure becomes that row's dead letter."""
    try:
        return [present_column(_dict_path_values(path, rows, cache)) for path in paths]
    except Exception:  # noqa: BLE001 - map_row turns the same failure into a dead letter
        return None


def _regroup(items: list[tuple[Any, ...]], lengths: Sequence[int]
             ) -> list[list[tuple[Any, ...]] | None]:
    """The items of every row, in order, back into one list per row (None: no items)."""
    out: list[list[tuple[Any, ...]] | None] = []
    start = 0
    for length in lengths:
        if not length:
            out.append(None)
            continue
        out.append(items[start:start + length])
        start += length
    return out


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


class _Layout:
    """How batches of one schema are mapped column-wise: the positional plan's mapper, the
    user builder for build_columns (None: users row by row), each path's chains, the
    contents list's item layout (None: items are dicts), and for JSON items the dict-item
    layout a batch falls back to when its documents are not lists of objects."""

    __slots__ = ("mapper", "users", "chains", "items", "items_index", "fallback")

    def __init__(self, mapper: RowMapper, chains: list[list[_Chain]],
                 items: _ItemLayout | _DocumentItemLayout | None = None,
                 items_index: int | None = None, fallback: _Layout | None = None):
        self.mapper = mapper
        self.users = _column_users(mapper)
        self.chains = chains
        self.items = items
        self.items_index = items_index
        self.fallback = fallback


def _column_users(mapper: RowMapper) -> UserBuilder | None:
    """The positional mapper's user builder when build_columns can serve it, else None."""
    builder = mapper.user_builder
    return builder if builder is not None and all(
        _column_source(source) for _, source in builder.sources) else None


def _type_at(fields: Sequence[pa.Field], indexes: tuple[int, ...]) -> pa.DataType:
    arrow_type = fields[indexes[0]].type
    for index in indexes[1:]:
        arrow_type = arrow_type.field(index).type
    return arrow_type


class ColumnarMapper:
    """RowMapper for Arrow record batches. Keep one per worker, like RowMapper."""

    def __init__(self, plan: MappingPlan, clock_ms: Callable[[], int] | None = None):
        self.plan = plan
        self._by_rows = RowMapper(plan, clock_ms)
        self.counters = self._by_rows.counters
        self._positional = _PositionalPlan(plan)
        self._by_columns = self._mapper(self._positional, clock_ms)
        self._dict_users = _column_users(self._by_columns)
        # items as tuples of their paths' values: for a list of structs (no dict per item)
        self._tuple_items: _PositionalPlan | None = None
        if plan.contents is not None and plan.contents.path is not None:
            self._tuple_items = _PositionalPlan(plan, item_tuples=True)
            self._by_item_tuples = self._mapper(self._tuple_items, clock_ms)
            self._tuple_users = _column_users(self._by_item_tuples)
        # Lists of item dicts (JSON documents, row dicts) are read as tuples only when that
        # pays: when the item fields read their tuple positions directly. A field with
        # placeholders (the GA4 preset's "(not set)") checks each value again either way
        # (mapping.ItemValueSource), and the tuples would only add their own cost.
        self._dict_items_as_tuples = self._tuple_items is not None and not any(
            source.placeholders for _, source in plan.contents.fields if not source.has_constant)
        self._layouts: dict[pa.Schema, _Layout | None] = {}

    def _mapper(self, positional: _PositionalPlan, clock_ms: Callable[[], int] | None
                ) -> RowMapper:
        mapper = RowMapper(positional.plan, clock_ms, positional=True)
        mapper.counters = self.counters
        return mapper

    def map_row(self, row: Any, source: str | None = None) -> MapResult:
        """One row dict (any other source than Parquet), as RowMapper.map_row."""
        return self._by_rows.map_row(row, source)

    def map_group(self, rows: Sequence[Any], sources: Sequence[str]) -> MapResult:
        """One group of row dicts (plan.group_by), as RowMapper.map_group."""
        return self._by_rows.map_group(rows, sources)

    def map_batch(self, batch: pa.RecordBatch, sources: Sequence[str]) -> Iterator[MapResult]:
        """One MapResult per row of `batch`, in order; `sources[i]` names row i."""
        layout = self._layout(batch.schema)
        if layout is None:
            try:
                dicts = parquet_batch_to_rows(batch)
            except (ValueError, pa.ArrowException) as exc:   # e.g. a struct naming a field twice
                yield from self._unreadable(batch, sources, exc)
                return
            yield from self._map_dicts(dicts, sources)
            return
        layout, columns = self._laid_out(batch, layout)
        yield from self._map_columns(layout.mapper, layout.users, columns, sources)

    def map_rows(self, rows: Sequence[Any], sources: Sequence[str]) -> Iterator[MapResult]:
        """One MapResult per row dict, in order, as map_row gives them (CSV, JSONL, BigQuery).

        The rows' path values are read into columns once, so the user objects are built
        column-wise (UserBuilder.build_columns) and the rest reads tuple positions, as for an
        Arrow batch. A chunk holding anything but plain dicts is mapped row by row.
        """
        if not all(type(row) is dict for row in rows):
            yield from self._map_dicts(rows, sources)
            return
        cache: dict = {}   # per chunk: values of the paths' heads, and their key indexes
        columns = (_dict_columns(self._tuple_items.paths, rows, cache)
                   if self._dict_items_as_tuples else None)
        if columns is not None:
            at = self._tuple_items.items_index
            columns[at] = dict_item_tuples(columns[at], self._tuple_items.item_paths)
            if columns[at] is not None:      # else: not lists of item dicts, mapped as dicts
                yield from self._map_columns(self._by_item_tuples, self._tuple_users, columns,
                                             sources)
                return
        columns = _dict_columns(self._positional.paths, rows, cache)
        if columns is None:
            yield from self._map_dicts(rows, sources)
            return
        yield from self._map_columns(self._by_columns, self._dict_users, columns, sources)

    def _map_dicts(self, rows: Sequence[Any], sources: Sequence[str]) -> Iterator[MapResult]:
        map_row = self._by_rows.map_row
        for row, source in zip(rows, sources, strict=True):
            yield map_row(row, source)

    def _map_columns(self, mapper: RowMapper, users: UserBuilder | None,
                     columns: list[list[Any]], sources: Sequence[str]) -> Iterator[MapResult]:
        """The rows of `columns` through the positional `mapper`, with their user objects built
        column-wise when `users` can build them."""
        count = len(sources)
        map_row = mapper.map_row
        rows = _rows_of(columns, count)
        built = self._users_of(users, columns, count)
        if built is None:
            for row, source in zip(rows, sources, strict=True):
                yield map_row(row, source)
        else:
            for row, source, user in zip(rows, sources, built, strict=True):
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
        """Per path of the batch's positional plan, every row's value (see _laid_out); None:
        the schema needs row dicts."""
        layout = self._layout(batch.schema)
        return None if layout is None else self._laid_out(batch, layout)[1]

    def item_tuples(self, batch: pa.RecordBatch) -> bool:
        """Whether this batch's contents items are read as tuples (a list of structs, or JSON
        documents that are lists of objects)."""
        layout = self._layout(batch.schema)
        return layout is not None and self._laid_out(batch, layout)[0].items is not None

    def _laid_out(self, batch: pa.RecordBatch, layout: _Layout
                  ) -> tuple[_Layout, list[list[Any]]]:
        """The layout the batch is mapped with, and per path of its positional plan every
        row's value, `present` (blank text and empty lists are None, as ValueSource reads
        them). JSON items that are not all lists of objects: the fallback dict-item layout."""
        if layout.items is None:
            return layout, _present_values(batch, layout.chains, batch.num_rows)
        items = layout.items.item_tuples(batch)   # first: a fallback converts its own columns
        if items is None:
            return self._laid_out(batch, layout.fallback)
        columns = _present_values(batch, layout.chains, batch.num_rows)
        columns[layout.items_index] = items
        return layout, columns

    def built_users(self, batch: pa.RecordBatch, columns: list[list[Any]]) -> list[Any] | None:
        """UserBuilder.build_columns over the batch's path columns (passed to map_row by name),
        or None when users are built row by row."""
        layout = self._layout(batch.schema)
        if layout is None:
            return None
        return self._users_of(self._laid_out(batch, layout)[0].users, columns, batch.num_rows)

    @staticmethod
    def _users_of(users: UserBuilder | None, columns: list[list[Any]], count: int
                  ) -> list[Any] | None:
        if users is None:
            return None

        def column_of(source: ValueSource) -> list[Any]:   # the columns are present already
            column = columns[source.refs[0].present_index]
            return present_column(column, source.placeholders) if source.placeholders else column
        return users.build_columns(column_of, count)

    def _layout(self, schema: pa.Schema) -> _Layout | None:
        if schema not in self._layouts:
            self._layouts[schema] = self._item_tuple_layout(schema) or self._dict_item_layout(
                schema)
        return self._layouts[schema]

    def _dict_item_layout(self, schema: pa.Schema) -> _Layout | None:
        try:
            chains = [_path_chains(list(schema), path) for path in self._positional.paths]
        except _Unsupported:
            return None
        return _Layout(self._by_columns, chains)

    def _item_tuple_layout(self, schema: pa.Schema) -> _Layout | None:
        """The item-tuple layout when the contents list is one list-of-structs column, or one
        JSON column (its documents' items read as dicts; the dict-item layout as fallback)."""
        positional = self._tuple_items
        if positional is None:
            return None
        fields = list(schema)
        try:
            found = _path_chains(fields, self.plan.contents.path)
            if len(found) != 1 or found[0][1] is not None:
                return None                 # read in several places, or per row: dicts
            list_indexes = found[0][0]
            list_type = _type_at(fields, list_indexes)
            chains = [[] if index == positional.items_index else _path_chains(fields, path)
                      for index, path in enumerate(positional.paths)]
            if is_json_type(list_type):
                if not self._dict_items_as_tuples:
                    return None
                fallback = self._dict_item_layout(schema)
                return None if fallback is None else _Layout(
                    self._by_item_tuples, chains,
                    _DocumentItemLayout(list_indexes, positional.item_paths),
                    positional.items_index, fallback)
            if not (pa.types.is_list(list_type) or pa.types.is_large_list(list_type)
                    or pa.types.is_fixed_size_list(list_type)) or not pa.types.is_struct(
                    list_type.value_type):
                return None
            item_fields = list(list_type.value_type)
            item_chains = [_path_chains(item_fields, path) for path in positional.item_paths]
        except _Unsupported:
            return None
        return _Layout(self._by_item_tuples, chains, _ItemLayout(list_indexes, item_chains),
                       positional.items_index)
