"""A source's columns and first rows, read by the launcher without a Beam pipeline.

The launcher uses the columns to check the mapping before any row is read
(transforms/schema_check.py), and `capi-sync preview` maps the first rows:

    columns_of_files(["exports/*.parquet"])     # Parquet footers / CSV headers; None for JSONL
    columns_of_sql("duckdb:///w.db", "SELECT ...", params)   # result columns, no row fetched
    columns_of_bigquery(table="proj:ds.t")      # the table schema (or a dry run's for a query)
    first_rows_of_files(["x.parquet"], limit=5) # [(row, source)], or Arrow batches for Parquet

Columns of files are the union over the first MAX_SCHEMA_FILES matched files (a footer or a
header line each, so the check stays cheap on a large glob).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from connectors import file_source as files
from connectors.rows import RowChunk, to_plain
from connectors.sql_source import (
    DUCKDB,
    SNOWFLAKE,
    SqlSourceError,
    dialect_of,
    first_chunk,
    open_duckdb,
    parameter_names,
    postgresql_reader,
    query_check_failure,
    query_label,
    redact_url,
    result_columns,
    statement_text,
    to_duckdb_query,
)
from transforms.deadletter import DeadLetter
from transforms.errors import CapiSyncError
from transforms.schema_check import (
    ANY,
    LIST,
    STRUCT,
    Column,
    columns_from_arrow,
    columns_from_bigquery,
    columns_from_names,
)

_LOG = logging.getLogger(__name__)

MAX_SCHEMA_FILES = 20
BIGQUERY_CHECK_TIMEOUT_S = 60.0     # the launcher's look at a BigQuery schema
_PG_JSON_TYPES = frozenset({"json", "jsonb", "record"})


@dataclasses.dataclass(frozen=True)
class SourceColumns:
    """The columns a source will deliver; `columns` None when they cannot be known before the
    rows are read (JSONL, or no file matched)."""

    label: str
    columns: tuple[Column, ...] | None


class InputNotListed(OSError):
    """The file system could not list what an --input pattern names (no access to the bucket,
    no credentials, no network): the message names the pattern and the cause."""


def matched_files(patterns: Sequence[str]) -> list[str]:
    """The files the patterns match, each once, in order (no file read). Raises
    FileNotFoundError for a path without a wildcard that names no file, IsADirectoryError for
    one that names a local folder (the readers would fail on either once the run started),
    InputNotListed when the file system cannot list a pattern at all."""
    paths: dict[str, None] = {}
    for pattern in patterns:
        try:
            matched = files.match_paths(pattern)
        except BeamIOError as error:
            causes = "; ".join(f"{type(cause).__name__}: {cause}"
                               for cause in (error.exception_details or {}).values()) or str(error)
            raise InputNotListed(f"--input {pattern} cannot be listed ({causes[:300]})") from None
        for path in matched:
            if not files.has_wildcard(pattern) and FileSystems.get_scheme(path) is None \
                    and os.path.isdir(path):
                raise IsADirectoryError(
                    f"{pattern} is a folder: name its files, e.g. {pattern}/*.parquet "
                    f"(or {pattern}/ for every file in it)")
            paths.setdefault(path)
    return list(paths)


def _format(path: str, file_format: str) -> str:
    return files.detect_format(path) if file_format == files.AUTO else file_format


def _csv_header(path: str) -> list[str]:
    with files.open_file(path, files.CSV) as handle:
        first = next(files.text_lines(handle), b"")
    return next(csv.reader(io.StringIO(first.decode("utf-8", "replace"))), [])


_DEAD_LETTER_KEYS = frozenset(field.name for field in dataclasses.fields(DeadLetter))


def _refuse_dead_letters(path: str) -> None:
    """ValueError when the JSONL file's first record is a capi-sync dead letter: read as export
    rows, every one of them would be dead-lettered again (no event type)."""
    with files.open_file(path, files.JSONL) as handle:
        first = next(files.read_jsonl(handle, path), None)   # (row, source), or a DeadLetter
    if isinstance(first, tuple) and first[0].keys() == _DEAD_LETTER_KEYS:
        raise ValueError(f"{path} holds capi-sync dead letters, not export rows: to send their "
                         f"events again, add --input-format dead-letter")


def _comma_separated(path: str, header: list[str]) -> list[str]:
    """The header, or ValueError when it is one column holding another separator (an export
    written with `;`, tabs or `|`): every mapped path would otherwise match no column."""
    if len(header) == 1:
        for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
            if separator in header[0]:
                raise ValueError(
                    f"{path}: its header is one column holding {name}; capi-sync reads CSV "
                    f"separated by commas. Export the file with commas (or as Parquet or JSON "
                    f"Lines).")
    return header


def _merge(columns: dict[str, Column], more: Sequence[Column]) -> None:
    for column in more:
        known = columns.get(column.name)
        if known is None:
            columns[column.name] = column
        elif known.kind == STRUCT and column.kind == STRUCT:
            children = {child.name: child for child in known.children}
            _merge(children, column.children)
            columns[column.name] = dataclasses.replace(known, children=tuple(children.values()))


def columns_of_files(patterns: Sequence[str], file_format: str = files.AUTO) -> SourceColumns:
    import pyarrow.parquet as pq

    paths = matched_files(patterns)
    label = ", ".join(patterns)
    if not paths:
        return SourceColumns(label, None)
    merged: dict[str, Column] = {}
    for path in paths[:MAX_SCHEMA_FILES]:
        kind = _format(path, file_format)
        if kind == files.PARQUET:
            with files.open_file(path, files.PARQUET) as handle:
                _merge(merged, columns_from_arrow(pq.ParquetFile(handle).schema_arrow))
        elif kind == files.CSV:
            _merge(merged, columns_from_names(_comma_separated(path, _csv_header(path))))
        else:           # JSONL: every line may have other keys; checked after the run instead
            _refuse_dead_letters(path)
            return SourceColumns(label, None)
    what = "the file schema" if len(paths) == 1 else \
        f"the schemas of {min(len(paths), MAX_SCHEMA_FILES)} of {len(paths)} matched files"
    return SourceColumns(f"{label} ({what})", tuple(merged.values()))


def _duckdb_params(query: str, params: Mapping[str, Any] | None) -> tuple[str, dict | None]:
    if params is None:
        return query, None
    return to_duckdb_query(query), {name: params[name] for name in parameter_names(query)} or None


def columns_of_sql(url: str, query: str, params: Mapping[str, Any] | None = None
                   ) -> SourceColumns:
    """The query's result columns, without fetching a row (DuckDB: LIMIT 0 on the relation,
    typed through Arrow; PostgreSQL: the cursor description of the query wrapped in LIMIT 0)."""
    label = f"sql:{query_label(query)} ({redact_url(url)}, the query's result columns)"
    try:
        if dialect_of(url) == DUCKDB:
            return SourceColumns(label, _duckdb_columns(url, query, params))
        if dialect_of(url) == SNOWFLAKE:
            return SourceColumns(label, columns_from_names(result_columns(url, query, params)))
        return SourceColumns(label, _postgresql_columns(postgresql_reader(url)[1], query,
                                                        params))
    except CapiSyncError:    # ours (a malformed URL, no such DuckDB file): already worded
        raise
    except Exception as error:      # the driver's message may quote the URL: scrubbed
        raise query_check_failure(url, error, query) from None


def _duckdb_columns(url: str, query: str, params: Mapping[str, Any] | None) -> tuple[Column, ...]:
    connection = open_duckdb(url)
    try:
        sql, values = _duckdb_params(statement_text(query), params)   # limit(0) wraps it
        relation = connection.sql(sql, params=values)
        if relation is None:
            raise SqlSourceError("The SQL query returned no result set; give a SELECT.")
        json_columns = {name for name, kind in zip(relation.columns, relation.types, strict=True)
                        if str(kind) == "JSON"}     # decoded by the reader: any structure
        schema = relation.limit(0).arrow().schema
        return tuple(Column(c.name, ANY) if c.name in json_columns else c
                     for c in columns_from_arrow(schema))
    finally:
        connection.close()


def _postgresql_columns(url: str, query: str, params: Mapping[str, Any] | None
                        ) -> tuple[Column, ...]:
    import psycopg
    from psycopg.postgres import types

    wrapped = f"SELECT * FROM (\n{statement_text(query)}\n) AS capi_sync_columns LIMIT 0"
    with psycopg.connect(url, application_name="capi-sync") as connection:
        with connection.cursor() as cursor:
            cursor.execute(wrapped, params)
            columns = []
            for column in cursor.description:
                info = types.get(column.type_code)
                if info is not None and info.array_oid == column.type_code:
                    columns.append(Column(column.name, LIST, (Column("X", ANY),)))
                elif info is None or info.name in _PG_JSON_TYPES:
                    columns.append(Column(column.name, ANY))
                else:
                    columns.append(Column(column.name))
            return tuple(columns)


def columns_of_bigquery(table: str | None = None, query: str | None = None,
                        project: str | None = None) -> SourceColumns:
    """The table's schema, or a dry run's result schema for a query (no bytes billed).
    Needs Google credentials; not run for real by the tests (they test columns_from_bigquery
    from schema objects)."""
    from google.cloud import bigquery

    client = bigquery.Client(project=project)
    # A deadline for the look (the client's default retries for up to 600 s, offline too).
    retry = bigquery.DEFAULT_RETRY.with_timeout(BIGQUERY_CHECK_TIMEOUT_S)
    if table is not None:
        schema = client.get_table(table.replace(":", "."), retry=retry,
                                  timeout=BIGQUERY_CHECK_TIMEOUT_S).schema
        return SourceColumns(f"bigquery:{table} (the table schema)", columns_from_bigquery(schema))
    job = client.query(query, job_config=bigquery.QueryJobConfig(dry_run=True,
                                                                 use_query_cache=False),
                       retry=retry, timeout=BIGQUERY_CHECK_TIMEOUT_S)
    return SourceColumns("bigquery query (a dry run's result schema)",
                         columns_from_bigquery(job.schema))


# --- first rows (capi-sync preview) ------------------------------------------------------------

def first_chunks_of_files(patterns: Sequence[str], file_format: str, limit: int
                          ) -> Iterator[RowChunk | Any]:
    """Up to `limit` rows from the first matched files, as the pipeline's readers give them:
    Arrow-backed chunks for Parquet, RowChunks for JSONL/CSV; an unreadable line comes as its
    DeadLetter."""
    import pyarrow.parquet as pq

    left = limit
    for path in matched_files(patterns):
        if left <= 0:
            return
        kind = _format(path, file_format)
        with files.open_file(path, kind) as handle:
            if kind == files.PARQUET:
                parquet = pq.ParquetFile(handle)
                for batch in parquet.iter_batches(batch_size=left, use_threads=False):
                    yield RowChunk.of_arrow(batch, path, 1)
                    left -= batch.num_rows
                    break
                continue
            reader = files.read_csv if kind == files.CSV else files.read_jsonl
            rows, sources = [], []
            for item in reader(handle, path):
                if left <= 0:
                    break
                left -= 1
                if isinstance(item, tuple):
                    rows.append(item[0])
                    sources.append(item[1])
                else:
                    if rows:
                        yield RowChunk(rows, sources)
                        rows, sources = [], []
                    yield item
            if rows:
                yield RowChunk(rows, sources)


def first_rows_of_sql(url: str, query: str, params: Mapping[str, Any] | None, limit: int
                      ) -> RowChunk:
    if dialect_of(url) == DUCKDB and params is not None:
        params = {name: params[name] for name in parameter_names(query)}
    return first_chunk(url, query, params, limit)


def first_rows_of_bigquery(table: str | None, query: str | None, project: str | None,
                           limit: int) -> RowChunk:
    """Not run for real by the tests (needs Google credentials)."""
    from google.cloud import bigquery

    client = bigquery.Client(project=project)
    if table is not None:
        result = client.list_rows(table.replace(":", "."), max_results=limit)
        origin = f"bigquery:{table}"
    else:
        result = client.query(query).result(max_results=limit)
        origin = "bigquery:query"
    rows = [{key: to_plain(value) for key, value in row.items()} for row in result]
    return RowChunk(rows, [origin] * len(rows))
