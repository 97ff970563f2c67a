"""End to end on DirectRunner against the emulator: files, DuckDB, PostgreSQL, replay, dedup.

Each test runs the real launcher (`pipeline.run.run`) with the real sources, mapper, batcher and
sink, and checks what the emulator recorded, the dead-letter files and the report.
"""
from __future__ import annotations

import json

import duckdb
import psycopg
import pytest

from pipeline.run import EXIT_OK, EXIT_RETRIES_EXHAUSTED, run
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import (
    NOW,
    ca_row,
    expected_user,
    read_dead_letters,
    read_report,
    sha256,
    write_parquet,
)

IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def expected_order_event() -> dict:
    """ca_row('order_1') through the default mapping, written out by hand from the contract."""
    return {
        "id": "order_1",
        "type": "order_created",
        "timestamp_ms": int((NOW.timestamp() - 3600) * 1000),
        "action_source": "web",
        "source_url": "https://shop.example.com/checkout/done",
        "oppref": "oppref_abc",
        "user": expected_user(),
        "data": {
            "type": "contents", "amount": 2599, "currency": "USD",
            "contents": [{"id": "sku_123", "name": "Starter bundle", "content_type": "product",
                          "quantity": 1, "amount": 2599}],
        },
    }


def mixed_rows() -> list[dict]:
    """Good rows of several kinds and one of each common mistake, in a known order."""
    return [
        ca_row("order_1"),                                                   # row 1
        ca_row("page_1", "page_view", value=None, currency=None, items=None),  # row 2
        ca_row(None),                                                        # row 3: missing_id
        ca_row("order_stale", minutes_ago=8 * 24 * 60),                      # row 4: stale_timestamp
        ca_row("opt_in_1", "Newsletter_Opt_In", items=None),                 # row 5: custom event
        ca_row("order_bad_currency", currency="US$"),                        # row 6: invalid_currency
        ca_row("signup_1", "sign_up", value=None, currency=None, items=None),  # row 7
    ]


def delivery_args(emulator, tmp_path, *extra) -> list[str]:
    return ["--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(tmp_path / "dead" / "dead"), "--report", str(tmp_path / "report.json"),
            "--progress-seconds", "0", *extra]


def by_id(events) -> dict[str, dict]:
    return {event["id"]: event for event in events}


def assert_mixed_rows_outcome(emulator, tmp_path, outcome, source_of_row):
    recorded = by_id(emulator.recorded_events(EMULATOR_PIXEL_ID))
    assert set(recorded) == {"order_1", "page_1", "opt_in_1", "signup_1"}
    assert recorded["order_1"] == expected_order_event()
    assert recorded["opt_in_1"]["type"] == "custom"
    assert recorded["opt_in_1"]["custom_event_name"] == "newsletter_opt_in"
    assert recorded["signup_1"]["data"] == {"type": "customer_action"}
    assert recorded["page_1"]["data"] == {"type": "contents"}

    dead = {(d["reason"], d["event_id"], d["source"]) for d in read_dead_letters(tmp_path / "dead")}
    assert dead == {("missing_id", None, source_of_row(3)),
                    ("stale_timestamp", "order_stale", source_of_row(4)),
                    ("invalid_currency", "order_bad_currency", source_of_row(6))}
    report = read_report(tmp_path / "report.json")
    assert outcome.exit_code == EXIT_OK
    assert (report["rows_read"], report["events_accepted"], report["events_dead_lettered"],
            report["events_skipped"]) == (7, 4, 3, 0)
    assert report["dead_letter_reasons"] == {"invalid_currency": 1, "missing_id": 1, "stale_timestamp": 1}
    assert report["reconciled"] is True
    assert report["requests"] == 1   # one batch: 4 events
    assert [(n, validate_only) for _, n, validate_only in emulator.request_log] == [
        (1, True), (4, False)]       # the preflight's validate_only request, then the batch


def test_nested_parquet_through_the_default_mapping(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", mixed_rows())
    outcome = run(["--input", str(export), *IN_PROCESS, *delivery_args(emulator, tmp_path)])
    assert_mixed_rows_outcome(emulator, tmp_path, outcome, lambda n: f"{export}#row={n}")
    dead_letter = next(d for d in read_dead_letters(tmp_path / "dead") if d["reason"] == "stale_timestamp")
    assert dead_letter["event"]["user"]["emails_sha256"] == [sha256("mary.jane@example.com")]
    assert "mary.jane" not in json.dumps(read_dead_letters(tmp_path / "dead")).lower()


def test_multi_processing_runner_pickles_everything(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", mixed_rows(), row_group_size=2)
    outcome = run(["--input", str(export), "--direct_num_workers", "2",
                   "--direct_running_mode", "multi_processing", *delivery_args(emulator, tmp_path)])
    recorded = by_id(emulator.recorded_events(EMULATOR_PIXEL_ID))
    assert set(recorded) == {"order_1", "page_1", "opt_in_1", "signup_1"}
    assert recorded["order_1"] == expected_order_event()
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["events_dead_lettered"]) == (7, 4, 3)
    assert report["reconciled"] is True and outcome.exit_code == EXIT_OK


def test_nested_rows_from_duckdb(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", mixed_rows())
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(f"CREATE TABLE conversions AS SELECT row_number() OVER () AS n, * "
                    f"FROM read_parquet('{export}')")
    query = "SELECT * EXCLUDE (n) FROM conversions ORDER BY n"
    outcome = run(["--sql-url", f"duckdb:///{database}", "--sql-query", query, *IN_PROCESS,
                   *delivery_args(emulator, tmp_path)])
    assert_mixed_rows_outcome(emulator, tmp_path, outcome, lambda n: f"sql:conversions#row={n}")


def test_incremental_query_gets_the_lower_bound_as_since(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", [
        ca_row("old_1", minutes_ago=48 * 60), ca_row("new_1", minutes_ago=60)])
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(f"CREATE TABLE conversions AS SELECT * FROM read_parquet('{export}')")
    query = "SELECT * FROM conversions WHERE context.event_timestamp >= %(since)s"
    state = tmp_path / "state.json"
    outcome = run(["--sql-url", f"duckdb:///{database}", "--sql-query", query, "--since", "36h",
                   "--state-file", str(state), *IN_PROCESS, *delivery_args(emulator, tmp_path)])
    assert set(by_id(emulator.recorded_events(EMULATOR_PIXEL_ID))) == {"new_1"}
    assert read_report(tmp_path / "report.json")["rows_read"] == 1
    assert outcome.exit_code == EXIT_OK
    assert json.loads(state.read_text())["last_run"]["events_accepted"] == 1


def test_nested_rows_from_postgresql_jsonb(emulator, tmp_path, postgres_url):
    rows = mixed_rows()
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS e2e_conversions")
        con.execute("CREATE TABLE e2e_conversions (n int, event_name text, type text, value numeric, "
                    "currency text, context jsonb, \"user\" jsonb, partners jsonb, items jsonb)")
        for n, row in enumerate(rows, start=1):
            context = dict(row["context"], event_timestamp=row["context"]["event_timestamp"].isoformat())
            con.execute("INSERT INTO e2e_conversions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", (
                n, row["event_name"], row["type"], row["value"], row["currency"],
                json.dumps(context), json.dumps(row["user"]), json.dumps(row["partners"]),
                json.dumps(row["items"]) if row["items"] is not None else None))
    query = "SELECT event_name, type, value, currency, context, \"user\", partners, items " \
            "FROM e2e_conversions ORDER BY n"
    outcome = run(["--sql-url", postgres_url, "--sql-query", query, "--chunk-size", "3", *IN_PROCESS,
                   *delivery_args(emulator, tmp_path)])
    assert_mixed_rows_outcome(emulator, tmp_path, outcome, lambda n: f"sql:e2e_conversions#row={n}")


FLAT_MAPPING = """\
version: 1
event:
  id: order_{order_id}
  type: {constant: order_created}
  timestamp_ms: {path: created_at, unit: iso}
  action_source: {constant: offline}
data:
  amount: {path: revenue_cents, unit: minor}
  currency: currency
user:
  fields:
    email: email
"""


def test_flat_warehouse_table_with_a_custom_mapping(emulator, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    created = NOW.replace(tzinfo=None).isoformat() + "Z"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE TABLE orders (order_id INTEGER, email VARCHAR, revenue_cents BIGINT, "
                    "currency VARCHAR, created_at VARCHAR)")
        con.execute("INSERT INTO orders VALUES (1001, 'Ann@Example.com', 4999, 'eur', ?), "
                    "(1002, NULL, 0, 'EUR', 'not a time')", [created])
    mapping = tmp_path / "orders.yaml"
    mapping.write_text(FLAT_MAPPING)
    outcome = run(["--sql-url", f"duckdb:///{database}", "--sql-query", "SELECT * FROM orders ORDER BY 1",
                   "--mapping", str(mapping), *IN_PROCESS, *delivery_args(emulator, tmp_path)])
    assert emulator.recorded_events(EMULATOR_PIXEL_ID) == [{
        "id": "order_1001", "type": "order_created", "timestamp_ms": int(NOW.timestamp() * 1000),
        "action_source": "offline", "user": {"emails_sha256": [sha256("ann@example.com")]},
        "data": {"type": "contents", "amount": 4999, "currency": "EUR"}}]
    assert [(d["reason"], d["event_id"]) for d in read_dead_letters(tmp_path / "dead")] == [
        ("invalid_timestamp", "order_1002")]
    assert outcome.exit_code == EXIT_OK


def test_dead_letters_of_exhausted_retries_replay_into_the_api(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", [ca_row(f"order_{n}") for n in range(5)])
    emulator.inject("503", count=1000)
    state = tmp_path / "state.json"
    first = run(["--input", str(export), "--max-attempts", "1", "--skip-preflight", "--state-file",
                 str(state), *IN_PROCESS, *delivery_args(emulator, tmp_path)])
    assert first.exit_code == EXIT_RETRIES_EXHAUSTED
    assert not state.exists()   # the watermark does not advance past events awaiting a replay
    assert first.report["dead_letter_reasons"] == {"retries_exhausted": 5}
    assert emulator.recorded_events(EMULATOR_PIXEL_ID) == []

    emulator.clear_faults()
    replay_dir = tmp_path / "replay"
    second = run(["--input", str(tmp_path / "dead" / "dead*.jsonl"), "--input-format", "dead-letter",
                  *IN_PROCESS, *delivery_args(emulator, replay_dir)])
    assert {e["id"] for e in emulator.recorded_events(EMULATOR_PIXEL_ID)} == {f"order_{n}" for n in range(5)}
    assert (second.report["rows_read"], second.report["events_accepted"]) == (5, 5)
    assert second.report["reconciled"] is True and second.exit_code == EXIT_OK

    emulator.reset()
    third = run(["--input", str(export), "--state-file", str(state), *IN_PROCESS,
                 *delivery_args(emulator, tmp_path / "third")])
    assert third.exit_code == EXIT_OK
    assert json.loads(state.read_text())["last_run"]["events_accepted"] == 5


def test_duplicates_within_a_request_are_skipped_and_run_wide_only_with_dedupe(emulator, tmp_path):
    rows = [ca_row("order_1"), ca_row("order_1"), ca_row("order_2"), ca_row("order_3"), ca_row("order_1")]
    export = write_parquet(tmp_path / "export.parquet", rows)
    plain = run(["--input", str(export), "--batch-size", "3", *IN_PROCESS,
                 *delivery_args(emulator, tmp_path / "plain")])
    # order_1 twice in the first request: one skipped; its third copy goes in the next request.
    assert plain.report["skip_reasons"] == {"duplicate": 1}
    assert (plain.report["events_accepted"], plain.report["reconciled"]) == (4, True)
    assert emulator.stats["duplicates"] == 1   # the API's own dedup absorbed the repeat

    emulator.reset()
    deduped = run(["--input", str(export), "--batch-size", "3", "--dedupe", *IN_PROCESS,
                   *delivery_args(emulator, tmp_path / "deduped")])
    assert deduped.report["skip_reasons"] == {"duplicate": 2}
    assert (deduped.report["events_accepted"], deduped.report["reconciled"]) == (3, True)
    assert emulator.stats["duplicates"] == 0
    assert sorted(e["id"] for e in emulator.recorded_events(EMULATOR_PIXEL_ID)) == [
        "order_1", "order_2", "order_3"]


def test_one_job_several_pixels_and_their_dead_letters_replay_to_the_same_pixel(tmp_path):
    from connectors.emulator import Emulator

    mapping = tmp_path / "pixels.yaml"
    mapping.write_text("extends: default\npixel_id: partners.openai.pixel\n")
    rows = [ca_row("order_a1", partners__openai={"oppref": None, "pixel": "px_a"}),
            ca_row("order_b1", partners__openai={"oppref": None, "pixel": "px_b"}),
            ca_row("order_b2", partners__openai={"oppref": None, "pixel": "px_b"}),
            ca_row("order_default")]
    export = write_parquet(tmp_path / "export.parquet", rows)
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=["px_a", "px_b", EMULATOR_PIXEL_ID]) as api:
        api.reject_event_ids(["order_b2"])
        first = run(["--input", str(export), "--mapping", str(mapping), *IN_PROCESS,
                     *delivery_args(api, tmp_path)])
        assert [e["id"] for e in api.recorded_events("px_a")] == ["order_a1"]
        assert [e["id"] for e in api.recorded_events("px_b")] == ["order_b1"]
        assert [e["id"] for e in api.recorded_events(EMULATOR_PIXEL_ID)] == ["order_default"]
        [dead] = read_dead_letters(tmp_path / "dead")
        assert (dead["reason"], dead["event_id"], dead["pixel_id"]) == ("rejected_by_api", "order_b2", "px_b")
        assert first.report["reconciled"] is True

        api.clear_faults()
        replay = run(["--input", str(tmp_path / "dead" / "dead*.jsonl"), "--input-format", "dead-letter",
                      *IN_PROCESS, *delivery_args(api, tmp_path / "replay")])
        assert [e["id"] for e in api.recorded_events("px_b")] == ["order_b1", "order_b2"]
        assert replay.report["events_accepted"] == 1


def test_without_pixel_id_a_row_whose_mapped_pixel_is_empty_is_a_dead_letter(tmp_path):
    # Before, the sink raised ConfigError inside the worker at the first such event: the run
    # failed with a traceback and the other rows' accounting was lost.
    from connectors.emulator import Emulator
    from connectors.sink import NO_PIXEL_DETAIL

    mapping = tmp_path / "pixels.yaml"
    mapping.write_text("extends: default\npixel_id: partners.openai.pixel\n")
    rows = [ca_row("order_a1", partners__openai={"oppref": None, "pixel": "px_a"}),
            ca_row("order_none", partners__openai={"oppref": None, "pixel": None}),
            ca_row("order_blank", partners__openai={"oppref": None, "pixel": "  "}),
            ca_row("order_b1", partners__openai={"oppref": None, "pixel": "px_b"})]
    export = write_parquet(tmp_path / "export.parquet", rows)
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=["px_a", "px_b"]) as api:
        args = [a for a in delivery_args(api, tmp_path) if a != EMULATOR_PIXEL_ID and
                a != "--pixel-id"]
        outcome = run(["--input", str(export), "--mapping", str(mapping), *IN_PROCESS, *args])
        assert [e["id"] for e in api.recorded_events("px_a")] == ["order_a1"]
        assert [e["id"] for e in api.recorded_events("px_b")] == ["order_b1"]
    assert sorted((d["reason"], d["event_id"], d["detail"], d["source"].rsplit("#", 1)[1])
                  for d in read_dead_letters(tmp_path / "dead")) == [
        ("mapping_error", "order_blank", NO_PIXEL_DETAIL, "row=3"),
        ("mapping_error", "order_none", NO_PIXEL_DETAIL, "row=2")]
    assert (outcome.report["events_accepted"], outcome.report["events_dead_lettered"]) == (2, 2)
    assert outcome.report["reconciled"] is True and outcome.exit_code == EXIT_OK


def test_files_skip_rows_before_an_explicit_since_and_count_them(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", [
        ca_row("old_1", minutes_ago=48 * 60), ca_row("new_1", minutes_ago=60)])
    outcome = run(["--input", str(export), "--since", "36h", *IN_PROCESS,
                   *delivery_args(emulator, tmp_path)])
    assert [e["id"] for e in emulator.recorded_events(EMULATOR_PIXEL_ID)] == ["new_1"]
    assert outcome.report["skip_reasons"] == {"before_since": 1}
    assert outcome.report["reconciled"] is True
