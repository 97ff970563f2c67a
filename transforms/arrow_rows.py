"""Arrow record batches and warehouse values as the plain Python the mapper reads.

The one home of the Arrow -> Python conversion: the file and SQL sources (connectors/) and the
columnar mapper (transforms/columnar.py) all call these, so both mapping paths see equal values.
"""
from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
from typing import Any

import pyarrow as pa

from transforms.json_text import loads


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
    """The same rows as `arrow_batch_to_rows`, through pyarrow's fast path when it can.

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
    """A column of JSON documents (`arrow.json`): its values are parsed, so like a map's keys,
    a path into it is read per row."""
    return isinstance(arrow_type, pa.JsonType)


def json_column(array: pa.Array) -> pa.Array:
    """A text column of JSON documents marked as such (DuckDB's JSON, Snowflake's VARIANT)."""
    if is_json_type(array.type):
        return array
    return pa.ExtensionArray.from_storage(pa.json_(), array.cast(pa.string()))


def warehouse_values(array: pa.Array) -> list[Any] | None:
    """The Python values the SQL drivers' rows held for an Arrow extension column, else None.

    - `arrow.json` (PostgreSQL json/jsonb, DuckDB JSON, Snowflake VARIANT/OBJECT/ARRAY) ->
      the parsed document (dict, list, str, number; as json.loads, which psycopg uses, gives it);
    - `arrow.uuid` -> its canonical text, as to_plain gives a UUID;
    - PostgreSQL `numeric` (an opaque text column: a numeric without a declared precision has a
      scale per value) -> Decimal of the server's text, exactly as psycopg gives it;
    - any other opaque column -> its text, or its bytes as hex.
    """
    arrow_type = array.type
    if not isinstance(arrow_type, pa.BaseExtensionType):
        return None
    if isinstance(arrow_type, pa.JsonType):
        return [None if text is None else loads(text) for text in array.storage.to_pylist()]
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
