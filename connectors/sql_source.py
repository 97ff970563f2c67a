"""Reading a SQL query from DuckDB or PostgreSQL (and Redshift, same protocol) into RowChunks.

URLs:
- `duckdb:///relative/file.db`, `duckdb:////absolute/file.db` (SQLAlchemy's convention: the
  path is what follows the third slash); opened read-only.
- `postgresql://user@host:5432/db?sslmode=require` (also `postgres://`). Prefer PGPASSWORD or
  ~/.pgpass for the password; a password in the URL works but is redacted (`***`) everywhere
  this module writes the URL: labels, display data, logs and exceptions.

Parameters: one style for both drivers, DB-API "pyformat": `%(since)s`, with values passed as a
dict (`{"since": datetime(...)}`) and bound by the driver, never pasted into the SQL. With
parameters, a literal percent sign is written `%%` (`LIKE 'a%%'`); without parameters the query
is sent exactly as written. For DuckDB the placeholders are rewritten to its native `$since`.

The whole query runs on one worker (a database cursor cannot be split) and is read through a
server-side cursor (psycopg named cursor / DuckDB's streaming Arrow reader), `chunk_size` rows at
a time, so memory stays flat; a Reshuffle then spreads the chunks over workers for mapping.

Sources are `sql:<label>#row=<N>`, N counted from 1 in the order the query returns rows; the
label is the first table after FROM unless given (`sql:orders#row=42`). Add ORDER BY to the
query when row numbers must be reproducible.

Values: Decimal stays Decimal, timestamps stay datetimes (timestamptz aware, timestamp naive),
JSON/JSONB become dicts/lists, STRUCT/record -> dict, LIST/arrays -> list, MAP -> dict, UUID ->
str, bytes -> hex (see connectors.rows.to_plain).
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import apache_beam as beam
from apache_beam.metrics import Metrics

from connectors.rows import RowChunk, arrow_batch_to_rows, source_ref, to_plain
from transforms import metrics
from transforms.errors import CapiSyncError, ConfigError

_LOG = logging.getLogger(__name__)

DUCKDB, POSTGRESQL = "duckdb", "postgresql"
_SCHEMES = {"duckdb": DUCKDB, "postgresql": POSTGRESQL, "postgres": POSTGRESQL}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_FIRST_TABLE = re.compile(r'\bfrom\s+((?:"[^"]+"|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|[\w$]+))*)',
                          re.IGNORECASE)
_REDACTED = "***"
_CURSOR_NAME = "capi_sync_source"


class SqlSourceError(CapiSyncError):
    """The query could not be run or read; the message never contains the password."""


def redact_url(url: str) -> str:
    """The URL with its password (user-info or `password=` option) replaced by `***`.

    `postgresql://etl:hunter2@db:5432/prod` -> `postgresql://etl:***@db:5432/prod`.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.split(':', 1)[0]}://{_REDACTED}"
    netloc = parts.netloc
    if parts.password is not None:
        user_info, host = netloc.rsplit("@", 1)
        netloc = f"{user_info.split(':', 1)[0]}:{_REDACTED}@{host}"
    query = parts.query
    if query:
        options = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, _REDACTED if key.lower() == "password" else value)
                           for key, value in options], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    # Not urlunsplit: it turns duckdb:///x into duckdb:/x.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def _secrets_of(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    secrets = [url]
    if parts.password:
        secrets.append(parts.password)
    secrets += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    return [secret for secret in secrets if secret]


def scrub(text: str, url: str) -> str:
    """`text` with the URL and any password in it replaced (for exception messages)."""
    for secret in sorted(_secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, redact_url(url) if secret == url else _REDACTED)
    return text


def dialect_of(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"Unsupported SQL URL {redact_url(url)!r}: use duckdb:///path/to/file.db or "
            f"postgresql://user@host:5432/database (Redshift: its postgresql:// endpoint)."
        )
    return _SCHEMES[scheme]


def duckdb_path(url: str) -> str:
    """`duckdb:///data/x.db` -> `data/x.db`; `duckdb:////srv/x.db` -> `/srv/x.db`."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise ConfigError(f"DuckDB URL {url!r} has a host part; write duckdb:///relative.db "
                          f"or duckdb:////absolute/path.db")
    path = rest[1:].split("?", 1)[0]
    return path or ":memory:"


def parameter_names(query: str) -> list[str]:
    """The `%(name)s` placeholders of a query, in order of first use."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(query):
        if match.group(1) and match.group(1) not in names:
            names.append(match.group(1))
    return names


def to_duckdb_query(query: str) -> str:
    """`%(since)s` -> `$since` and `%%` -> `%` (DuckDB's own named-parameter syntax)."""
    return _PLACEHOLDER.sub(lambda m: f"${m.group(1)}" if m.group(1) else "%", query)


def query_label(query: str) -> str:
    """A short name for sources: the first table after FROM (`sql:orders`), else `query`."""
    match = _FIRST_TABLE.search(query)
    if not match:
        return "query"
    return re.sub(r'\s+|"', "", match.group(1))


def read_duckdb_rows(url: str, query: str, params: Mapping[str, Any] | None,
                 chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    import duckdb

    path = duckdb_path(url)
    if path != ":memory:" and not os.path.exists(path):
        raise SqlSourceError(
            f"No DuckDB file at {path!r} (from {url!r}; relative to {os.getcwd()}). "
            f"Write duckdb:///relative/path.db or duckdb:////absolute/path.db."
        )
    connection = duckdb.connect(path, read_only=path != ":memory:")
    try:
        if params is not None:      # pyformat mode: %(name)s and %% are rewritten
            relation = connection.sql(to_duckdb_query(query), params=dict(params) or None)
        else:
            relation = connection.sql(query)
        if relation is None:
            raise SqlSourceError("The SQL query returned no result set; give a SELECT.")
        json_columns = [name for name, kind in zip(relation.columns, relation.types, strict=True)
                        if str(kind) == "JSON"]
        for batch in relation.to_arrow_reader(chunk_size):
            for offset in range(0, batch.num_rows, chunk_size):
                rows = arrow_batch_to_rows(batch.slice(offset, chunk_size))
                for row in rows:
                    for name in json_columns:
                        if isinstance(row[name], str):
                            row[name] = json.loads(row[name])
                yield rows
    finally:
        connection.close()


def read_postgresql_rows(url: str, query: str, params: Mapping[str, Any] | None,
                     chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, application_name="capi-sync", row_factory=dict_row) as connection:
        # A named cursor is a server-side cursor: rows stay on the server until fetched.
        with connection.cursor(name=_CURSOR_NAME) as cursor:
            cursor.itersize = chunk_size
            cursor.execute(query, params)
            while rows := cursor.fetchmany(chunk_size):
                yield [{key: to_plain(value) for key, value in row.items()} for row in rows]


_READERS = {DUCKDB: read_duckdb_rows, POSTGRESQL: read_postgresql_rows}


class _ReadSqlFn(beam.DoFn):
    """query -> RowChunks. Runs on one worker; the connection lives only as long as the read."""

    def __init__(self, url: str, params: Mapping[str, Any] | None, chunk_size: int,
                 label: str) -> None:
        self._url = url
        self._params = None if params is None else dict(params)
        self._chunk_size = chunk_size
        self._label = label
        self._rows_read = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_ROWS_READ)

    def __repr__(self) -> str:
        return f"_ReadSqlFn({redact_url(self._url)!r}, label={self._label!r})"

    def process(self, query: str) -> Iterator[RowChunk]:
        origin = f"sql:{self._label}"
        reader = _READERS[dialect_of(self._url)]
        row_number = 1
        try:
            for rows in reader(self._url, query, self._params, self._chunk_size):
                sources = [source_ref(origin, row_number + offset) for offset in range(len(rows))]
                row_number += len(rows)
                self._rows_read.inc(len(rows))
                yield RowChunk(rows, sources)
        except SqlSourceError as error:
            raise SqlSourceError(scrub(str(error), self._url)) from None
        except Exception as error:
            # Re-raised without the cause (`from None`): a driver's own message can quote the
            # connection string, password included.
            raise SqlSourceError(
                f"Reading {origin} from {redact_url(self._url)} failed after "
                f"{row_number - 1} rows: {type(error).__name__}: {scrub(str(error), self._url)}"
            ) from None
        _LOG.info("Read %d rows from %s (%s).", row_number - 1, origin, redact_url(self._url))


class ReadSql(beam.PTransform):
    """A SQL query -> PCollection[RowChunk] (see the module docstring for URLs and params).

    Args:
      url: `duckdb:///file.db` or `postgresql://...`.
      query: the SELECT to run; placeholders `%(name)s`.
      params: values for the placeholders, e.g. `{"since": watermark}` for a pushed-down
        incremental filter (`WHERE updated_at > %(since)s`).
      chunk_size: rows fetched per round trip and per RowChunk.
      label: the name in source references (default: the first table after FROM).
    """

    def __init__(self, url: str, query: str, params: Mapping[str, Any] | None = None,
                 chunk_size: int = 5000, label: str | None = None) -> None:
        super().__init__()
        dialect = dialect_of(url)
        if dialect == DUCKDB:
            duckdb_path(url)
        if not query or not query.strip():
            raise ConfigError("The SQL query is empty.")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be at least 1, got {chunk_size}")
        params = dict(params) if params else None     # {} means no parameters, like None
        missing = [name for name in parameter_names(query) if name not in (params or {})]
        if missing:
            raise ConfigError(
                f"The SQL query uses %({missing[0]})s but no value was given for "
                f"{missing[0]!r} (params: {', '.join(sorted(params or {})) or 'none'}).")
        if params is not None and dialect == DUCKDB:
            # DuckDB refuses named values the query does not use.
            params = {name: params[name] for name in parameter_names(query)}
        self._url = url
        self._query = query
        self._params = params
        self._chunk_size = chunk_size
        self._label = label or query_label(query)

    def __repr__(self) -> str:
        return f"ReadSql({redact_url(self._url)!r}, label={self._label!r})"

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "SqlQuery" >> beam.Create([self._query])
            | "RunQuery" >> beam.ParDo(
                _ReadSqlFn(self._url, self._params, self._chunk_size, self._label))
            | "SpreadChunks" >> beam.Reshuffle()
        )

    def display_data(self) -> dict[str, Any]:
        return {"url": redact_url(self._url), "label": self._label,
                "chunk_size": self._chunk_size}
