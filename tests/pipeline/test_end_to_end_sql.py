"""SQL sources read through their Arrow paths, end to end on DirectRunner against the emulator.

DuckDB through its own record-batch reader, PostgreSQL through the ADBC driver (binary COPY):
exact events, nested values and NULLs, a `%(since)s` query, an empty result, a wrong table name
(exit 2 before any read) and a server that drops the connection mid-read (the run fails).
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import duckdb
import psycopg
import pytest

from pipeline.run import EXIT_CONFIG, EXIT_NOTHING_READ, EXIT_OK, EXIT_SOURCE_FAILED, run
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.connectors.postgres import DB_PASSWORD
from tests.pipeline.builders import NOW, read_dead_letters, read_report, sha256

IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]

MAPPING = """\
version: 1
event:
  id: order_id
  type: {constant: order_created}
  timestamp_ms: {path: created_at, unit: ms}
  action_source: {constant: offline}
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
"""


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def delivery_args(emulator, tmp_path) -> list[str]:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    return ["--mapping", str(mapping), "--pixel-id", EMULATOR_PIXEL_ID,
            "--endpoint", emulator.url, "--dead-letter", str(tmp_path / "dead" / "dead"),
            "--report", str(tmp_path / "report.json"), "--progress-seconds", "0", *IN_PROCESS]


def created(hours_ago: int) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours_ago)


# (order_id, hours ago, value, currency, email, items): NULLs in email, items and currency.
ORDERS = [
    ("o1", 1, "19.99", "USD", "Ann@Example.com", [("sku_1", 2)]),
    ("o2", 2, "5.00", "EUR", None, None),
    ("o3", 3, "7.50", None, "c@example.com", [("sku_3", 1), ("sku_4", 3)]),
    ("o4", 48, "1.00", "USD", "old@example.com", None),
]


def expected_event(order_id: str) -> dict:
    """The event of ORDERS' row through MAPPING, written out from the contract."""
    order_id, hours, value, currency, email, items = next(o for o in ORDERS if o[0] == order_id)
    data = {"type": "contents", "amount": round(float(value) * 100), "currency": currency}
    if items:
        data["contents"] = [{"id": sku, "quantity": quantity} for sku, quantity in items]
    event = {"id": order_id, "type": "order_created",
             "timestamp_ms": int(created(hours).timestamp() * 1000), "action_source": "offline",
             "data": data}
    if email:
        event["user"] = {"emails_sha256": [sha256(email.lower())]}
    return event


@pytest.fixture
def duckdb_orders(tmp_path) -> str:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE orders (order_id VARCHAR, created_at TIMESTAMPTZ, "
                    "value DECIMAL(12, 2), currency VARCHAR, \"user\" STRUCT(email VARCHAR), "
                    "items STRUCT(id VARCHAR, quantity INTEGER)[])")
        for order_id, hours, value, currency, email, items in ORDERS:
            con.execute("INSERT INTO orders VALUES (?, ?, ?, ?, {'email': ?}, ?)", [
                order_id, created(hours), value, currency, email,
                None if items is None else [{"id": sku, "quantity": q} for sku, q in items]])
    return f"duckdb:///{path}"


@pytest.fixture
def pg_orders(postgres_url) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS e2e_orders")
        con.execute("CREATE TABLE e2e_orders (order_id text, created_at timestamptz, "
                    "value numeric(12, 2), currency text, \"user.email\" text, items jsonb)")
        for order_id, hours, value, currency, email, items in ORDERS:
            con.execute("INSERT INTO e2e_orders VALUES (%s, %s, %s, %s, %s, %s)", (
                order_id, created(hours), value, currency, email,
                None if items is None else json.dumps(
                    [{"id": sku, "quantity": q} for sku, q in items])))
    return postgres_url


def recorded(emulator) -> dict[str, dict]:
    return {event["id"]: event for event in emulator.recorded_events(EMULATOR_PIXEL_ID)}


@pytest.mark.parametrize("source", ["duckdb", "postgresql"])
def test_since_query_exact_events_nested_values_and_nulls(emulator, tmp_path, source, request):
    url, table = ((request.getfixturevalue("duckdb_orders"), "orders") if source == "duckdb"
                  else (request.getfixturevalue("pg_orders"), "e2e_orders"))
    query = f"SELECT * FROM {table} WHERE created_at >= %(since)s ORDER BY order_id"
    state = tmp_path / "state.json"
    outcome = run(["--sql-url", url, "--sql-query", query, "--since", "36h", "--state-file",
                   str(state), *delivery_args(emulator, tmp_path)])
    assert recorded(emulator) == {"o1": expected_event("o1"), "o2": expected_event("o2")}
    assert [(d["reason"], d["event_id"], d["source"]) for d in read_dead_letters(
        tmp_path / "dead")] == [("missing_currency", "o3", f"sql:{table}#row=3")]
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["events_dead_lettered"]) == (
        3, 2, 1)
    assert outcome.exit_code == EXIT_OK and state.exists()


@pytest.mark.parametrize("source", ["duckdb", "postgresql"])
def test_a_query_file_ending_in_a_semicolon_and_a_comment_runs(emulator, tmp_path, source,
                                                               request):
    # Before, the launcher's check wrapped the query as it was: `... ORDER BY order_id;
    # -- nightly sync) AS ...` did not parse, so the run stopped with exit 2. The `--` and `;`
    # inside the literals are the query's and stay.
    url, table = ((request.getfixturevalue("duckdb_orders"), "orders") if source == "duckdb"
                  else (request.getfixturevalue("pg_orders"), "e2e_orders"))
    query = tmp_path / "orders.sql"
    query.write_text(f"SELECT *, 'a -- b; c' AS note FROM {table}\n"
                     f"WHERE created_at >= %(since)s AND order_id <> 'x; -- y'\n"
                     f"ORDER BY order_id;\n-- nightly sync\n/* owner: data team */\n")
    outcome = run(["--sql-url", url, "--sql-file", str(query), "--since", "36h",
                   *delivery_args(emulator, tmp_path)])
    assert recorded(emulator) == {"o1": expected_event("o1"), "o2": expected_event("o2")}
    assert [d["source"] for d in read_dead_letters(tmp_path / "dead")] == [
        f"sql:{table}#row=3"]
    assert outcome.exit_code == EXIT_OK


@pytest.mark.parametrize("source", ["duckdb", "postgresql"])
def test_a_column_the_mapping_does_not_read_is_never_computed(emulator, tmp_path, source,
                                                              request):
    # The extra column fails wherever it is computed (DuckDB's error(); a division by zero on
    # PostgreSQL): the run succeeds because only the mapping's columns are read.
    url, table, failing = (
        (request.getfixturevalue("duckdb_orders"), "orders", "error('computed')")
        if source == "duckdb"
        else (request.getfixturevalue("pg_orders"), "e2e_orders", "1 / (length(order_id) - 2)"))
    query = (f"SELECT *, {failing} AS never_read FROM {table} WHERE created_at >= %(since)s "
             "ORDER BY order_id")
    outcome = run(["--sql-url", url, "--sql-query", query, "--since", "36h",
                   *delivery_args(emulator, tmp_path)])
    assert recorded(emulator) == {"o1": expected_event("o1"), "o2": expected_event("o2")}
    assert [d["source"] for d in read_dead_letters(tmp_path / "dead")] == [
        f"sql:{table}#row=3"]
    assert outcome.exit_code == EXIT_OK


@pytest.mark.parametrize("source", ["duckdb", "postgresql"])
def test_empty_result_sends_nothing(emulator, tmp_path, source, request):
    url, table = ((request.getfixturevalue("duckdb_orders"), "orders") if source == "duckdb"
                  else (request.getfixturevalue("pg_orders"), "e2e_orders"))
    outcome = run(["--sql-url", url, "--sql-query", f"SELECT * FROM {table} WHERE false",
                   *delivery_args(emulator, tmp_path)])
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["events_dead_lettered"]) == (
        0, 0, 0)
    assert recorded(emulator) == {}
    assert outcome.exit_code == EXIT_NOTHING_READ


def run_cli(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**__import__("os").environ, "OPENAI_CAPI_API_KEY": EMULATOR_API_KEY})


@pytest.mark.parametrize("source", ["duckdb", "postgresql"])
def test_wrong_table_is_a_configuration_error_exit_2_without_traceback(
        emulator, tmp_path, source, request):
    url = (request.getfixturevalue("duckdb_orders") if source == "duckdb"
           else request.getfixturevalue("pg_orders"))
    result = run_cli(["--sql-url", url, "--sql-query", "SELECT * FROM ordres",
                      *delivery_args(emulator, tmp_path)], tmp_path)
    assert result.returncode == EXIT_CONFIG
    assert "capi-sync: configuration error: The SQL query cannot run on" in result.stderr
    assert "ordres" in result.stderr and "check the table and column names" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert DB_PASSWORD not in result.stderr + result.stdout
    assert emulator.request_log == [] or all(validate for *_, validate in emulator.request_log)


@pytest.mark.parametrize("workers", ["in the launcher", "Beam's worker processes"])
def test_postgresql_server_dropping_mid_read_fails_the_run(emulator, tmp_path, pg_orders,
                                                           workers):
    # The server ends the connection while the COPY is streaming (after row 3000). Read in the
    # launcher, the error comes back as it was raised; read by a process of Beam's own
    # DirectRunner (--no-warm-workers), as that process's traceback text.
    query = ("SELECT 'o' || g AS order_id, now() AS created_at, 1.5 AS value, 'USD' AS currency,"
             " CASE WHEN g = 3000 THEN pg_terminate_backend(pg_backend_pid())::text END AS x"
             " FROM generate_series(1, 5000) AS g")
    state = tmp_path / "state.json"
    args = delivery_args(emulator, tmp_path)
    if workers != "in the launcher":
        args = [*args[:-len(IN_PROCESS)], "--no-warm-workers"]
    result = run_cli(["--sql-url", pg_orders, "--sql-query", query, "--state-file", str(state),
                      *args], tmp_path)
    assert result.returncode == EXIT_SOURCE_FAILED
    assert ("capi-sync: source failed while being read, nothing more was sent: Reading "
            "sql:generate_series from postgresql://capi:***@127.0.0.1") in result.stderr
    assert "terminating connection" in result.stderr
    assert DB_PASSWORD not in result.stderr + result.stdout
    assert not state.exists() and not (tmp_path / "report.json").exists()
    assert emulator.recorded_events(EMULATOR_PIXEL_ID) == []
    if workers == "in the launcher":
        assert "Traceback" not in result.stderr      # the one line says it all
