"""ReadSql against a real DuckDB file and a real PostgreSQL server, through Beam pipelines."""
from __future__ import annotations

import datetime
import hashlib
import traceback
import uuid
from decimal import Decimal
from pathlib import Path

import apache_beam as beam
import duckdb
import psycopg
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from connectors.sources import ReadSql, RowChunk
from connectors.sql_source import (
    dialect_of,
    duckdb_path,
    parameter_names,
    projected_query,
    query_label,
    read_postgresql_rows,
    redact_url,
    result_columns,
    scrub,
    statement_text,
    to_duckdb_query,
)
from tests.connectors.postgres import DB_PASSWORD
from transforms.errors import ConfigError

UTC = datetime.timezone.utc


def chunk(label: str, numbered_rows: list[tuple[int, dict]]) -> RowChunk:
    return RowChunk([row for _, row in numbered_rows],
                    [f"sql:{label}#row={number}" for number, _ in numbered_rows])


# ---------------------------------------------------------------- DuckDB

def duckdb_order(n: int) -> dict:
    """Row n of the DuckDB `orders` table, as ReadSql yields it."""
    return {
        "id": n,
        "event_id": f"o-{n}",
        "context": {"event_id": f"o-{n}", "page": {"url": f"https://shop.example/p/{n}"}},
        "tags": ["web", f"campaign-{n}"],
        "items": [{"id": f"sku-{n}", "price": Decimal("19.99")}],
        "value": Decimal(f"{n}.99"),
        "event_time": datetime.datetime(2026, 3, n, 12, 0),
        "created_at": datetime.datetime(2026, 3, n, 12, 0, tzinfo=UTC),
        "extra": {"coupon": f"C{n}", "codes": [n, n + 1]},
        "email_sha256": f"{n:02x}ab",
        "attrs": {"channel": "email"},
    }


@pytest.fixture(scope="module")
def duckdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("duckdb") / "warehouse.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("""
            CREATE TABLE orders (
                id INTEGER, event_id VARCHAR,
                context STRUCT(event_id VARCHAR, page STRUCT(url VARCHAR)),
                tags VARCHAR[], items STRUCT(id VARCHAR, price DECIMAL(9, 2))[],
                value DECIMAL(12, 2), event_time TIMESTAMP, created_at TIMESTAMPTZ,
                extra JSON, email_sha256 BLOB, attrs MAP(VARCHAR, VARCHAR))
        """)
        connection.execute("""
            INSERT INTO orders
            SELECT n, 'o-' || n,
                   {'event_id': 'o-' || n, 'page': {'url': 'https://shop.example/p/' || n}},
                   ['web', 'campaign-' || n], [{'id': 'sku-' || n, 'price': 19.99}],
                   n + 0.99, TIMESTAMP '2026-03-01 12:00:00' + (n - 1) * INTERVAL 1 DAY,
                   TIMESTAMPTZ '2026-03-01 12:00:00+00' + (n - 1) * INTERVAL 1 DAY,
                   json_object('coupon', 'C' || n, 'codes', [n, n + 1]),
                   unhex(printf('%02x', n) || 'ab'), MAP {'channel': 'email'}
            FROM range(1, 8) AS t(n)
        """)
    return f"duckdb:///{path}"      # an absolute path: duckdb:////tmp/...


def test_duckdb_query_with_watermark_param_in_chunks(duckdb_url: str) -> None:
    query = ("SELECT * FROM orders WHERE event_time >= %(since)s AND event_id LIKE 'o-%%' "
             "ORDER BY id")
    since = datetime.datetime(2026, 3, 2)
    rows = [duckdb_order(n) for n in range(2, 8)]

    with BeamTestPipeline() as pipeline:
        chunks = pipeline | ReadSql(duckdb_url, query, {"since": since, "unused": 1},
                                    chunk_size=4)
        assert_that(chunks, equal_to([
            chunk("orders", [(1, rows[0]), (2, rows[1]), (3, rows[2]), (4, rows[3])]),
            chunk("orders", [(5, rows[4]), (6, rows[5])]),
        ]))


def test_duckdb_query_without_params_is_sent_as_written(duckdb_url: str) -> None:
    query = "SELECT id, value FROM main.orders WHERE event_id LIKE '%-7'"

    with BeamTestPipeline() as pipeline:
        chunks = pipeline | ReadSql(duckdb_url, query, label="last_order")
        assert_that(chunks, equal_to([
            chunk("last_order", [(1, {"id": 7, "value": Decimal("7.99")})])]))


def test_duckdb_missing_file_fails_with_the_path(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/absent.duckdb"
    with pytest.raises(Exception, match="No DuckDB file at .*absent.duckdb"):
        with BeamTestPipeline() as pipeline:
            _ = pipeline | ReadSql(url, "SELECT 1 FROM t")


# ---------------------------------------------------------------- PostgreSQL

def pg_event(n: int) -> dict:
    """Row n of the PostgreSQL `events` table, as ReadSql yields it."""
    return {
        "id": n,
        "payload": {"context": {"event_id": f"pg-{n}"}, "items": [{"id": "a", "quantity": n}]},
        "value": Decimal(f"{n}.50"),
        "event_time": datetime.datetime(2026, 3, n, 8, 0, tzinfo=UTC),
        "tags": ["crm", f"t{n}"],
        "email_sha256": f"{n:02x}ff",
        "uid": str(uuid.UUID(int=n)),
    }


@pytest.fixture(scope="module")
def pg_events_url(postgres_url: str) -> str:
    with psycopg.connect(postgres_url) as connection:
        connection.execute("DROP TABLE IF EXISTS events")
        connection.execute("""
            CREATE TABLE events (id integer, payload jsonb, value numeric(12, 2),
                                 event_time timestamptz, tags text[], email_sha256 bytea,
                                 uid uuid)
        """)
        for n in range(1, 6):
            row = pg_event(n)
            connection.execute(
                "INSERT INTO events VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s)",
                (n, psycopg.types.json.Jsonb(row["payload"]), row["value"], row["event_time"],
                 row["tags"], bytes.fromhex(row["email_sha256"]), uuid.UUID(row["uid"])))
    return postgres_url


def test_postgresql_server_side_cursor_in_chunks(pg_events_url: str) -> None:
    query = "SELECT * FROM events WHERE event_time >= %(since)s ORDER BY id"
    since = datetime.datetime(2026, 3, 2, tzinfo=UTC)
    rows = [pg_event(n) for n in range(2, 6)]
    expected_sources = [f"sql:events#row={n}" for n in range(1, 5)]

    def sources_without_password(sources: list[str]) -> None:
        assert sorted(sources) == expected_sources
        assert not any(DB_PASSWORD in source for source in sources)

    with BeamTestPipeline() as pipeline:
        chunks = pipeline | ReadSql(pg_events_url, query, {"since": since}, chunk_size=3)
        assert_that(chunks, equal_to([
            chunk("events", [(1, rows[0]), (2, rows[1]), (3, rows[2])]),
            chunk("events", [(4, rows[3])]),
        ]), label="CheckChunks")
        sources = chunks | beam.FlatMap(lambda chunk: chunk.sources)
        assert_that(sources, sources_without_password, label="CheckSources")


def test_postgresql_reads_through_a_server_side_cursor(pg_events_url: str) -> None:
    rows = read_postgresql_rows(pg_events_url, "SELECT id FROM events ORDER BY id", None, 2)
    first = next(rows)
    with psycopg.connect(pg_events_url) as connection:
        (last_query,) = connection.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'capi-sync'"
        ).fetchone()
    remaining = list(rows)

    # The rows stay on the server and arrive FETCH by FETCH, chunk_size at a time.
    assert last_query == 'FETCH FORWARD 2 FROM "capi_sync_source"'
    assert [first, *remaining] == [[{"id": 1}, {"id": 2}], [{"id": 3}, {"id": 4}], [{"id": 5}]]


def test_postgresql_errors_never_show_the_password(postgres_url: str) -> None:
    wrong = "Wr0ng-Secret-77"
    url = postgres_url.replace(DB_PASSWORD, wrong)
    read = ReadSql(url, "SELECT * FROM events")

    with pytest.raises(Exception, match="password authentication failed") as failure:
        with BeamTestPipeline() as pipeline:
            _ = pipeline | read
    everything = "".join(traceback.format_exception(failure.value))
    assert wrong not in everything
    assert "capi:***@127.0.0.1" in everything
    assert wrong not in repr(read) and wrong not in str(read.display_data())


# ---------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("url, redacted", [
    ("postgresql://etl:hunter2@db:5432/prod", "postgresql://etl:***@db:5432/prod"),
    ("postgresql://etl@db/prod?sslmode=require", "postgresql://etl@db/prod?sslmode=require"),
    ("postgresql://db/prod?user=etl&password=hunter2",
     "postgresql://db/prod?user=etl&password=***"),
    ("postgresql://etl:p%40ss@db/prod", "postgresql://etl:***@db/prod"),
    ("duckdb:///data/w.duckdb", "duckdb:///data/w.duckdb"),
])
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_scrub_removes_url_and_password() -> None:
    url = "postgresql://etl:hunter2@db/prod"
    message = f'invalid dsn: "{url}" (password hunter2)'
    assert scrub(message, url) == 'invalid dsn: "postgresql://etl:***@db/prod" (password ***)'


@pytest.mark.parametrize("query, names, duckdb_query", [
    ("SELECT * FROM t WHERE ts > %(since)s AND ts <= %(until)s OR ts > %(since)s",
     ["since", "until"], "SELECT * FROM t WHERE ts > $since AND ts <= $until OR ts > $since"),
    ("SELECT * FROM t WHERE name LIKE 'a%%' AND x = %(x)s", ["x"],
     "SELECT * FROM t WHERE name LIKE 'a%' AND x = $x"),
    ("SELECT 1", [], "SELECT 1"),
])
def test_parameter_style(query: str, names: list[str], duckdb_query: str) -> None:
    assert parameter_names(query) == names
    assert to_duckdb_query(query) == duckdb_query


@pytest.mark.parametrize("query, label", [
    ("SELECT * FROM orders", "orders"),
    ("select a from analytics.public.events e join users u on true", "analytics.public.events"),
    ('SELECT * FROM "Sales"."Orders 2026"', "Sales.Orders2026"),
    ("SELECT 1", "query"),
])
def test_query_label(query: str, label: str) -> None:
    assert query_label(query) == label


@pytest.mark.parametrize("url, path", [
    ("duckdb:///warehouse.duckdb", "warehouse.duckdb"),
    ("duckdb:////srv/data/warehouse.duckdb", "/srv/data/warehouse.duckdb"),
    ("duckdb:///", ":memory:"),
])
def test_duckdb_path(url: str, path: str) -> None:
    assert dialect_of(url) == "duckdb"
    assert duckdb_path(url) == path


@pytest.mark.parametrize("url, query, params, message", [
    ("mysql://u:hunter2@db/x", "SELECT 1", None, r"Unsupported SQL URL 'mysql://u:\*\*\*@db/x'"),
    ("duckdb://host/x.db", "SELECT 1", None, "has a host part"),
    ("duckdb:///x.db", "  ", None, "empty"),
    ("duckdb:///x.db", "SELECT * FROM t WHERE ts > %(since)s", None, "no value was given"),
    ("postgresql://db/x", "SELECT %(a)s, %(b)s", {"a": 1}, "%\\(b\\)s"),
])
def test_read_sql_rejects_bad_configuration(url: str, query: str, params: dict | None,
                                            message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReadSql(url, query, params)


# ---------------------------------------------------------------- the Arrow path

def read_chunks(url: str, query: str, params: dict | None = None, chunk_size: int = 3
                ) -> list[RowChunk]:
    """What ReadSql's reading step yields, in order (no shuffle), through the DoFn itself."""
    from connectors.sql_source import _ReadSqlFn
    fn = _ReadSqlFn(url, params, chunk_size, query_label(query))
    return list(fn.process(query))


def test_duckdb_and_postgresql_chunks_are_arrow_batches(duckdb_url: str,
                                                        pg_events_url: str) -> None:
    for url, table in ((duckdb_url, "orders"), (pg_events_url, "events")):
        chunks = read_chunks(url, f"SELECT * FROM {table} ORDER BY id", chunk_size=2)
        assert [chunk.batch is not None for chunk in chunks] == [True, True, True] + (
            [True] if table == "orders" else [])
        assert [len(chunk) for chunk in chunks] == ([2, 2, 2, 1] if table == "orders"
                                                    else [2, 2, 1])


def test_postgresql_adbc_rows_equal_the_cursor_rows(pg_events_url: str) -> None:
    query = "SELECT * FROM events WHERE event_time >= %(since)s ORDER BY id"
    params = {"since": datetime.datetime(2026, 3, 2, tzinfo=UTC)}
    arrow_rows = [row for chunk in read_chunks(pg_events_url, query, params) for row in chunk.rows]
    cursor_url = pg_events_url + "?reader=cursor"
    cursor_chunks = read_chunks(cursor_url, query, params)
    assert [chunk.batch for chunk in cursor_chunks] == [None, None]
    assert arrow_rows == [row for chunk in cursor_chunks for row in chunk.rows]
    assert arrow_rows == [pg_event(n) for n in range(2, 6)]


MAPPED_TABLE_ROWS = 9


@pytest.fixture(scope="module")
def mapped_tables(tmp_path_factory: pytest.TempPathFactory, postgres_url: str):
    """The same conversions in DuckDB (structs, lists, JSON) and PostgreSQL (jsonb and flat
    columns): good rows, NULLs and rows that are dead letters."""
    path = tmp_path_factory.mktemp("duckdb") / "conversions.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("""
            CREATE TABLE conversions AS
            SELECT n,
                   CASE WHEN n = 3 THEN NULL ELSE 'order_' || n END AS order_id,
                   CASE WHEN n % 4 = 0 THEN 'page_view' ELSE 'purchase' END AS event_name,
                   CASE WHEN n = 5 THEN 'US$' WHEN n = 6 THEN NULL ELSE 'USD' END AS currency,
                   (n * 10 + 0.99)::DECIMAL(12, 2) AS value,
                   TIMESTAMPTZ '2026-11-30 12:00:00+00' + n * INTERVAL 1 MINUTE AS created_at,
                   {'email': CASE WHEN n = 2 THEN NULL ELSE 'u' || n || '@Example.com' END,
                    'phone': '+1 415 555 01' || lpad(n::VARCHAR, 2, '0')} AS "user",
                   CASE WHEN n = 7 THEN NULL
                        ELSE json_object('coupon', 'C' || n, 'tags', ['a', 'b']) END AS extra,
                   CASE WHEN n % 3 = 0 THEN NULL
                        ELSE [{'id': 'sku_' || n, 'quantity': n}] END AS items
            FROM range(1, 10) AS t(n)
        """)
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS conversions")
        connection.execute("""
            CREATE TABLE conversions AS
            SELECT n,
                   CASE WHEN n = 3 THEN NULL ELSE 'order_' || n END AS order_id,
                   CASE WHEN n % 4 = 0 THEN 'page_view' ELSE 'purchase' END AS event_name,
                   CASE WHEN n = 5 THEN 'US$' WHEN n = 6 THEN NULL ELSE 'USD' END AS currency,
                   (n * 10 + 0.99)::numeric(12, 2) AS value,
                   TIMESTAMPTZ '2026-11-30 12:00:00+00' + n * INTERVAL '1 minute' AS created_at,
                   CASE WHEN n = 2 THEN NULL ELSE 'u' || n || '@Example.com' END
                        AS "user.email",
                   '+1 415 555 01' || lpad(n::text, 2, '0') AS "user.phone",
                   CASE WHEN n = 7 THEN NULL ELSE jsonb_build_object(
                        'coupon', 'C' || n, 'tags', jsonb_build_array('a', 'b')) END AS extra,
                   CASE WHEN n % 3 = 0 THEN NULL
                        ELSE jsonb_build_array(jsonb_build_object('id', 'sku_' || n,
                                                                  'quantity', n)) END AS items
            FROM generate_series(1, 9) AS n
        """)
    return f"duckdb:///{path}", postgres_url


COMPARED_MAPPING = """\
version: 1
event:
  id: order_id
  type: event_name
  timestamp_ms: {path: created_at, unit: ms}
  action_source: {constant: web}
  source_url: {constant: "https://shop.example/done"}
  oppref: extra.coupon
data:
  amount: {path: value, unit: major}
  currency: currency
  contents:
    path: items
    fields:
      id: items.X.id
      quantity: items.X.quantity
user:
  fields:
    email: user.email
    phone: user.phone
"""


@pytest.mark.parametrize("reads_json_path", [False, True])
def test_arrow_path_and_row_path_give_the_same_events_dead_letters_and_counters(
        mapped_tables, tmp_path: Path, reads_json_path: bool) -> None:
    """The same table through the rows the old readers gave (DuckDB's own Python values, JSON
    parsed; psycopg's server-side cursor) and through the new Arrow batches, column-wise, also
    when a path goes into a JSON document (`extra.coupon`: read per row from the parsed one)."""
    from transforms.columnar import ColumnarMapper
    from transforms.mapper import RowMapper
    from transforms.mapping import load_mapping

    mapping = tmp_path / "mapping.yaml"
    oppref = "  oppref: extra.coupon\n" if reads_json_path else ""
    mapping.write_text(COMPARED_MAPPING.replace("  oppref: extra.coupon\n", oppref))
    plan = load_mapping(str(mapping))
    now_ms = int(datetime.datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    duckdb_url, pg_url = mapped_tables
    query = "SELECT * FROM conversions ORDER BY n"
    for url, old_rows in ((duckdb_url, duckdb_python_rows(duckdb_url, query)),
                          (pg_url, [row for chunk in read_chunks(pg_url + "?reader=cursor",
                                                                 query) for row in chunk.rows])):
        by_rows, by_columns = (RowMapper(plan, clock_ms=lambda: now_ms),
                               ColumnarMapper(plan, clock_ms=lambda: now_ms))
        sources = [f"sql:conversions#row={n}" for n in range(1, MAPPED_TABLE_ROWS + 1)]
        old = [by_rows.map_row(row, source) for row, source in zip(old_rows, sources, strict=True)]
        new = []
        for chunk in read_chunks(url, query, chunk_size=4):
            assert by_columns.positional_rows(chunk.batch) is not None     # column-wise
            assert by_columns.item_tuples(chunk.batch)   # a list of structs; jsonb objects
            new.extend(by_columns.map_batch(chunk.batch, chunk.sources))
        assert new == old
        assert by_columns.counters == by_rows.counters
        events = [result.event.event["id"] for result in new if result.event is not None]
        dead = [(result.dead_letter.reason, result.dead_letter.source)
                for result in new if result.dead_letter is not None]
        assert events == ["order_1", "order_2", "order_4", "order_7", "order_8", "order_9"]
        assert dead == [("missing_id", "sql:conversions#row=3"),
                        ("invalid_currency", "sql:conversions#row=5"),
                        ("missing_currency", "sql:conversions#row=6")]
        first = new[0].event.event
        assert (first.get("oppref"), first["data"]["amount"], first["data"]["contents"],
                first["user"]["emails_sha256"]) == (
            "C1" if reads_json_path else None, 1099, [{"id": "sku_1", "quantity": 1}],
            [hashlib.sha256(b"u1@example.com").hexdigest()])
        assert "emails_sha256" not in new[1].event.event["user"]      # NULL email


def duckdb_python_rows(url: str, query: str) -> list[dict]:
    """Rows as DuckDB's own Python conversion gives them, JSON parsed, bytes as hex (the old
    reader's values), built without the Arrow path."""
    import json

    with duckdb.connect(duckdb_path(url), read_only=True) as connection:
        connection.execute("SET TimeZone = 'UTC'")
        relation = connection.sql(query)
        names, kinds = relation.columns, [str(kind) for kind in relation.types]
        rows = []
        for values in relation.fetchall():
            row = {}
            for name, kind, value in zip(names, kinds, values, strict=True):
                row[name] = json.loads(value) if kind == "JSON" and value is not None else value
            rows.append(row)
        return rows


@pytest.fixture
def role_without_type_catalog(pg_events_url: str):
    """A login that cannot read pg_type, which the ADBC driver needs at connect (its type
    table), as on Redshift and other PostgreSQL forks; psycopg does not need it."""
    with psycopg.connect(pg_events_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS limited")
        admin.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-Pw_9'")
        admin.execute("GRANT SELECT ON events TO limited")
        admin.execute("REVOKE SELECT ON pg_catalog.pg_type FROM PUBLIC")
        try:
            yield pg_events_url.replace(f"capi:{DB_PASSWORD}", "limited:limited-Pw_9")
        finally:
            admin.execute("GRANT SELECT ON pg_catalog.pg_type TO PUBLIC")
            admin.execute("DROP OWNED BY limited")
            admin.execute("DROP ROLE limited")


def test_postgresql_server_the_arrow_driver_cannot_use_falls_back_to_the_cursor(
        role_without_type_catalog: str, caplog: pytest.LogCaptureFixture) -> None:
    chunks = read_chunks(role_without_type_catalog, "SELECT id FROM events ORDER BY id;")
    assert [(chunk.batch, chunk.rows) for chunk in chunks] == [
        (None, [{"id": 1}, {"id": 2}, {"id": 3}]), (None, [{"id": 4}, {"id": 5}])]
    assert "reading through a server-side cursor instead" in caplog.text
    assert "FROM pg_catalog.pg_type" in caplog.text    # the driver's type-table query
    assert "limited-Pw_9" not in caplog.text


def test_postgresql_query_with_a_trailing_semicolon_reads_through_copy(
        pg_events_url: str) -> None:
    chunks = read_chunks(pg_events_url, "SELECT id FROM events ORDER BY id ;\n")
    assert [chunk.batch is not None for chunk in chunks] == [True, True]
    assert [row["id"] for chunk in chunks for row in chunk.rows] == [1, 2, 3, 4, 5]


def test_postgresql_server_dropping_mid_read_fails_the_read(postgres_url: str) -> None:
    from connectors.sql_source import SqlSourceError
    query = ("SELECT g, CASE WHEN g = 6000 THEN pg_terminate_backend(pg_backend_pid()) END AS x"
             " FROM generate_series(1, 10000) AS g")
    with pytest.raises(SqlSourceError, match=r"Reading sql:generate_series from "
                       r"postgresql://capi:\*\*\*@127\.0\.0\.1:\d+/postgres failed after \d+ rows:"
                       r" .*terminating connection") as failure:
        read_chunks(postgres_url, query)
    assert DB_PASSWORD not in str(failure.value)


# TCP keepalives: a vanished server is found within about a minute of silence (the kernel's
# default waits two hours before its first probe)
KEEPALIVES = "&keepalives_idle=30&keepalives_interval=10&keepalives_count=3"


@pytest.mark.parametrize("url, reader, driver_url", [
    ("postgresql://etl@db:5432/prod", "adbc",
     "postgresql://etl@db:5432/prod?connect_timeout=30" + KEEPALIVES),
    ("postgresql://etl@db/prod?reader=cursor&sslmode=require", "cursor",
     "postgresql://etl@db/prod?sslmode=require&connect_timeout=30" + KEEPALIVES),
    ("postgresql://etl@db/prod?reader=adbc", "adbc",
     "postgresql://etl@db/prod?connect_timeout=30" + KEEPALIVES),
    ("postgresql://etl@acme.abc123.us-east-1.redshift.amazonaws.com:5439/dev", "cursor",
     "postgresql://etl@acme.abc123.us-east-1.redshift.amazonaws.com:5439/dev?connect_timeout=30"
     + KEEPALIVES),
    ("postgresql://etl@wg.123.eu-west-1.redshift-serverless.amazonaws.com:5439/dev", "cursor",
     "postgresql://etl@wg.123.eu-west-1.redshift-serverless.amazonaws.com:5439/dev"
     "?connect_timeout=30" + KEEPALIVES),
    ("postgresql://etl@acme.redshift.amazonaws.com/dev?reader=adbc", "adbc",
     "postgresql://etl@acme.redshift.amazonaws.com/dev?connect_timeout=30" + KEEPALIVES),
    ("postgresql://etl@db/prod?connect_timeout=5&keepalives_idle=600", "adbc",   # the URL's own
     "postgresql://etl@db/prod?connect_timeout=5&keepalives_idle=600"
     "&keepalives_interval=10&keepalives_count=3"),
])
def test_postgresql_reader_choice(url: str, reader: str, driver_url: str) -> None:
    from connectors.sql_source import postgresql_reader
    assert postgresql_reader(url) == (reader, driver_url)


def test_libpq_takes_the_deadlines_we_add(pg_events_url: str) -> None:
    # An option libpq does not know fails the connection ("invalid URI query parameter"); the
    # end-to-end reads (ADBC, cursor) connect with these URLs too.
    from connectors.sql_source import postgresql_reader
    with psycopg.connect(postgresql_reader(pg_events_url)[1]) as connection:
        settings = dict(item.split("=", 1) for item in connection.info.dsn.split())
    assert {key: settings.get(key) for key in ("connect_timeout", "keepalives_idle",
                                               "keepalives_interval", "keepalives_count")} == {
        "connect_timeout": "30", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3"}


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that takes every connection and never says a word."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    listener.close()


@pytest.mark.parametrize("reader", ["the query check", "ADBC", "cursor"])
def test_a_postgresql_server_that_never_answers_is_given_up_on(
        silent_server: int, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    # Before, libpq waited for ever: the launcher's check hung the scheduled job.
    import threading

    from connectors import sql_source
    monkeypatch.setattr(sql_source, "CONNECT_TIMEOUT_S", 1)
    url = f"postgresql://etl@127.0.0.1:{silent_server}/prod"
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            if reader == "the query check":
                result_columns(url, "SELECT 1")
            else:
                option = "?reader=cursor" if reader == "cursor" else ""
                list(sql_source.read_postgresql_batches(url + option, "SELECT 1", None, 10))
        except BaseException as error:      # noqa: BLE001 - what the caller would see
            outcome.append(error)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(20)
    assert not attempt.is_alive(), "still waiting for the server after 20 s"
    assert len(outcome) == 1 and "timeout expired" in str(outcome[0])


def test_postgresql_reader_option_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"reader='copy' is not a reader; use reader=adbc"):
        ReadSql("postgresql://etl:hunter2@db/prod?reader=copy", "SELECT 1")


@pytest.mark.parametrize("query, params, rendered", [
    ("SELECT * FROM t WHERE ts > %(since)s AND name LIKE 'a%%'",
     {"since": datetime.datetime(2026, 3, 1, tzinfo=UTC)},
     "SELECT * FROM t WHERE ts > '2026-03-01 00:00:00+00:00'::timestamptz AND name LIKE 'a%'"),
    ("SELECT * FROM t WHERE name = %(name)s", {"name": "o'; DROP TABLE t; --"},
     "SELECT * FROM t WHERE name = 'o''; DROP TABLE t; --'"),
    ("SELECT * FROM t WHERE n > %(n)s", {"n": 5}, "SELECT * FROM t WHERE n > 5"),
    ("SELECT 'a%%'", None, "SELECT 'a%%'"),
])
def test_render_literals(query: str, params: dict | None, rendered: str) -> None:
    from connectors.sql_source import render_literals
    assert render_literals(query, params) == rendered


def test_result_columns_plan_the_query_without_reading(duckdb_url: str,
                                                       pg_events_url: str) -> None:
    from connectors.sql_source import result_columns
    since = {"since": datetime.datetime(2026, 3, 2, tzinfo=UTC)}
    assert result_columns(duckdb_url, "SELECT id, extra FROM orders WHERE event_time > "
                          "%(since)s", {"since": datetime.datetime(2026, 3, 2)}) == ["id", "extra"]
    assert result_columns(pg_events_url, "SELECT id, payload AS doc FROM events WHERE "
                          "event_time > %(since)s", since) == ["id", "doc"]
    assert result_columns(pg_events_url + "?reader=cursor", "SELECT uid FROM events") == ["uid"]


@pytest.mark.parametrize("table", ["orderz", "events_missing"])
def test_a_wrong_table_is_a_configuration_error_when_the_graph_is_built(
        duckdb_url: str, pg_events_url: str, table: str) -> None:
    for url, message in ((duckdb_url, f"Table with name {table} does not exist"),
                         (pg_events_url, f'relation "{table}" does not exist')):
        with pytest.raises(ConfigError, match=f"The SQL query cannot run on .*{message}") as failure:
            with BeamTestPipeline() as pipeline:
                _ = pipeline | ReadSql(url, f"SELECT * FROM {table}")
        assert DB_PASSWORD not in str(failure.value)


def test_a_statement_the_read_only_file_cannot_run_is_a_query_error(duckdb_url: str) -> None:
    # Before: "Cannot reach duckdb:///… to check the query", though the file was opened.
    from connectors.source_peek import columns_of_sql
    with pytest.raises(ConfigError, match=r"^The SQL query cannot run on duckdb:///.*"
                       r'Cannot execute statement of type "DELETE"'):
        columns_of_sql(duckdb_url, "DELETE FROM orders")


@pytest.mark.parametrize("written", [":since", "@since", "$since", ":SINCE"])
def test_a_query_naming_since_another_tools_way_is_told_the_one_way(
        duckdb_url: str, pg_events_url: str, written: str) -> None:
    # Before: the driver's "syntax error at or near ':'" and "check the table and column names".
    from connectors.source_peek import columns_of_sql
    query = f"SELECT * FROM orders WHERE created_at > {written}"
    hint = (f"(the query writes {written}; in --sql-query the --since value is written "
            f"%(since)s, for every database)")
    for url in (duckdb_url, pg_events_url):
        with pytest.raises(ConfigError) as failure:
            columns_of_sql(url, query, {"since": datetime.datetime(2026, 11, 1)})
        assert str(failure.value).startswith(f"The SQL query cannot run on {redact_url(url)}: ")
        assert str(failure.value).endswith(hint)


@pytest.mark.parametrize("query", [
    "SELECT * FROM orderz WHERE created_at::since > 1",   # a cast to a type named since
    "SELECT * FROM orderz WHERE since_ms > 1",
    "SELECT * FROM orderz WHERE x > :sinced",
])
def test_a_wrong_query_without_another_since_style_keeps_the_plain_hint(
        duckdb_url: str, query: str) -> None:
    from connectors.source_peek import columns_of_sql
    with pytest.raises(ConfigError, match=r"\(check the table and column names in --sql-query\)$"):
        columns_of_sql(duckdb_url, query)


def test_duckdb_connections_have_no_progress_bar(duckdb_url: str) -> None:
    from connectors.sql_source import open_duckdb
    connection = open_duckdb(duckdb_url)
    try:
        assert connection.execute(
            "SELECT current_setting('enable_progress_bar')").fetchone() == (False,)
    finally:
        connection.close()


def test_on_a_local_runner_chunks_cross_the_shuffle_as_files_then_are_removed(
        duckdb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from connectors.sql_source import SpilledChunk, _ReadSqlFn, load_spilled
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fn = _ReadSqlFn(duckdb_url, None, 4, "orders", spill=True)
    spilled = list(fn.process("SELECT * FROM orders ORDER BY id"))
    assert [type(item) for item in spilled] == [SpilledChunk, SpilledChunk]
    assert [(item.origin, item.first_row) for item in spilled] == [("sql:orders", 1),
                                                                  ("sql:orders", 5)]
    (directory,) = tmp_path.iterdir()
    assert sorted(path.name for path in directory.iterdir()) == [
        "chunk-00000000.arrow", "chunk-00000001.arrow"]
    loaded = [load_spilled(item) for item in spilled]
    assert [row for chunk in loaded for row in chunk.rows] == [duckdb_order(n) for n in range(1, 8)]
    assert list(tmp_path.iterdir()) == []        # every file read, and the directory removed

    with BeamTestPipeline() as pipeline:       # the same through ReadSql on DirectRunner
        chunks = pipeline | ReadSql(duckdb_url, "SELECT * FROM orders WHERE id = 7")
        assert_that(chunks, equal_to([chunk("orders", [(1, duckdb_order(7))])]))
    assert list(tmp_path.glob("capi-sync-sql-*")) == []      # (Beam keeps its own temp dirs)


def test_a_failed_read_leaves_no_spilled_chunk(postgres_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from connectors.sql_source import SqlSourceError, _ReadSqlFn
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    query = ("SELECT g FROM generate_series(1, 100000) AS g WHERE g < 90000 OR "
             "pg_terminate_backend(pg_backend_pid())")
    fn = _ReadSqlFn(postgres_url, None, 1000, "g", spill=True)
    with pytest.raises(SqlSourceError, match="terminating connection"):
        list(fn.process(query))
    assert list(tmp_path.glob("capi-sync-sql-*")) == []


# ---------------------------------------------------------------- only the mapping's columns

def test_a_query_reads_only_the_columns_the_mapping_reads(duckdb_url: str,
                                                          pg_events_url: str) -> None:
    """`columns` (the mapping's) narrow the query to the result columns it reads, as a Parquet
    file's are; ORDER BY, %(since)s, a final semicolon or a trailing comment all survive."""
    since = {"since": datetime.datetime(2026, 3, 2, tzinfo=UTC)}
    cases = [
        (duckdb_url, "orders", "SELECT * FROM orders WHERE created_at >= %(since)s",
         ["context.event_id", "value"], lambda n: {k: duckdb_order(n)[k] for k in
                                                   ("context", "value")}, range(7, 1, -1)),
        (pg_events_url, "events", "SELECT * FROM events WHERE event_time >= %(since)s",
         ["payload.context.event_id", "value"], lambda n: {k: pg_event(n)[k] for k in
                                                           ("payload", "value")}, range(5, 1, -1)),
        (pg_events_url + "?reader=cursor", "events",
         "SELECT * FROM events WHERE event_time >= %(since)s", ["value"],
         lambda n: {"value": pg_event(n)["value"]}, range(5, 1, -1)),
    ]
    for (url, label, query, columns, row, numbers), end in zip(
            cases, [" -- newest first", ";", " ;\n"], strict=True):
        query += " ORDER BY id DESC" + end
        assert "capi_sync_columns" in projected_query(
            url, query, since, result_columns(url, query, since), columns)
        rows = [(index, row(n)) for index, n in enumerate(numbers, start=1)]
        with BeamTestPipeline() as pipeline:
            chunks = pipeline | ReadSql(url, query, since, chunk_size=10, columns=columns)
            assert_that(chunks, equal_to([chunk(label, rows)]))


def test_odd_column_names_are_quoted_in_the_narrowed_query(duckdb_url: str) -> None:
    query = ("SELECT id, value AS \"net 100%%\", 'x' AS \"say \"\"hi\"\"\", event_id FROM orders "
             "WHERE event_id LIKE 'o-%%' AND created_at >= %(since)s ORDER BY id")
    since = {"since": datetime.datetime(2026, 3, 7, tzinfo=UTC)}
    with BeamTestPipeline() as pipeline:
        chunks = pipeline | ReadSql(duckdb_url, query, since, columns=["net 100%", 'say "hi"'])
        assert_that(chunks, equal_to([
            chunk("orders", [(1, {"net 100%": Decimal("7.99"), 'say "hi"': "x"})])]))
    # without parameters the query is sent as written: one percent sign
    query = "SELECT id, value AS \"net 100%\" FROM orders WHERE id = 7"
    names = result_columns(duckdb_url, query)
    assert [row for chunk in read_chunks(
        duckdb_url, projected_query(duckdb_url, query, None, names, ["net 100%"]))
        for row in chunk.rows] == [{"net 100%": Decimal("7.99")}]


@pytest.mark.parametrize("query, columns", [
    ("SELECT id, id, value FROM events", ["value"]),       # a repeated name
    ("SELECT id AS \"Value\", value FROM events", ["value"]),  # names equal but for case
    ("SELECT id, value FROM events", ["id", "value"]),     # every column is read
    ("SELECT id, value FROM events", ["absent"]),          # no column is read
    ("SELECT id, value FROM events", None),                # no list: every column
])
def test_queries_that_are_not_narrowed(pg_events_url: str, query: str,
                                       columns: list[str] | None) -> None:
    names = result_columns(pg_events_url, query)
    assert projected_query(pg_events_url, query, None, names, columns) == query


def test_a_statement_that_cannot_be_a_subquery_runs_as_written(duckdb_url: str) -> None:
    query = "PRAGMA table_info('orders')"
    names = result_columns(duckdb_url, query)
    assert "name" in names and len(names) > 1
    assert projected_query(duckdb_url, query, None, names, ["name"]) == query
    # a semicolon before a final comment: narrowed without them (statement_text)
    query = "SELECT * FROM orders; -- all"
    assert projected_query(duckdb_url, query, None, result_columns(duckdb_url, query),
                           ["id"]) == ('SELECT "id" FROM (\nSELECT * FROM orders\n) AS '
                                       'capi_sync_columns')


@pytest.mark.parametrize("query, statement", [
    ("SELECT 1", "SELECT 1"),
    ("SELECT 1 ;\n", "SELECT 1"),
    ("SELECT 1; -- all", "SELECT 1"),
    ("SELECT 1 -- c\n; -- d\n/* e */ ;;  \n", "SELECT 1"),
    ("SELECT a -- note\nFROM t", "SELECT a -- note\nFROM t"),     # a comment inside stays
    ("SELECT 'a -- b; c'", "SELECT 'a -- b; c'"),
    ("SELECT 'it''s;' ; ", "SELECT 'it''s;'"),
    ('SELECT "x; --" FROM t;', 'SELECT "x; --" FROM t'),
    ("SELECT $$ ; -- $$ AS y;\n/* end */\n", "SELECT $$ ; -- $$ AS y"),
    ("SELECT %(since)s::timestamptz -- since", "SELECT %(since)s::timestamptz"),
    ("SELECT '%%'; ", "SELECT '%%'"),
])
def test_statement_text_drops_only_what_follows_the_statement(query: str,
                                                             statement: str) -> None:
    assert statement_text(query) == statement


@given(st.text(alphabet=st.sampled_from(list("ab '\"$;-*/\n\t%()")), max_size=40))
def test_statement_text_is_a_prefix_of_the_query_ending_in_statement_text(query: str) -> None:
    statement = statement_text(query)
    assert query.startswith(statement)
    assert statement == statement.rstrip() and not statement.endswith(";")
    assert statement_text(statement) == statement


@pytest.mark.parametrize("url", [
    "snowflake://etl@acme-xy12345/ANALYTICS/PUBLIC?warehouse=WH",
    "postgresql://etl@analytics.abc123.us-east-1.redshift.amazonaws.com:5439/dev",
    "postgresql://etl@wg.123456789012.us-east-1.redshift-serverless.amazonaws.com:5439/dev",
])
def test_snowflake_and_redshift_queries_are_never_narrowed(url: str) -> None:
    # neither promises to keep a subquery's ORDER BY: row numbers would move (nothing is
    # planned: the check comes first)
    assert projected_query(url, "SELECT * FROM ORDERS ORDER BY ID", None,
                           ["ID", "NOTES"], ["ID"]) == "SELECT * FROM ORDERS ORDER BY ID"
