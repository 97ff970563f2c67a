"""ReadSql against a real DuckDB file and a real PostgreSQL server, through Beam pipelines."""
from __future__ import annotations

import datetime
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

from connectors.sources import ReadSql, RowChunk
from connectors.sql_source import (
    dialect_of,
    duckdb_path,
    parameter_names,
    query_label,
    read_postgresql_rows,
    redact_url,
    scrub,
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
