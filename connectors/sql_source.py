"""Reading a SQL query from DuckDB, PostgreSQL (and Redshift) or Snowflake into RowChunks.

URLs:
- `duckdb:///relative/file.db`, `duckdb:////absolute/file.db` (SQLAlchemy's convention: the
  path is what follows the third slash); opened read-only.
- `postgresql://user@host:5432/db?sslmode=require` (also `postgres://`). Prefer PGPASSWORD or
  ~/.pgpass for the password; a password in the URL works but is redacted (`***`) everywhere
  this module writes the URL: labels, display data, logs and exceptions. `?reader=cursor` or
  `?reader=adbc` chooses the PostgreSQL reader (ours: not sent to the server).
- `snowflake://USER@ACCOUNT/DATABASE/SCHEMA?warehouse=WH` (connectors/snowflake_source.py).

Parameters: one style for every driver, DB-API "pyformat": `%(since)s`, with values passed as a
dict (`{"since": datetime(...)}`): bound by the driver (DuckDB, Snowflake, the cursor), or for
ADBC's COPY quoted client-side by psycopg as typed literals (`render_literals`). With
parameters, a literal percent sign is written `%%` (`LIKE 'a%%'`); without parameters the query
is sent exactly as written. For DuckDB the placeholders are rewritten to its native `$since`.

The whole query runs on one worker (a database cursor cannot be split) and is read as Arrow
record batches of `chunk_size` rows, so memory stays flat: DuckDB through its own record-batch
reader, PostgreSQL through the ADBC driver (`COPY (query) TO STDOUT (FORMAT binary)`), Snowflake
through its ADBC driver (connectors/snowflake_source.py). The batches become RowChunks the
columnar mapper reads, as Parquet's. PostgreSQL falls back to a psycopg server-side cursor (row
dicts, `FETCH FORWARD chunk_size`) with `?reader=cursor`, for a Redshift host, or when the ADBC
driver finds before the first row that the server lacks what it needs (see postgresql_reader).
A Reshuffle then spreads the chunks over workers; on a local runner they cross it as local
Arrow IPC files (SpilledChunk), since DirectRunner would hold them all in the launcher.

Before the graph runs, `result_columns` has the database plan the query without reading a row:
a wrong table or column is a ConfigError in the launcher. Given the mapping's columns, the query
then reads only the result columns the mapping reads (`projected_query`), as Parquet files are
read: a wide table costs the server, the network and the driver only what is mapped.

Sources are `sql:<label>#row=<N>`, N counted from 1 in the order the query returns rows; the
label is the first table after FROM unless given (`sql:orders#row=42`). Add ORDER BY to the
query when row numbers must be reproducible.

Values (transforms/arrow_rows.py): Decimal stays Decimal, timestamps stay datetimes
(timestamptz aware, timestamp naive), JSON/JSONB (and DuckDB JSON) become dicts/lists,
STRUCT/record -> dict, LIST/arrays -> list, MAP -> dict, UUID -> str, bytes -> hex.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from connectors.file_source import column_selector
from connectors.rows import RowChunk, rebatch, source_ref, to_plain
from transforms import metrics
from transforms.arrow_rows import json_column
from transforms.errors import CapiSyncError, ConfigError

_LOG = logging.getLogger(__name__)

DUCKDB, POSTGRESQL, SNOWFLAKE = "duckdb", "postgresql", "snowflake"
_SCHEMES = {"duckdb": DUCKDB, "postgresql": POSTGRESQL, "postgres": POSTGRESQL,
            "snowflake": SNOWFLAKE}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
# Another tool's way of naming the since parameter (not `::since`, a cast, nor a longer name).
_OTHER_SINCE_STYLE = re.compile(r"(?<![\w:@$])[:@$]since\b", re.IGNORECASE)
_FIRST_TABLE = re.compile(r'\bfrom\s+((?:"[^"]+"|[\w$]+)(?:\s*\.\s*(?:"[^"]+"|[\w$]+))*)',
                          re.IGNORECASE)
_REDACTED = "***"
_CURSOR_NAME = "capi_sync_source"


class SqlSourceError(CapiSyncError):
    """The query could not be run or read; the message never contains the password."""


class SqlReadError(SqlSourceError):
    """The query failed while its rows were being read (the server dropped the connection or
    ended the query): a failure of the run, not of its configuration, which was checked before
    any read. The command line exits with EXIT_SOURCE_FAILED (9)."""


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
    options = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() == "password" for key, _ in options):
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
            f"Unsupported SQL URL {redact_url(url)!r}: use duckdb:///path/to/file.db, "
            f"postgresql://user@host:5432/database (Redshift: its postgresql:// endpoint) or "
            f"snowflake://user@account/database/schema?warehouse=WH."
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


def open_duckdb(url: str) -> Any:
    """A read-only connection to the DuckDB file of `url`, its progress bar off.

    DuckDB draws a progress bar on stdout for queries that take a few seconds; in a pipeline
    that is noise in the job's output (and in a report piped to a file).
    """
    import duckdb

    path = duckdb_path(url)
    if path != ":memory:" and not os.path.exists(path):
        # duckdb:///srv/x.db names srv/x.db (three slashes: a relative path, as SQLAlchemy
        # reads them); the absolute file it was probably meant for is worth naming.
        meant = (f" There is a file at /{path}: for it, write duckdb:////{path} (four slashes)."
                 if not os.path.isabs(path) and os.path.isfile("/" + path) else "")
        raise SqlSourceError(
            f"No DuckDB file at {path!r} (from {url!r}; relative to {os.getcwd()}). "
            f"Write duckdb:///relative/path.db or duckdb:////absolute/path.db.{meant}"
        )
    connection = duckdb.connect(path, read_only=path != ":memory:")
    connection.execute("SET enable_progress_bar = false")   # a session setting, not a global
    return connection


def _duckdb_relation(connection: Any, query: str, params: Mapping[str, Any] | None) -> Any:
    if params is not None:      # pyformat mode: %(name)s and %% are rewritten
        relation = connection.sql(to_duckdb_query(query), params=dict(params) or None)
    else:
        relation = connection.sql(query)
    if relation is None:
        raise ConfigError("The SQL query returned no result set; give a SELECT.")
    return relation


def read_duckdb_batches(url: str, query: str, params: Mapping[str, Any] | None,
                        chunk_size: int) -> Iterator[pa.RecordBatch]:
    """DuckDB's own Arrow record-batch reader, `chunk_size` rows a batch; JSON columns marked
    as JSON (DuckDB hands them over as plain text) so they arrive parsed."""
    connection = open_duckdb(url)
    try:
        relation = _duckdb_relation(connection, query, params)
        json_columns = {index for index, kind in enumerate(relation.types) if str(kind) == "JSON"}
        for batch in rebatch(relation.to_arrow_reader(chunk_size), chunk_size):
            if json_columns:
                batch = pa.RecordBatch.from_arrays(
                    [json_column(column) if index in json_columns else column
                     for index, column in enumerate(batch.columns)],
                    names=batch.schema.names)
            yield batch
    finally:
        connection.close()


ADBC, CURSOR = "adbc", "cursor"
_READER_OPTION = "reader"               # postgresql://...?reader=cursor (ours; not sent to libpq)
CONNECT_TIMEOUT_S = 30                  # libpq's connect_timeout, when the URL sets none
# Besides connect_timeout, unless the URL sets them: TCP keepalives that find a vanished server
# (a dropped NAT entry, a failed-over host) within about a minute of silence, where the
# kernel's default waits two hours before its first probe. A server busy on a long query still
# answers the probes.
_KEEPALIVES = (("keepalives_idle", 30), ("keepalives_interval", 10), ("keepalives_count", 3))
_REDSHIFT_HOSTS = (".redshift.amazonaws.com", ".redshift-serverless.amazonaws.com")
_BATCH_HINT_BYTES = str(8 << 20)        # ADBC sizes its batches in bytes; rebatch() counts rows
# What the ADBC driver says when the server speaks the protocol but lacks what it needs (no
# COPY (query) TO STDOUT in binary, or an old pg_type catalog: Redshift and other forks).
_ADBC_UNSUPPORTED = ("could not begin COPY", "Failed to build type mapping table",
                     "FROM pg_catalog.pg_type", "binary format")


def postgresql_reader(url: str) -> tuple[str, str]:
    """(reader, the URL for the driver): `?reader=adbc|cursor` chooses, else ADBC except for a
    Redshift host (its COPY has no binary format and no query form). The driver's URL has a
    `connect_timeout` (CONNECT_TIMEOUT_S unless the URL sets one: without it libpq waits for
    ever on a server that takes the connection and never answers) and TCP keepalives
    (_KEEPALIVES)."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    chosen = [value.lower() for key, value in options if key == _READER_OPTION]
    if chosen and chosen[-1] not in (ADBC, CURSOR):
        raise ConfigError(f"{redact_url(url)}: reader={chosen[-1]!r} is not a reader; use "
                          f"reader=adbc (Arrow, COPY) or reader=cursor (server-side cursor)")
    rest = [(key, value) for key, value in options if key != _READER_OPTION]
    driver_url = url if not chosen else (
        f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{urlencode(rest)}" if rest else ""))
    given = {key for key, _ in rest}
    added = [f"{key}={value}" for key, value in (("connect_timeout", CONNECT_TIMEOUT_S),
                                                  *_KEEPALIVES) if key not in given]
    if added:
        driver_url += ("&" if rest else "?") + "&".join(added)
    if chosen:
        return chosen[-1], driver_url
    return (CURSOR if is_redshift(url) else ADBC), driver_url


def is_redshift(url: str) -> bool:
    """Whether the URL's host is an Amazon Redshift endpoint (cluster or serverless)."""
    return (urlsplit(url).hostname or "").lower().endswith(_REDSHIFT_HOSTS)


def render_literals(query: str, params: Mapping[str, Any] | None) -> str:
    """`%(since)s` -> a typed SQL literal quoted by psycopg (`'2026-03-01 00:00:00+00:00'::
    timestamptz`), `%%` -> `%`. COPY takes no bound parameters, and a query with bound
    parameters is fetched whole by the ADBC driver, so the values are quoted client-side, the
    way psycopg's ClientCursor binds them; without params the query is sent as written."""
    if params is None:
        return query
    from psycopg import sql

    def literal(match: re.Match) -> str:
        name = match.group(1)
        return sql.Literal(params[name]).as_string(None) if name else "%"

    return _PLACEHOLDER.sub(literal, query)


def _with_application_name(url: str) -> str:
    if "application_name=" in url:
        return url
    return url + ("&" if urlsplit(url).query else "?") + "application_name=capi-sync"


def read_postgresql_batches(url: str, query: str, params: Mapping[str, Any] | None,
                            chunk_size: int) -> Iterator[pa.RecordBatch | list[dict[str, Any]]]:
    """PostgreSQL through the ADBC driver (COPY ... TO STDOUT in binary, streamed as Arrow), or
    the server-side cursor when `reader=cursor`, for a Redshift host, or when the ADBC driver
    finds the server lacks what it needs before the first row (logged as a warning)."""
    reader, driver_url = postgresql_reader(url)
    if reader == CURSOR:
        yield from read_postgresql_rows(driver_url, query, params, chunk_size)
        return
    import adbc_driver_postgresql.dbapi as adbc_postgresql

    try:
        connection = adbc_postgresql.connect(_with_application_name(driver_url))
    except Exception as error:
        if not _adbc_unsupported(error):
            raise
        yield from _fall_back(driver_url, query, params, chunk_size, error)
        return
    try:
        cursor = connection.cursor()
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": _BATCH_HINT_BYTES})
        try:
            cursor.execute(render_literals(statement_text(query), params))
            batches = cursor.fetch_record_batch()
        except Exception as error:
            if not _adbc_unsupported(error):
                raise
            yield from _fall_back(driver_url, query, params, chunk_size, error)
            return
        yield from rebatch(batches, chunk_size)
    finally:
        connection.close()


def statement_text(query: str) -> str:
    """The query without what may follow its statement: whitespace, comments and semicolons
    (`SELECT ... ; -- all` -> `SELECT ...`), so that it can be wrapped: in COPY (...) TO STDOUT
    by the PostgreSQL driver, in the column projection and in the launcher's LIMIT 0 check.
    sqlparse's tokenizer finds them, so a `--` or `;` inside a string literal, a dollar-quoted
    string or a quoted name is kept; its tokens are the query's exact text. (Imported here:
    only the launcher and the PostgreSQL reader wrap a query, not every worker's start-up.)"""
    from sqlparse import lexer
    from sqlparse import tokens as kinds

    after_the_statement = (kinds.Whitespace, kinds.Newline, kinds.Comment)
    tokens = list(lexer.tokenize(query))
    end = len(tokens)
    while end and (tokens[end - 1][1] == ";" or
                   any(tokens[end - 1][0] in kind for kind in after_the_statement)):
        end -= 1
    return "".join(value for _, value in tokens[:end])


def _adbc_unsupported(error: Exception) -> bool:
    return any(marker in str(error) for marker in _ADBC_UNSUPPORTED)


def _fall_back(url: str, query: str, params: Mapping[str, Any] | None, chunk_size: int,
               error: Exception) -> Iterator[list[dict[str, Any]]]:
    _LOG.warning("The ADBC PostgreSQL driver cannot read from %s (%s); reading through a "
                 "server-side cursor instead (add ?reader=cursor to the URL to skip the try).",
                 redact_url(url), scrub(str(error).splitlines()[0], url))
    yield from read_postgresql_rows(url, query, params, chunk_size)


def read_postgresql_rows(url: str, query: str, params: Mapping[str, Any] | None,
                         chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    """The fallback reader: psycopg's server-side (named) cursor, `chunk_size` rows a FETCH."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, application_name="capi-sync", row_factory=dict_row) as connection:
        # A named cursor is a server-side cursor: rows stay on the server until fetched.
        with connection.cursor(name=_CURSOR_NAME) as cursor:
            cursor.itersize = chunk_size
            cursor.execute(query, params)
            while rows := cursor.fetchmany(chunk_size):
                yield [{key: to_plain(value) for key, value in row.items()} for row in rows]


def _snowflake_batches(url: str, query: str, params: Mapping[str, Any] | None,
                       chunk_size: int) -> Iterator[pa.RecordBatch]:
    from connectors.snowflake_source import read_snowflake_batches
    return read_snowflake_batches(url, query, params, chunk_size)


_READERS = {DUCKDB: read_duckdb_batches, POSTGRESQL: read_postgresql_batches,
            SNOWFLAKE: _snowflake_batches}


def first_chunk(url: str, query: str, params: Mapping[str, Any] | None, limit: int
                ) -> RowChunk:
    """The query's first `limit` rows as the pipeline's reader gives them (for a preview); the
    rest is not read."""
    origin = f"sql:{query_label(query)}"
    reads = _READERS[dialect_of(url)](url, query, params, limit)
    try:
        read = next(iter(reads), None)
    finally:
        reads.close()
    if read is None:
        return RowChunk([], [])
    if isinstance(read, pa.RecordBatch):
        return RowChunk.of_arrow(read, origin, 1)
    return RowChunk(read, [source_ref(origin, n) for n in range(1, len(read) + 1)])


def result_columns(url: str, query: str, params: Mapping[str, Any] | None = None) -> list[str]:
    """The names of the columns `query` returns, in order, without reading a row.

    The database plans the query (DuckDB binds it, PostgreSQL and Snowflake describe it), so a
    wrong table or column name is a ConfigError here, before the pipeline starts; an
    unreachable server or refused login is a SqlSourceError. Neither message holds a password.
    """
    dialect = dialect_of(url)
    try:
        if dialect == DUCKDB:
            connection = open_duckdb(url)
            try:
                return list(_duckdb_relation(connection, query, params).columns)
            finally:
                connection.close()
        if dialect == SNOWFLAKE:
            from connectors.snowflake_source import snowflake_result_columns
            return snowflake_result_columns(url, query, params)
        return _postgresql_result_columns(url, query, params)
    except CapiSyncError as error:
        raise type(error)(scrub(str(error), url)) from None
    except Exception as error:
        raise query_check_failure(url, error, query) from None


def query_check_failure(url: str, error: Exception, query: str = "") -> CapiSyncError:
    """What a failed check of the query (before any read) says: a ConfigError when the query
    itself is wrong (an unknown table or column, a syntax error), else a SqlSourceError (the
    server cannot be reached, the login is refused). No password in either."""
    message = scrub(str(error).strip(), url)
    if _is_query_error(error):
        other = _OTHER_SINCE_STYLE.search(query)
        if other:     # `:since` (SQLAlchemy, Snowflake), `@since` (BigQuery), `$since` (DuckDB)
            return ConfigError(
                f"The SQL query cannot run on {redact_url(url)}: {message} (the query writes "
                f"{other.group(0)}; in --sql-query the --since value is written %(since)s, "
                f"for every database)")
        return ConfigError(f"The SQL query cannot run on {redact_url(url)}: {message} "
                           f"(check the table and column names in --sql-query)")
    return SqlSourceError(f"Cannot reach {redact_url(url)} to check the query: "
                          f"{type(error).__name__}: {message}")


_PROJECTED_ALIAS = "capi_sync_columns"


def projected_query(url: str, query: str, params: Mapping[str, Any] | None,
                    names: list[str], columns: list[str] | None) -> str:
    """`query` reading only the result columns the mapping reads (`columns`, kept as
    file_source.column_selector keeps a Parquet file's), as Parquet files are read:
    `SELECT "a", "b" FROM (<query>) AS capi_sync_columns`, so the server produces, and the
    driver decodes, no column the mapping leaves unread. PostgreSQL and DuckDB keep the
    query's ORDER BY through that projection (row numbers are unchanged); Snowflake and
    Redshift do not promise to, so their queries run as written. The query itself when every
    column is read,
    when a name repeats (case-blind: DuckDB's names are), or when the projected query does not
    plan to exactly the kept columns (a statement that cannot be a subquery)."""
    if not columns or dialect_of(url) == SNOWFLAKE or is_redshift(url):
        return query
    keep = column_selector(columns)
    kept = [name for name in names if keep(name)]
    if not kept or len(kept) == len(names) or len({name.lower() for name in names}) < len(names):
        return query
    quoted = ['"' + name.replace('"', '""') + '"' for name in kept]
    if params is not None:       # pyformat: a literal percent sign is written %%
        quoted = [name.replace("%", "%%") for name in quoted]
    # The closing parenthesis on a line of its own: the query may end in a -- comment.
    projected = (f"SELECT {', '.join(quoted)} FROM (\n{statement_text(query)}\n) "
                 f"AS {_PROJECTED_ALIAS}")
    try:
        if result_columns(url, projected, params) == kept:
            return projected
    except CapiSyncError:
        pass
    return query


def _postgresql_result_columns(url: str, query: str, params: Mapping[str, Any] | None
                               ) -> list[str]:
    import psycopg

    _, driver_url = postgresql_reader(url)
    with psycopg.connect(driver_url, application_name="capi-sync") as connection:
        # libpq's describe: the server parses and plans the statement, and runs nothing.
        pgconn = connection.pgconn
        for result in (pgconn.prepare(b"", render_literals(query, params).encode()),
                       pgconn.describe_prepared(b"")):
            if result.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise _DescribeError(result.error_message.decode(errors="replace"),
                                     result.error_field(psycopg.pq.DiagnosticField.SQLSTATE))
        return [result.fname(index).decode() for index in range(result.nfields)]


class _DescribeError(Exception):
    def __init__(self, message: str, sqlstate: bytes | None) -> None:
        super().__init__(message)
        self.sqlstate = (sqlstate or b"").decode()


def _is_query_error(error: Exception) -> bool:
    """A mistake in the query itself (SQLSTATE class 42, DuckDB's binder/catalog/parser, and
    its invalid input: a statement the read-only file cannot run, a parameter not given)."""
    sqlstate = getattr(error, "sqlstate", None) or ""
    if sqlstate.startswith(("42", "0A")):
        return True
    return type(error).__name__ in ("CatalogException", "BinderException", "ParserException",
                                    "InvalidInputException")


@dataclasses.dataclass(frozen=True)
class SpilledChunk:
    """A chunk the reader wrote to a local Arrow IPC file: what crosses the Reshuffle when the
    workers share the reader's disk (DirectRunner), instead of the rows themselves."""

    path: str
    origin: str
    first_row: int


def spill(batch: pa.RecordBatch, directory: str, index: int, origin: str, first_row: int
          ) -> SpilledChunk:
    path = os.path.join(directory, f"chunk-{index:08d}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return SpilledChunk(path, origin, first_row)


def load_spilled(spilled: SpilledChunk) -> RowChunk:
    """The chunk back from its file, which is then removed (and its directory with the last)."""
    with pa.OSFile(spilled.path, "rb") as source:
        batch = pa.ipc.open_file(source).get_batch(0)
    os.remove(spilled.path)
    try:
        os.rmdir(os.path.dirname(spilled.path))
    except OSError:      # other chunks are still there
        pass
    return RowChunk.of_arrow(batch, spilled.origin, spilled.first_row)


class _LoadSpilledFn(beam.DoFn):
    def process(self, element: RowChunk | SpilledChunk) -> Iterator[RowChunk]:
        yield load_spilled(element) if isinstance(element, SpilledChunk) else element


class _ReadSqlFn(beam.DoFn):
    """query -> RowChunks. Runs on one worker; the connection lives only as long as the read."""

    def __init__(self, url: str, params: Mapping[str, Any] | None, chunk_size: int,
                 label: str, spill: bool = False) -> None:
        self._spill = spill
        self._url = url
        self._params = None if params is None else dict(params)
        self._chunk_size = chunk_size
        self._label = label
        self._rows_read = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_ROWS_READ)

    def __repr__(self) -> str:
        return f"_ReadSqlFn({redact_url(self._url)!r}, label={self._label!r})"

    def process(self, query: str) -> Iterator[RowChunk | SpilledChunk]:
        if not self._spill:
            yield from self._chunks(query, None)
            return
        directory = tempfile.mkdtemp(prefix="capi-sync-sql-")
        try:
            yield from self._chunks(query, directory)
        except BaseException:
            # The read step failed: no later step has read a chunk; take them all away.
            shutil.rmtree(directory, ignore_errors=True)
            raise
        try:
            os.rmdir(directory)          # nothing was spilled (an empty result, or row dicts)
        except OSError:
            pass

    def _chunks(self, query: str, directory: str | None) -> Iterator[RowChunk | SpilledChunk]:
        origin = f"sql:{self._label}"
        reader = _READERS[dialect_of(self._url)]
        row_number = 1
        try:
            for index, read in enumerate(reader(self._url, query, self._params,
                                                self._chunk_size)):
                if isinstance(read, pa.RecordBatch):     # the columnar path, as Parquet's
                    count = read.num_rows
                    chunk = (spill(read, directory, index, origin, row_number) if directory
                             else RowChunk.of_arrow(read, origin, row_number))
                else:                                    # the server-side cursor's row dicts
                    count = len(read)
                    chunk = RowChunk(read, [source_ref(origin, row_number + offset)
                                            for offset in range(count)])
                row_number += count
                self._rows_read.inc(count)
                yield chunk
        except SqlSourceError as error:
            raise SqlSourceError(scrub(str(error), self._url)) from None
        except Exception as error:
            # Re-raised without the cause (`from None`): a driver's own message can quote the
            # connection string, password included.
            raise SqlReadError(
                f"Reading {origin} from {redact_url(self._url)} failed after "
                f"{row_number - 1} rows: {type(error).__name__}: {scrub(str(error), self._url)}"
            ) from None
        _LOG.info("Read %d rows from %s (%s).", row_number - 1, origin, redact_url(self._url))


_LOCAL_RUNNERS = (None, "DirectRunner", "direct", "SwitchingDirectRunner",
                  "BundleBasedDirectRunner", "FnApiRunner", "PrismRunner", "prism")


def _runs_locally(pipeline: beam.Pipeline) -> bool:
    """Whether every worker runs on this machine (DirectRunner and its relatives)."""
    from apache_beam.options.pipeline_options import StandardOptions
    runner = pipeline.options.view_as(StandardOptions).runner
    return runner in _LOCAL_RUNNERS or type(pipeline.runner).__name__ in _LOCAL_RUNNERS[2:]


class ReadSql(beam.PTransform):
    """A SQL query -> PCollection[RowChunk] (see the module docstring for URLs and params).

    Args:
      url: `duckdb:///file.db` or `postgresql://...`.
      query: the SELECT to run; placeholders `%(name)s`.
      params: values for the placeholders, e.g. `{"since": watermark}` for a pushed-down
        incremental filter (`WHERE updated_at > %(since)s`).
      chunk_size: rows fetched per round trip and per RowChunk.
      label: the name in source references (default: the first table after FROM).
      check_query: plan the query when the graph is built (`result_columns`), so a wrong table
        or column is a ConfigError in the launcher rather than a failed worker.
      columns: the columns the mapping reads (`MappingPlan.required_columns`); with
        check_query, the query reads only those of its result columns (`projected_query`).
        None reads every column.
    """

    def __init__(self, url: str, query: str, params: Mapping[str, Any] | None = None,
                 chunk_size: int = 5000, label: str | None = None,
                 check_query: bool = True, columns: list[str] | None = None) -> None:
        super().__init__()
        dialect = dialect_of(url)
        if dialect == DUCKDB:
            duckdb_path(url)
        elif dialect == POSTGRESQL:
            postgresql_reader(url)
        elif dialect == SNOWFLAKE:
            from connectors.snowflake_source import snowflake_options
            snowflake_options(url)
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
        self._check_query = check_query
        self._columns = list(columns) if columns else None

    def __repr__(self) -> str:
        return f"ReadSql({redact_url(self._url)!r}, label={self._label!r})"

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        query = self._query
        if self._check_query:   # a wrong table fails here, in the launcher, before any read
            names = result_columns(self._url, self._query, self._params)
            query = projected_query(self._url, self._query, self._params, names, self._columns)
        # A local runner holds what crosses a Reshuffle in the launcher's memory (the whole
        # table); its workers share one disk, so the chunks go there and only their file
        # names are shuffled. Dataflow's shuffle service spills by itself.
        spill_locally = _runs_locally(pbegin.pipeline)
        chunks = (
            pbegin
            | "SqlQuery" >> beam.Create([query])
            | "RunQuery" >> beam.ParDo(_ReadSqlFn(self._url, self._params, self._chunk_size,
                                                  self._label, spill=spill_locally))
            | "SpreadChunks" >> beam.Reshuffle()
        )
        if spill_locally:
            chunks = chunks | "LoadChunks" >> beam.ParDo(_LoadSpilledFn())
        return chunks

    def display_data(self) -> dict[str, Any]:
        return {"url": redact_url(self._url), "label": self._label,
                "chunk_size": self._chunk_size}
