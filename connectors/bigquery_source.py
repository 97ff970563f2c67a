"""Reading a BigQuery table or query into RowChunks with Beam's native `ReadFromBigQuery`.

Method: DIRECT_READ (the BigQuery Storage Read API) for tables and queries alike, with
`use_native_datetime=True` (rows come as Arrow, DATETIME as a naive datetime rather than a
string). It needs no GCS temp location, reads a table in parallel streams, and for a query
BigQuery materializes the result in a temporary dataset of the job's project (`--project` or
`project=`) that Beam deletes afterwards.

Values (`bigquery_row_to_plain`): NUMERIC/BIGNUMERIC stay Decimal, TIMESTAMP an aware datetime
(UTC), DATETIME a naive datetime (the mapper reads naive as UTC), DATE a date, TIME a time,
BYTES lower-case hex (so `SHA256(email)` arrives as a 64-hex hash), RECORD a dict, REPEATED a
list, JSON the JSON text (a str), GEOGRAPHY its WKT text.

Query parameters use BigQuery's own style, `@since`. Beam's ReadFromBigQuery cannot send query
parameters, so `bind_query_params` writes each value into the query as a typed literal it renders
itself (`TIMESTAMP '2026-03-01 12:00:00+00:00'`, `DATE '2026-03-01'`, `NUMERIC '19.99'`, quoted
and escaped strings): values are never pasted in as raw text. Datetimes become TIMESTAMPs (naive
ones are UTC); compare with a DATETIME column through `DATETIME(@since)`.

Sources: BigQuery gives rows in no stable order, so a row number would not find the row again.
Every row's source is `bigquery:<project:dataset.table>` (or `bigquery:<label>` for a query,
default `query`); the dead letter's `event_id` then identifies the row.
"""
from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from connectors.rows import RowChunk, to_plain
from transforms import metrics
from transforms.errors import ConfigError


def bigquery_row_to_plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ReadFromBigQuery as plain Python (see the module docstring).

    `{"v": Decimal("19.99"), "h": b"\\x01\\xab", "r": [{"x": 1}]}`
    -> `{"v": Decimal("19.99"), "h": "01ab", "r": [{"x": 1}]}`
    """
    return {str(key): to_plain(value) for key, value in row.items()}


# @name outside string literals, quoted identifiers and comments ('a@b.com' is no parameter);
# @@system_variables are left alone.
_QUERY_TOKENS = re.compile(r'''
    (?P<skip>
        \'\'\'.*?\'\'\' | """.*?"""
      | '(?:\\.|[^'\\\n])*' | "(?:\\.|[^"\\\n])*"
      | `[^`]*`
      | --[^\n]* | \#[^\n]* | /\*.*?\*/
      | @@\w+ )
  | (?<!\w)@(?P<name>[A-Za-z_]\w*)
''', re.VERBOSE | re.DOTALL)


def bigquery_literal(value: Any) -> str:
    """A Python value as a GoogleSQL literal: `datetime(2026, 3, 1, tzinfo=UTC)` ->
    `TIMESTAMP '2026-03-01 00:00:00+00:00'`, `"O'Brien"` -> `'O\\'Brien'`."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST('{value!r}' AS FLOAT64)"
    if isinstance(value, decimal.Decimal):
        return f"NUMERIC '{value}'"
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return f"TIMESTAMP '{value.astimezone(datetime.timezone.utc).isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{escaped}'"
    raise ConfigError(f"Cannot pass a {type(value).__name__} as a BigQuery query parameter; "
                      f"use a datetime, date, number, bool or string.")


def bind_query_params(query: str, params: Mapping[str, Any] | None) -> str:
    """`@name` placeholders replaced by the literal of `params[name]` (see the module docstring).

    Raises ConfigError naming the first placeholder that has no value.
    """
    params = params or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name is None:
            return match.group(0)
        if name not in params:
            raise ConfigError(
                f"The BigQuery query uses @{name} but no value was given for {name!r} "
                f"(params: {', '.join(sorted(params)) or 'none'}).")
        return bigquery_literal(params[name])

    return _QUERY_TOKENS.sub(replace, query)


class _ToRowChunk(beam.DoFn):
    """A batch of BigQuery rows -> one RowChunk."""

    def __init__(self, origin: str) -> None:
        self._origin = origin
        self._rows_read = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_ROWS_READ)

    def process(self, rows: list[Mapping[str, Any]]) -> list[RowChunk]:
        self._rows_read.inc(len(rows))
        return [RowChunk([bigquery_row_to_plain(row) for row in rows],
                         [self._origin] * len(rows))]


class RowsToChunks(beam.PTransform):
    """BigQuery row dicts -> RowChunks of at most `chunk_size` plain rows, source `origin`.

    BatchElements (fixed size) groups rows within a bundle, as Beam's own batching does.
    """

    def __init__(self, origin: str, chunk_size: int) -> None:
        super().__init__()
        self._origin = origin
        self._chunk_size = chunk_size

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return (
            rows
            | "BatchRows" >> beam.BatchElements(min_batch_size=self._chunk_size,
                                                max_batch_size=self._chunk_size)
            | "MakeChunks" >> beam.ParDo(_ToRowChunk(self._origin))
        )


class ReadBigQuery(beam.PTransform):
    """A BigQuery table or query -> PCollection[RowChunk].

    Args:
      table: `project:dataset.table` or `dataset.table` (exactly one of table / query).
      query: a standard-SQL query.
      project: the project that runs the read (default: the pipeline's `--project`).
      columns: table reads only: the columns to read (every name must exist in the table;
        BigQuery refuses unknown ones — use a query to pick columns that may be missing).
      chunk_size: the most rows per RowChunk.
      label: the name in source references for a query (default `query`).
      params: values for the query's `@name` placeholders, e.g. `{"since": watermark}`.
    """

    def __init__(self, table: str | None = None, query: str | None = None, *,
                 project: str | None = None, columns: Sequence[str] | None = None,
                 chunk_size: int = 1000, label: str | None = None,
                 params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if (table is None) == (query is None):
            raise ConfigError("ReadBigQuery needs exactly one of table (--bigquery-table) or "
                              "query (--bigquery-query).")
        if columns is not None and table is None:
            raise ConfigError("ReadBigQuery: columns apply to table reads; for a query, name "
                              "the columns in its SELECT.")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
        if params and table is not None:
            raise ConfigError("ReadBigQuery: params apply to queries (@name placeholders), "
                              "not to table reads.")
        self._table = table
        self._query = None if query is None else bind_query_params(query, params)
        self._project = project
        self._columns = None if columns is None else list(columns)
        self._chunk_size = chunk_size
        self._origin = f"bigquery:{table}" if table else f"bigquery:{label or 'query'}"

    def _reader(self) -> beam.PTransform:
        method = beam.io.ReadFromBigQuery.Method.DIRECT_READ
        if self._table is not None:
            return beam.io.ReadFromBigQuery(
                table=self._table, project=self._project, method=method,
                use_native_datetime=True, selected_fields=self._columns)
        return beam.io.ReadFromBigQuery(
            query=self._query, use_standard_sql=True, project=self._project, method=method,
            use_native_datetime=True)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "ReadFromBigQuery" >> self._reader()
            | "ToRowChunks" >> RowsToChunks(self._origin, self._chunk_size)
        )

    def display_data(self) -> dict[str, Any]:
        return {"source": self._origin, "chunk_size": self._chunk_size}
