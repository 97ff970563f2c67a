"""What every source emits: rows in chunks, each row with a reference to where it came from.

A source reference is `<origin>#row=<N>` with N counted from 1, for example
`gs://bucket/export-0001.parquet#row=17` or `sql:orders#row=42`. It is what a dead-letter record's
`source` field carries, so a user can find the row again.
"""
from __future__ import annotations

import datetime
import decimal
import ipaddress
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa


class RowChunk:
    """Up to `chunk_size` rows travelling as one Beam element (per-row Beam overhead is large).

    `rows` and `sources` are parallel lists: `sources[i]` says where `rows[i]` came from.
    A chunk read from Parquet keeps the Arrow record batch instead (`RowChunk.of_arrow`): the
    columnar mapper reads it without building a dict per row, and `rows`/`sources` are built
    only when something asks for them.
    """

    __slots__ = ("_rows", "_sources", "batch", "_origin", "_first_row")

    def __init__(self, rows: list[dict[str, Any]], sources: list[str]) -> None:
        if len(rows) != len(sources):
            raise ValueError(
                f"RowChunk needs one source per row: {len(rows)} rows, {len(sources)} sources"
            )
        self._rows: list[dict[str, Any]] | None = rows
        self._sources: list[str] | None = sources
        self.batch: pa.RecordBatch | None = None
        self._origin = ""
        self._first_row = 1

    @classmethod
    def of_arrow(cls, batch: pa.RecordBatch, origin: str, first_row: int) -> RowChunk:
        """The rows of `batch`, the first being row `first_row` (from 1) of `origin`."""
        chunk = cls.__new__(cls)
        chunk._rows = chunk._sources = None
        chunk.batch, chunk._origin, chunk._first_row = batch, origin, first_row
        return chunk

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = parquet_batch_to_rows(self.batch)
        return self._rows

    @property
    def sources(self) -> list[str]:
        if self._sources is None:
            origin, first = self._origin, self._first_row
            self._sources = [source_ref(origin, first + offset)
                             for offset in range(self.batch.num_rows)]
        return self._sources

    def __len__(self) -> int:
        return self.batch.num_rows if self._rows is None else len(self._rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowChunk):
            return NotImplemented
        return self.rows == other.rows and self.sources == other.sources

    __hash__ = None  # type: ignore[assignment]  # rows are lists: not hashable

    def __repr__(self) -> str:
        return f"RowChunk(rows={self.rows!r}, sources={self.sources!r})"

    def __reduce__(self):
        if self._rows is None and self.batch.num_columns:   # Arrow IPC drops a bare row count
            return (RowChunk.of_arrow, (self.batch, self._origin, self._first_row))
        return (RowChunk, (self.rows, self.sources))


def source_ref(origin: str, row_number: int) -> str:
    """`source_ref("gs://b/x.parquet", 17)` -> `"gs://b/x.parquet#row=17"` (row numbers from 1)."""
    return f"{origin}#row={row_number}"


class ChunkBuilder:
    """Collects (row, source) pairs and hands out a RowChunk every `chunk_size` rows."""

    def __init__(self, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self._rows: list[dict[str, Any]] = []
        self._sources: list[str] = []

    def add(self, row: dict[str, Any], source: str) -> RowChunk | None:
        """Adds a row; returns a full chunk when this row completed one, else None."""
        self._rows.append(row)
        self._sources.append(source)
        if len(self._rows) >= self.chunk_size:
            return self.flush()
        return None

    def flush(self) -> RowChunk | None:
        """The rows collected so far as a chunk (None when there are none)."""
        if not self._rows:
            return None
        chunk = RowChunk(self._rows, self._sources)
        self._rows, self._sources = [], []
        return chunk


def to_plain(value: Any) -> Any:
    """A warehouse value as the plain Python the mapper understands.

    Kept as they are: None, bool, int, float, str, Decimal (money stays exact), datetime (aware or
    naive; naive means UTC), date, time. Converted: bytes -> lower-case hex, so a `SHA256(email)`
    BYTES/bytea column arrives as the 64-hex form the mapper passes through as a hash; UUID and
    IP addresses -> str; tuples -> lists; dicts and lists recursively (nested records stay
    nested). Anything else is left alone.
    """
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Network, ipaddress.IPv6Network,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return str(value)
    return value


def row_to_plain(row: dict[str, Any]) -> dict[str, Any]:
    """`to_plain` applied to every value of a row (keys kept)."""
    return {key: to_plain(value) for key, value in row.items()}


def arrow_batch_to_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """An Arrow record batch (Parquet, DuckDB) as plain row dicts.

    Structs -> dicts, lists -> lists, maps -> dicts (last key wins), decimals -> Decimal,
    timestamps -> datetimes; nanosecond timestamps (pandas/Spark exports) are truncated to
    microseconds, which a datetime can hold, instead of failing; binary -> hex (to_plain).
    """
    schema = batch.schema
    python_safe = pa.schema([field.with_type(_python_safe_type(field.type)) for field in schema],
                            metadata=schema.metadata)
    if not python_safe.equals(schema):
        batch = batch.cast(python_safe, safe=False)
    rows = batch.to_pylist(maps_as_pydicts="lossy")
    if any(_holds_binary(field.type) for field in schema):
        rows = [row_to_plain(row) for row in rows]
    return rows


def _python_safe_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
        return pa.timestamp("us", arrow_type.tz)
    if pa.types.is_struct(arrow_type):
        return pa.struct([arrow_type.field(index).with_type(
            _python_safe_type(arrow_type.field(index).type))
            for index in range(arrow_type.num_fields)])
    if pa.types.is_map(arrow_type):
        return pa.map_(arrow_type.key_field, arrow_type.item_field.with_type(
            _python_safe_type(arrow_type.item_type)))
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        item = arrow_type.value_field.with_type(_python_safe_type(arrow_type.value_type))
        return pa.list_(item) if pa.types.is_list(arrow_type) else pa.large_list(item)
    return arrow_type


def _holds_binary(arrow_type: pa.DataType) -> bool:
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type) \
            or pa.types.is_fixed_size_binary(arrow_type):
        return True
    return any(_holds_binary(arrow_type.field(index).type)
               for index in range(arrow_type.num_fields))


_SCALARS = (bool, int, float, str, decimal.Decimal, datetime.date, datetime.time,
            datetime.timedelta)


def parquet_batch_to_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The same rows as `rows.arrow_batch_to_rows`, through pyarrow's fast path when it can.

    `to_pylist(maps_as_pydicts=...)` builds every value through a Python scalar object: on a
    nested export that costs about as much as mapping the row (5x slower than plain
    `to_pylist()`, which converts in C++). Without map, binary or nanosecond-timestamp columns
    there is nothing for the general path to convert, so plain `to_pylist()` gives equal rows.
    A batch with a warehouse column (JSON, UUID, PostgreSQL numeric: see `warehouse_values`) is
    built column by column, so those columns hold what the SQL drivers' rows held.
    """
    if any(isinstance(field.type, pa.BaseExtensionType) for field in batch.schema):
        names = batch.schema.names
        columns = [arrow_values(column) for column in batch.columns]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    if any(_needs_conversion(field.type) for field in batch.schema):
        return arrow_batch_to_rows(batch)
    return batch.to_pylist()


def _needs_conversion(arrow_type: pa.DataType) -> bool:
    if (pa.types.is_map(arrow_type) or pa.types.is_binary(arrow_type)
            or pa.types.is_large_binary(arrow_type) or pa.types.is_fixed_size_binary(arrow_type)
            or (pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns")
            or isinstance(arrow_type, pa.BaseExtensionType)):
        return True
    return any(_needs_conversion(arrow_type.field(index).type)
               for index in range(arrow_type.num_fields))


def is_json_type(arrow_type: pa.DataType) -> bool:
    """A column of JSON documents (`arrow.json`): its values are parsed, so a path cannot be
    resolved from the schema alone (like a map, the keys are per row)."""
    return isinstance(arrow_type, pa.JsonType)


def json_column(array: pa.Array) -> pa.Array:
    """A text column of JSON documents marked as such (DuckDB's JSON, Snowflake's VARIANT)."""
    if is_json_type(array.type):
        return array
    return pa.ExtensionArray.from_storage(pa.json_(), array.cast(pa.string()))


def warehouse_values(array: pa.Array) -> list[Any] | None:
    """The Python values the SQL drivers' rows held for an Arrow extension column, else None.

    - `arrow.json` (PostgreSQL json/jsonb, DuckDB JSON, Snowflake VARIANT/OBJECT/ARRAY) ->
      the parsed document (dict, list, str, number; json.loads, as psycopg does);
    - `arrow.uuid` -> its canonical text, as to_plain gives a UUID;
    - PostgreSQL `numeric` (an opaque text column: a numeric without a declared precision has a
      scale per value) -> Decimal of the server's text, exactly as psycopg gives it;
    - any other opaque column -> its text, or its bytes as hex.
    """
    arrow_type = array.type
    if not isinstance(arrow_type, pa.BaseExtensionType):
        return None
    if isinstance(arrow_type, pa.JsonType):
        return [None if text is None else json.loads(text) for text in array.storage.to_pylist()]
    if isinstance(arrow_type, pa.UuidType):
        return [None if raw is None else str(uuid.UUID(bytes=raw))
                for raw in array.storage.to_pylist()]
    if isinstance(arrow_type, pa.OpaqueType) and arrow_type.type_name == "numeric":
        return [None if text is None else decimal.Decimal(text)
                for text in array.storage.to_pylist()]
    return [to_plain(value) for value in array.storage.to_pylist()]


def arrow_values(array: pa.Array) -> list[Any]:
    """One column's values exactly as they appear in `parquet_batch_to_rows`'s rows."""
    if not _needs_conversion(array.type):
        return array.to_pylist()
    values = warehouse_values(array)
    if values is not None:
        return values
    safe = _python_safe_type(array.type)
    if not safe.equals(array.type):
        array = array.cast(safe, safe=False)
    values = array.to_pylist(maps_as_pydicts="lossy")
    if _holds_binary(array.type) or _holds_extension(array.type):
        values = [to_plain(value) for value in values]
    return values


def _holds_extension(arrow_type: pa.DataType) -> bool:
    if isinstance(arrow_type, pa.BaseExtensionType):
        return True
    return any(_holds_extension(arrow_type.field(index).type)
               for index in range(arrow_type.num_fields))


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of `batches`, in order, as batches of exactly `rows` rows (the last: the rest).

    Drivers size their batches in bytes (ADBC PostgreSQL) or by their own vector size (DuckDB);
    a RowChunk holds `chunk_size` rows whatever the driver did. Each part of a larger batch is
    copied into buffers of its own: a slice shares its parent's buffers, and pickling it (as
    Beam does between steps) would send the whole parent (8x the bytes for 5,000 of 40,000).
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        joined = pending[0] if len(pending) == 1 else pa.concat_batches(pending)
        offset = 0
        while held - offset >= rows:
            yield _compact(joined, offset, rows)
            offset += rows
        pending = [_compact(joined, offset, held - offset)] if offset < held else []
        held -= offset
    if held:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _compact(batch: pa.RecordBatch, offset: int, rows: int) -> pa.RecordBatch:
    if offset == 0 and rows == batch.num_rows:
        return batch
    return pa.concat_batches([batch.slice(offset, rows)])     # copies the slice's values
