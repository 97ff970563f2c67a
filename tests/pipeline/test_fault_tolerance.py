"""Fault tolerance end to end: real Beam pipelines on DirectRunner against the emulator on loopback.

- transient failures (429, 503, dropped connections, answers lost after recording) at scale:
  every row recorded once by id, the report reconciled, exit 0;
- events the API refuses although they pass local checks: isolated by splitting, dead-lettered;
- a key the API refuses (wrong, revoked, Advertiser key): exit 3 after one request, the key
  never printed;
- a run killed with SIGKILL mid-way and run again: every row recorded once, re-sends absorbed by
  the API's dedup on stable ids;
- bad input at scale (wrong types, null ids, bad timestamps, 1 MB strings, invalid UTF-8):
  each bad row a dead letter with its reason and source, every good row delivered.

Runs are in-process on one worker (fast) except the killed run, a subprocess on purpose.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.generate_rows import write_parquet as generate_parquet
from connectors.emulator import NO_RESPONSE, Emulator
from pipeline.cli import main
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import (
    NOW,
    ca_row,
    parquet_event_ids,
    read_dead_letters,
    read_dead_letters_by_step,
    read_report,
    write_csv,
    write_jsonl,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
ROWS_AT_SCALE = 20_000
MB = 1_000_000


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


@pytest.fixture(scope="module")
def export_20k(tmp_path_factory) -> pathlib.Path:
    """20,000 valid generated rows in four row groups (ids evt-11-000000000 ...)."""
    path = tmp_path_factory.mktemp("export") / "export.parquet"
    generate_parquet(str(path), ROWS_AT_SCALE, seed=11, chunk_rows=5_000)
    return path


def sync_args(emulator, out_dir: pathlib.Path, inputs: list[pathlib.Path], *extra: str) -> list[str]:
    """Command-line arguments for one run whose dead letters and report go to `out_dir`."""
    return [*(arg for path in inputs for arg in ("--input", str(path))),
            "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(out_dir / "dead"), "--report", str(out_dir / "report.json"),
            "--progress-seconds", "0", *extra]


def recorded_ids(emulator) -> list[str]:
    return [event["id"] for event in emulator.recorded_events(EMULATOR_PIXEL_ID)]


def assert_reconciled(report: dict, rows: int, accepted: int, dead_letter_reasons: dict) -> None:
    assert report["rows_read"] == rows
    assert report["events_accepted"] == accepted
    assert report["dead_letter_reasons"] == dead_letter_reasons
    assert report["events_dead_lettered"] == sum(dead_letter_reasons.values())
    assert report["events_skipped"] == 0
    assert report["reconciled"] is True


# -- 1. transient failures at scale ----------------------------------------------------------

def test_transient_faults_at_scale_deliver_every_row_exactly_once(emulator, export_20k, tmp_path):
    expected_ids = parquet_event_ids(export_20k)
    # The emulator tries faults in injection order and the first that fires wins; each draws
    # from its own seeded RNG only when reached (effective rates 8%, 4.6%, 1.7%, 1.7%), so the
    # sequence of answers is the same on every run.
    emulator.inject("429", rate=0.08, retry_after="0", seed=1)
    emulator.inject("503", rate=0.05, seed=2)
    emulator.inject("drop", rate=0.02, seed=3)
    emulator.inject("lost_response", rate=0.02, seed=4)

    exit_code = main(sync_args(emulator, tmp_path, [export_20k], "--max-attempts", "10",
                               "--batch-size", "250", *IN_PROCESS))

    assert exit_code == 0
    ids = recorded_ids(emulator)
    assert len(ids) == ROWS_AT_SCALE
    assert set(ids) == set(expected_ids)
    stats, log = emulator.stats, emulator.request_log
    assert log[0] == (200, 1, True)     # the preflight got through at once: every fault below hit data
    assert stats["by_status"][429] >= 1 and stats["by_status"][503] >= 1
    assert stats["dropped"] >= 1 and stats["lost_responses"] >= 1
    # Only batches whose answer was lost after recording were sent twice; the API's dedup
    # absorbed exactly those events.
    lost_after_recording = sum(n for status, n, validate_only in log
                               if status == NO_RESPONSE and not validate_only)
    assert lost_after_recording >= 250
    assert stats["duplicates"] == lost_after_recording
    assert stats["events_received"] == ROWS_AT_SCALE + lost_after_recording

    report = read_report(tmp_path / "report.json")
    assert_reconciled(report, rows=ROWS_AT_SCALE, accepted=ROWS_AT_SCALE, dead_letter_reasons={})
    data_200s = sum(1 for status, _, validate_only in log if status == 200 and not validate_only)
    assert report["http_statuses"] == {
        "200": data_200s, "429": stats["by_status"][429], "503": stats["by_status"][503],
        "connection_error": stats["by_status"][NO_RESPONSE]}
    assert report["requests"] == stats["requests"] - 1               # all but the preflight
    assert report["retries"] == report["requests"] - data_200s       # one 200 per batch
    assert list(tmp_path.glob("dead*")) == []       # no dead letters: no dead-letter file


# -- 2. events the API refuses -----------------------------------------------------------------

def test_events_the_api_refuses_are_isolated_and_dead_lettered(emulator, tmp_path):
    export = tmp_path / "export.parquet"
    generate_parquet(str(export), 3_000, seed=12, chunk_rows=1_000)
    ids = parquet_event_ids(export)
    refused_rows = [1, 2, 778, 1500, 3000]          # a neighbouring pair, first and last rows
    refused = {ids[row - 1]: row for row in refused_rows}
    message = "Event refused by the API (fault test)"
    emulator.reject_event_ids(refused, message=message)

    assert main(sync_args(emulator, tmp_path / "out", [export], *IN_PROCESS)) == 0

    recorded = recorded_ids(emulator)
    assert len(recorded) == 3_000 - 5
    assert set(recorded) == set(ids) - set(refused)
    letters = read_dead_letters(tmp_path / "out")
    assert sorted((letter["event_id"], letter["reason"], letter["detail"], letter["source"])
                  for letter in letters) == sorted(
        (event_id, "rejected_by_api", f"events[0]: rejected: {message}", f"{export}#row={row}")
        for event_id, row in refused.items())
    assert all(letter["event"]["id"] == letter["event_id"] for letter in letters)   # replayable
    assert list(read_dead_letters_by_step(tmp_path / "out")) == ["delivery"]
    report = read_report(tmp_path / "out" / "report.json")
    assert_reconciled(report, rows=3_000, accepted=2_995, dead_letter_reasons={"rejected_by_api": 5})
    assert report["http_statuses"]["400"] >= 5


# -- 3. a key the API refuses ------------------------------------------------------------------

REVOKED_KEY = "sk-svcacct-revoked-0d5b8e1f"


def run_with_key(key: str, tmp_path, export, *extra: str, monkeypatch):
    """One run whose environment holds `key`: (exit code, emulator stats, request log, recorded)."""
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", key)
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID,
                  revoked_keys=[REVOKED_KEY]) as emulator:
        exit_code = main(sync_args(emulator, tmp_path, [export], *extra, *IN_PROCESS))
        return exit_code, emulator.stats, emulator.request_log, emulator.recorded_events()


@pytest.mark.parametrize("key, cause", [
    pytest.param("sk-svcacct-wrong-7c41a9e2", "API said: 'Invalid API key'", id="wrong-key"),
    pytest.param(REVOKED_KEY, "the key was revoked", id="revoked-key"),
    pytest.param("sk-proj-advertiser-5f27c0b3", "this looks like an Advertiser API key; create a "
                 "Conversions API key", id="advertiser-key"),
])
def test_a_refused_key_stops_the_run_before_any_row_is_read(
        key, cause, export_20k, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)

    exit_code, _, log, recorded = run_with_key(key, tmp_path, export_20k,
                                               monkeypatch=monkeypatch)

    assert exit_code == 3
    assert log == [(401, 0, False)]                 # the preflight, and nothing after it
    assert recorded == []
    assert list(tmp_path.iterdir()) == []           # no report, no dead-letter file: nothing read
    out, err = capsys.readouterr()
    assert out == ""
    assert "capi-sync: Authentication failed (401): " in err and cause in err
    assert key not in out + err + caplog.text


def test_a_key_refused_at_delivery_stops_the_run_within_two_requests(
        export_20k, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)

    exit_code, stats, log, recorded = run_with_key(REVOKED_KEY, tmp_path, export_20k,
                                                   "--skip-preflight", monkeypatch=monkeypatch)

    assert exit_code == 3
    assert 1 <= stats["requests"] <= 2
    assert stats["by_status"] == {401: stats["requests"]}
    assert recorded == []
    assert not (tmp_path / "report.json").exists()
    out, err = capsys.readouterr()
    assert "rows read" not in out                   # no summary: the run did not finish
    assert "Authentication failed (401): the key was revoked" in err
    assert "Traceback" not in err + caplog.text     # Beam's tracebacks of it are dropped
    assert REVOKED_KEY not in out + err + caplog.text


# -- 4. killed mid-way and run again -----------------------------------------------------------

def _wait_until_group_is_gone(pgid: int, timeout_s: float = 30.0) -> None:
    """Every process of the killed run's group (the launcher and Beam's workers) has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for process in psutil.process_iter(["status"]):
            try:
                if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still running: {alive}")


def _wait_until_quiet(emulator, quiet_s: float, timeout_s: float = 30.0) -> None:
    """Requests the killed run had already sent are answered (into a closed socket) and counted."""
    deadline = time.monotonic() + timeout_s
    last, since = emulator.stats["requests"], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = emulator.stats["requests"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the emulator kept receiving requests after the run was killed")


def test_a_run_killed_mid_way_and_run_again_records_every_row_once(emulator, tmp_path):
    parts = []
    for part in range(3):                      # 3 files x 4 row groups of 250 rows
        path = tmp_path / f"part-{part}.parquet"
        generate_parquet(str(path), 1_000, seed=20 + part, chunk_rows=250)
        parts.append(path)
    all_ids = {event_id for path in parts for event_id in parquet_event_ids(path)}
    latency_s = 0.2
    emulator.set_latency(latency_s)
    first_run = tmp_path / "first"
    command = [sys.executable, "-m", "pipeline",
               *sync_args(emulator, first_run, [tmp_path / "part-*.parquet"], "--batch-size", "100",
                          "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    with (tmp_path / "first.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while emulator.stats["recorded"] == 0 and process.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            assert process.poll() is None, "the run ended before it could be killed"
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    _wait_until_group_is_gone(process.pid)
    _wait_until_quiet(emulator, quiet_s=5 * latency_s)
    delivered_before_kill = set(recorded_ids(emulator))
    assert 0 < len(delivered_before_kill) < len(all_ids)
    assert not (first_run / "report.json").exists()

    emulator.set_latency(0.0)
    assert main(sync_args(emulator, tmp_path / "second", [tmp_path / "part-*.parquet"],
                          "--batch-size", "100", *IN_PROCESS)) == 0

    ids = recorded_ids(emulator)
    assert len(ids) == len(all_ids) == 3_000
    assert set(ids) == all_ids
    stats = emulator.stats
    # The second run re-sent everything once; the API's dedup absorbed what the first delivered.
    assert stats["duplicates"] == len(delivered_before_kill)
    assert stats["events_received"] == 3_000 + len(delivered_before_kill)
    report = read_report(tmp_path / "second" / "report.json")
    assert_reconciled(report, rows=3_000, accepted=3_000, dead_letter_reasons={})
    assert report["retries"] == 0


# -- 5. bad input at scale ---------------------------------------------------------------------

def _iso_minutes_ago(minutes: int) -> str:
    return (NOW - dt.timedelta(minutes=minutes)).isoformat()


# (how many, reason, detail, row builder taking a serial number); line/record numbers follow.
JSONL_BAD_ROWS = [
    (12, "missing_id", "id must be a non-empty string", lambda n: ca_row(None)),
    (8, "mapping_error", "event.id resolved to a list where one value is expected",
     lambda n: ca_row([f"j-list-{n}", "x"])),
    (8, "invalid_amount", "data.amount is text that is not a number",
     lambda n: ca_row(f"j-amount-text-{n}", value="twelve")),
    (6, "invalid_amount", "data.amount is a dict, not a number",
     lambda n: ca_row(f"j-amount-dict-{n}", value={"amount": 12})),
    (10, "invalid_timestamp", "event.timestamp_ms: text is neither ISO-8601 nor an epoch number",
     lambda n: ca_row(f"j-time-{n}", context__event_timestamp="last tuesday")),
    (5, "invalid_timestamp", "event.timestamp_ms: a boolean is not a timestamp",
     lambda n: ca_row(f"j-time-bool-{n}", context__event_timestamp=True)),
    (2, "invalid_custom_event_name",
     "custom_event_name must be 1-64 letters, digits, '_' or '-', starting and ending with a"
     " letter or a digit",
     lambda n: ca_row(f"j-name-1mb-{n}", "x" * MB)),
    (2, "invalid_currency", "data.currency is not an ISO 4217 currency code",
     lambda n: ca_row(f"j-currency-1mb-{n}", currency="U" * MB)),
    # JSON may escape a lone surrogate, which has no UTF-8 form: the API cannot be sent it
    (2, "mapping_error", "event is not valid JSON: str is not valid UTF-8: surrogates not allowed",
     lambda n: ca_row(f"j-surrogate-{n}\ud800")),
    (2, "invalid_currency", "data.currency is not an ISO 4217 currency code",
     lambda n: ca_row(f"j-surrogate-currency-{n}\udc00", currency="XXX1")),
]
# Lines the source cannot read: (how many, bytes, detail after "line N of PATH ").
JSONL_UNREADABLE_LINES = [
    (4, b"{not json", "is not valid JSON: Expecting property name enclosed in double quotes (column 2)"),
    (3, b'["an", "array"]', "is a JSON array, not an object"),
    (3, b'{"event_name": "caf\xe9"}', "is not valid UTF-8 (byte 20 of the line)"),
]
CSV_HEADER = ["event_name", "type", "value", "currency", "context.event_id",
              "context.event_timestamp", "context.page.url", "user.email"]


def _csv_record(event_id: str | None, **fields) -> list:
    values = {"event_name": "purchase", "type": "web", "value": "25.99", "currency": "USD",
              "context.event_id": event_id, "context.event_timestamp": _iso_minutes_ago(30),
              "context.page.url": "https://shop.example.com/checkout/done",
              "user.email": f"buyer.{event_id}@example.com", **fields}
    return [values[name] for name in CSV_HEADER]


# (how many, reason, detail or None for a source error, record builder)
CSV_BAD_RECORDS = [
    (10, "missing_id", "id must be a non-empty string", lambda n: _csv_record(None)),
    (10, "invalid_timestamp", "event.timestamp_ms: text is neither ISO-8601 nor an epoch number",
     lambda n: _csv_record(f"c-time-{n}", **{"context.event_timestamp": "31/02/2026 25:61"})),
    (6, "invalid_amount", "data.amount is text that is not a number",
     lambda n: _csv_record(f"c-amount-{n}", value="12,5")),
    (9, "mapping_error", None,
     lambda n: _csv_record(f"c-utf8-{n}", **{"user.email": b"caf\xe9@example.com"})),
    (3, "mapping_error", None, lambda n: ["purchase", "web", "25.99"]),
]


def _spread(bad: list, good: list, every: int) -> list[tuple[bool, object]]:
    """Good items with one bad item after every `every`-1 good ones: [(is_bad, item), ...]."""
    good_iter, out = iter(good), []
    for item in bad:
        out.extend((False, next(good_iter)) for _ in range(every - 1))
        out.append((True, item))
    out.extend((False, item) for item in good_iter)
    return out


def _jsonl_export(path: pathlib.Path):
    """3,000 good rows (six with a 1 MB source_url path, in one request; a query is not sent) and
    the bad rows above."""
    good = [ca_row(f"j-good-{n}") for n in range(3_000)]
    for n in range(100, 106):
        good[n]["context"]["page"]["url"] = f"https://shop.example.com/{n}/" + "a" * MB
    bad = [(reason, detail, make(n)) for count, reason, detail, make in JSONL_BAD_ROWS
           for n in range(count)]
    bad += [("mapping_error", detail, raw) for count, raw, detail in JSONL_UNREADABLE_LINES
            for _ in range(count)]
    lines, expected_bad, good_ids = [], {}, []
    for line_number, (is_bad, item) in enumerate(_spread(bad, good, every=40), start=1):
        source = f"{path}#row={line_number}"
        if is_bad:
            reason, detail, row = item
            if isinstance(row, bytes):
                detail = f"line {line_number} of {path} {detail}"
                event_id = None
            else:
                event_id = row["context"]["event_id"] if isinstance(
                    row["context"]["event_id"], str) else None
            expected_bad[source] = (reason, detail, event_id)
            lines.append(row)
        else:
            good_ids.append(item["context"]["event_id"])
            lines.append(item)
    write_jsonl(path, lines)
    return good_ids, expected_bad


def _csv_export(path: pathlib.Path):
    good = [_csv_record(f"c-good-{n}") for n in range(2_000)]
    bad = [(reason, detail, make(n)) for count, reason, detail, make in CSV_BAD_RECORDS
           for n in range(count)]
    records, expected_bad, good_ids = [], {}, []
    for number, (is_bad, item) in enumerate(_spread(bad, good, every=30), start=1):
        source = f"{path}#row={number}"
        if is_bad:
            reason, detail, record = item
            if detail is None:      # the source cannot read it
                where = f"CSV record {number} (line {number + 1}) of {path}"
                detail = (f"{where} is not valid UTF-8" if len(record) == len(CSV_HEADER)
                          else f"{where} has 3 fields; the header has {len(CSV_HEADER)} fields")
                event_id = None
            else:
                event_id = record[CSV_HEADER.index("context.event_id")]
            expected_bad[source] = (reason, detail, event_id)
            records.append(record)
        else:
            good_ids.append(item[CSV_HEADER.index("context.event_id")])
            records.append(item)
    write_csv(path, CSV_HEADER, records)
    return good_ids, expected_bad


def test_bad_rows_at_scale_become_dead_letters_and_good_rows_are_delivered(emulator, tmp_path):
    jsonl, csv = tmp_path / "events.jsonl", tmp_path / "export.csv"
    jsonl_good, jsonl_bad = _jsonl_export(jsonl)
    csv_good, csv_bad = _csv_export(csv)
    expected_bad = {**jsonl_bad, **csv_bad}

    assert main(sync_args(emulator, tmp_path / "out", [jsonl, csv], *IN_PROCESS)) == 0

    recorded = recorded_ids(emulator)
    assert len(recorded) == len(jsonl_good) + len(csv_good) == 5_000
    assert set(recorded) == set(jsonl_good) | set(csv_good)
    letters = read_dead_letters(tmp_path / "out")
    assert len(letters) == len(expected_bad) == 105
    assert {letter["source"]: (letter["reason"], letter["detail"], letter["event_id"])
            for letter in letters} == expected_bad
    # a few by hand, so the builders above cannot hide a shifted row number
    assert expected_bad[f"{jsonl}#row=40"] == ("missing_id", "id must be a non-empty string", None)
    assert expected_bad[f"{csv}#row=30"] == ("missing_id", "id must be a non-empty string", None)
    assert expected_bad[f"{csv}#row=900"] == (
        "mapping_error", f"CSV record 900 (line 901) of {csv} is not valid UTF-8", None)
    assert expected_bad[f"{jsonl}#row=2320"] == (
        "mapping_error", f"line 2320 of {jsonl} is not valid JSON: Expecting property name "
                         "enclosed in double quotes (column 2)", None)
    # Each step writes its own files, in the workers (no record passes through the launcher).
    by_step = read_dead_letters_by_step(tmp_path / "out")
    unreadable = by_step["unreadable"]
    assert len(unreadable) == 22 and all(
        letter["reason"] == "mapping_error" and letter["event"] is None
        and letter["source"].split("#")[0] in letter["detail"] for letter in unreadable)
    assert sorted((letter["reason"], letter["detail"][:37]) for letter in by_step["delivery"]) == \
        [("mapping_error", "event is not valid JSON: str is not v")] * 2
    assert len(by_step["mapping"]) == 105 - 22 - 2 and set(by_step) == {
        "unreadable", "mapping", "delivery"}
    report = read_report(tmp_path / "out" / "report.json")
    assert_reconciled(report, rows=5_000 + 105, accepted=5_000, dead_letter_reasons={
        "invalid_amount": 8 + 6 + 6, "invalid_currency": 2 + 2, "invalid_custom_event_name": 2,
        "invalid_timestamp": 10 + 5 + 10, "mapping_error": 8 + 2 + 4 + 3 + 3 + 9 + 3,
        "missing_id": 12 + 10})
    assert report["http_statuses"]["413"] >= 1     # the 1 MB URLs made a request too large
