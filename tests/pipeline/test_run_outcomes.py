"""Runs that deliver nothing fail with their own exit code; the summary shows what OpenAI can
match on. Real launcher (pipeline.cli.main), DirectRunner in process, the emulator."""
from __future__ import annotations

import json
import pathlib

import duckdb
import pytest

from pipeline import run as runner
from pipeline.cli import main
from pipeline.exit_codes import EXIT_TERMINATED
from pipeline.run import run_verdict
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import ca_row, read_report, write_parquet

IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def cli(emulator, tmp_path, *args):
    return main([*args, "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
                 "--dead-letter", str(tmp_path / "dead" / "dead"),
                 "--report", str(tmp_path / "report.json"), "--progress-seconds", "0",
                 *IN_PROCESS])


def failure_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("capi-sync: run failed")]
    assert len(lines) == 1
    return lines[0]


def test_a_glob_that_matches_no_file_exits_5(emulator, tmp_path, capsys):
    code = cli(emulator, tmp_path, "--input", str(tmp_path / "exports" / "*.parquet"))
    assert code == runner.EXIT_NOTHING_READ == 5
    assert failure_line(capsys) == ("capi-sync: run failed (exit 5): no row was read: the input "
                                    "matched no file or the query returned no row")
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["exit_code"]) == (0, 5)


def test_an_empty_query_exits_5(emulator, tmp_path, capsys):
    database = tmp_path / "w.db"
    connection = duckdb.connect(str(database))
    connection.execute("CREATE TABLE events AS SELECT 'purchase' AS event_name, "
                       "'o1' AS \"context.event_id\" WHERE false")
    connection.close()
    query = tmp_path / "query.sql"
    query.write_text("SELECT * FROM events\n")
    code = cli(emulator, tmp_path, "--sql-url", f"duckdb:///{database}", "--sql-file", str(query))
    assert code == 5
    assert "no row was read" in failure_line(capsys)


def test_every_row_dead_lettered_exits_6_and_keeps_the_watermark(emulator, tmp_path, capsys):
    rows = [ca_row(f"order_{n}", minutes_ago=8 * 24 * 60) for n in range(3)]
    export = write_parquet(tmp_path / "export.parquet", rows)
    state = tmp_path / "state.json"
    code = cli(emulator, tmp_path, "--input", str(export), "--state-file", str(state))
    assert code == runner.EXIT_NOTHING_DELIVERED == 6
    assert failure_line(capsys) == (
        "capi-sync: run failed (exit 6): all 3 events that could be sent were dead-lettered "
        "(most: stale_timestamp 3); nothing was sent")
    assert not state.exists()
    assert emulator.recorded_events() == []


def test_a_json_array_export_is_one_dead_letter_and_exits_6_in_the_singular(
        emulator, tmp_path, capsys):
    export = tmp_path / "orders.json"
    export.write_text(json.dumps([ca_row("order_1"), ca_row("order_2")], indent=2, default=str))
    assert cli(emulator, tmp_path, "--input", str(export)) == runner.EXIT_NOTHING_DELIVERED
    assert failure_line(capsys) == (
        "capi-sync: run failed (exit 6): the one event that could be sent was dead-lettered "
        "(mapping_error); nothing was sent")
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_dead_lettered"]) == (1, 1)
    letters = [json.loads(line) for path in (tmp_path / "dead").glob("dead-*.jsonl")
               for line in path.read_text().splitlines()]
    assert [(letter["source"], letter["detail"].split(";")[0]) for letter in letters] == [
        (str(export), f"{export} is one JSON document (an array over several lines), not JSON "
                      f"Lines (one object per line)")]
    assert emulator.recorded_events() == []


def test_max_dead_letter_rate_fails_a_run_above_it(emulator, tmp_path, capsys):
    """Below the rate, and without the option, the same run exits 0 (test_run_verdict)."""
    rows = [ca_row("order_1"), ca_row("order_2"), ca_row(None)]     # 1 of 3: missing_id
    export = write_parquet(tmp_path / "export.parquet", rows)
    assert cli(emulator, tmp_path, "--input", str(export), "--max-dead-letter-rate", "0.2") == 8
    assert failure_line(capsys) == (
        "capi-sync: run failed (exit 8): 33.3% of the rows read were dead-lettered, above "
        "--max-dead-letter-rate 0.2")
    assert len(emulator.recorded_events()) == 2


def report_of(rows=3, accepted=0, dead=None, skipped=None):
    dead = dead or {}
    return {"rows_read": rows, "events_accepted": accepted,
            "events_dead_lettered": sum(dead.values()), "dead_letter_reasons": dead,
            "skip_reasons": skipped or {}}


@pytest.mark.parametrize(("report", "rate", "code"), [
    (report_of(rows=0), None, 5),
    (report_of(skipped={"no_consent": 3}), None, 5),
    (report_of(dead={"stale_timestamp": 3}), None, 6),
    (report_of(dead={"retries_exhausted": 3}), None, 4),      # a replay is the fix
    (report_of(accepted=2, dead={"retries_exhausted": 1}), None, 4),
    (report_of(accepted=2, dead={"missing_id": 1}), None, 0),
    (report_of(accepted=2, dead={"missing_id": 1}), 0.0, 8),
    (report_of(accepted=2, dead={"missing_id": 1}), 0.34, 0),
    (report_of(accepted=3), 0.0, 0),
])
def test_run_verdict(report, rate, code):
    assert run_verdict(report, rate)[0] == code


def test_the_exit_codes_are_documented_in_the_readme():
    text = README.read_text()
    section = text[text.index("Exit codes:"):]
    section = section[:section.index("\n\n")]
    for code in (runner.EXIT_OK, runner.EXIT_CONFIG, runner.EXIT_AUTH,
                 runner.EXIT_RETRIES_EXHAUSTED, runner.EXIT_NOTHING_READ,
                 runner.EXIT_NOTHING_DELIVERED, runner.EXIT_NOT_SAVED,
                 runner.EXIT_DEAD_LETTER_RATE, runner.EXIT_SOURCE_FAILED,
                 runner.EXIT_INTERRUPTED, EXIT_TERMINATED):
        assert f"`{code}`" in section


def small_export() -> list[dict]:
    return [
        ca_row("order_1",                                                 # every identifier
               context__device__advertising_id="38400000-8cf0-11bd-b23e-10b96e40000d"),
        ca_row("order_2", partners__openai__oppref=None, context__device__ip="not-an-ip"),
        ca_row("page_1", "page_view", value=None, currency=None, items=None,
               user__email=None, context__event_timestamp=None),          # timestamp -> now
        ca_row("order_old", minutes_ago=8 * 24 * 60),                     # stale_timestamp
    ]


def test_the_report_and_summary_carry_the_mappers_changes_and_identifier_coverage(
        emulator, tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", small_export())
    assert cli(emulator, tmp_path, "--input", str(export), "--validate-only") == 0
    report = read_report(tmp_path / "report.json")

    def share(count, total):
        return {"count": count, "share": round(count / total, 4)}

    assert report["identifier_coverage"] == {
        "order_created": {"events": 2, "oppref": share(1, 2), "email": share(2, 2),
                          "phone": share(2, 2), "external_id": share(2, 2),
                          "ip_and_user_agent": share(1, 2), "android_id": share(1, 2)},
        "page_viewed": {"events": 1, "oppref": share(1, 1), "email": share(0, 1),
                        "phone": share(1, 1), "external_id": share(1, 1),
                        "ip_and_user_agent": share(1, 1), "android_id": share(0, 1)},
    }
    assert report["mapper_changes"] == {
        "timestamp_defaulted": 1, "invalid": {"user.ip_address": 1}, "over_limit": {},
        "not_allowed": {}, "defaulted": {"data.contents.fields.content_type": 3},
        "empty_items": 0}
    assert report["validate_only"] is True
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("VALIDATE-ONLY run: the API checked every event and recorded none "
                      "(accepted = validated)")
    start = out.index("what the mapper changed (rows mapped)")
    assert out[start + 1:start + 9] == [
        # labels padded to the longest one plus 2, counts in 10 columns
        f"  {'timestamps defaulted to now':<49}{1:>10}",
        f"  {'left out as invalid: user.ip_address':<49}{1:>10}",
        f"  {'default used: data.contents.fields.content_type':<49}{3:>10}",
        "sent events by type  events  oppref   email   phone  external id  IP + user agent"
        "  Android id",
        "order_created             2   50.0%  100.0%  100.0%       100.0%            50.0%"
        "       50.0%",
        "page_viewed               1  100.0%    0.0%  100.0%       100.0%           100.0%"
        "        0.0%",
        "-" * 34,        # the main table's rule
        "reconciled: rows read = accepted + dead-lettered + skipped",
    ]


def test_jsonl_mapped_fields_empty_on_every_sent_event_are_warnings(emulator, tmp_path, capsys):
    """No schema before the run: the file's own fields one line each, the default mapping's
    fields it inherits in one line."""
    row = ca_row("order_1", partners__openai__oppref=None)
    row["context"]["event_timestamp"] = int(row["context"]["event_timestamp"].timestamp() * 1000)
    row["user"] = {"mail": "a@example.com", "id": "cust-1"}
    export = tmp_path / "orders.jsonl"
    export.write_text(json.dumps(row) + "\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("extends: default\nuser:\n  fields:\n    email: user.emial\n")
    assert cli(emulator, tmp_path, "--input", str(export), "--mapping", str(mapping)) == 0
    typo = ("user.fields.email was empty on all 1 sent events: check its path in the mapping "
            "(`capi-sync preview` shows what each row gives)")
    assert read_report(tmp_path / "report.json")["warnings"] == [typo, (
        "fields of the default mapping empty on every sent event: event.custom_event_name, "
        "event.oppref, event.opt_out, data.plan_id, user.fields.phone, user.fields.first_name, "
        "user.fields.last_name, user.fields.country, user.fields.city, user.fields.region, "
        "user.fields.postal_code, user.fields.obref, user.fields.android_advertising_id")]
    assert f"warning: {typo}" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(("args", "message"), [
    (["--sql-query", "SELECT 1", "--sql-file", "QUERY"],
     "Give the query once: --sql-query or --sql-file, not both."),
    (["--sql-file", "MISSING"], "--sql-file 'MISSING' cannot be read (FileNotFoundError)."),
    (["--sql-file", "EMPTY"], "--sql-file 'EMPTY' is empty; write the SELECT in it."),
    (["--sql-file", "QUERY", "--max-dead-letter-rate", "5"],
     "--max-dead-letter-rate is a share of the rows read, within 0..1 (0.05 = 5%), got 5."),
])
def test_sql_file_and_rate_mistakes_are_configuration_errors(emulator, tmp_path, capsys,
                                                             monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "query.sql").write_text("SELECT 1 AS x")
    (tmp_path / "empty.sql").write_text("  \n")
    paths = {"QUERY": str(tmp_path / "query.sql"), "EMPTY": "empty.sql", "MISSING": "missing.sql"}
    args = [paths.get(arg, arg) for arg in args]
    message = message.replace("'EMPTY'", "'empty.sql'").replace("'MISSING'", "'missing.sql'")
    code = cli(emulator, tmp_path, "--sql-url", "duckdb:///:memory:", *args)
    assert code == 2
    assert message in capsys.readouterr().err
    assert emulator.stats["requests"] == 0
