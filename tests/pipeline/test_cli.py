"""The command line: help, the default mapping, fail-fast errors, validate-only, the demo."""
from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from pipeline.cli import INTERRUPTED, TERMINATED, main
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import ca_row, read_report, write_parquet
from transforms.mapping import default_mapping_text

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


def test_help_lists_the_contract_options(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--input", "--bigquery-table", "--bigquery-query", "--sql-url", "--sql-query",
                 "--mapping", "--pixel-id", "--api-key-env", "--api-key-secret", "--endpoint",
                 "--validate-only", "--batch-size", "--dead-letter", "--report", "--dedupe",
                 "--max-in-flight"):
        assert flag in out


def test_print_default_mapping_prints_the_packaged_yaml(capsys):
    assert main(["--print-default-mapping"]) == 0
    out = capsys.readouterr().out
    assert out == default_mapping_text()
    assert yaml.safe_load(out)["event"]["id"] == "context.event_id"


@pytest.mark.parametrize("name, file_name", [
    ("ga4", "ga4.yaml"), ("segment", "segment.yaml"), ("rudderstack", "segment.yaml"),
    ("snowplow", "snowplow.yaml"), ("shopify", "shopify.yaml")])
def test_print_mapping_prints_a_preset(capsys, name, file_name):
    assert main(["--print-mapping", name]) == 0
    out = capsys.readouterr().out
    packaged = pathlib.Path(__file__).parents[2] / "transforms" / "presets" / file_name
    assert out == packaged.read_text(encoding="utf-8")


def test_print_mapping_of_an_unknown_name_exits_2(capsys):
    assert main(["--print-mapping", "mixpanel"]) == 2
    err = capsys.readouterr().err
    assert "ga4, segment, rudderstack, snowplow, shopify" in err and "'mixpanel'" in err


def test_bad_options_exit_2_before_reading_with_no_traceback(capsys, tmp_path):
    assert main(["--input", str(tmp_path / "missing.parquet"), "--batch-size", "5000"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size must be within 1..1000" in err
    assert "Traceback" not in err


def test_bad_mapping_file_exits_2_naming_the_file_and_key(capsys, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nevent:\n  idd: order_id\n")
    assert main(["--input", str(tmp_path / "x.parquet"), "--mapping", str(mapping)]) == 2
    err = capsys.readouterr().err
    assert str(mapping) in err and "idd" in err
    assert "Traceback" not in err


def test_validate_only_records_nothing_and_counts_validated_events(emulator, tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1"), ca_row("order_2")])
    code = main(["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
                 "--validate-only", "--report", str(tmp_path / "report.json"),
                 "--dead-letter", str(tmp_path / "dead" / "dead"), *IN_PROCESS])
    assert code == 0
    assert emulator.recorded_events(EMULATOR_PIXEL_ID) == []
    assert all(validate_only for _, _, validate_only in emulator.request_log)
    report = read_report(tmp_path / "report.json")
    assert (report["events_accepted"], report["validate_only"], report["reconciled"]) == (2, True, True)
    out = capsys.readouterr().out
    assert "events accepted" in out and "reconciled" in out


def test_demo_runs_the_real_pipeline_on_the_bundled_example(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *IN_PROCESS]) == 0
    capsys.readouterr()
    assert main(["demo", *IN_PROCESS]) == 0     # again: it replaces its own dead letters
    out = capsys.readouterr().out
    recorded = json.loads((tmp_path / "capi-sync-demo" / "recorded_events.json").read_text())
    assert len(recorded) == 192 and "purchase_10044" not in {e["id"] for e in recorded}
    assert read_report(tmp_path / "capi-sync-demo" / "report.json")["reconciled"] is True
    assert "rows read                             200" in out
    assert "events accepted                       192" in out
    assert "  rejected_by_api                       1" in out
    assert "emulator recorded 192 events for pixel px_demo" in out
    assert "dead letter: {" in out
    assert "reconciled: rows read = accepted + dead-lettered + skipped" in out
    # Every dead letter's source names a row of the export kept beside it.
    export = tmp_path / "capi-sync-demo" / "commanders_act_export.parquet"
    letters = [json.loads(line) for path in (tmp_path / "capi-sync-demo" / "dead").glob("*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(letters) == 8
    assert {letter["source"].split("#row=")[0] for letter in letters} == {str(export)}
    assert export.is_file()


def test_a_shell_expanded_glob_reads_every_path(emulator, tmp_path, monkeypatch):
    # `--input exports/*.parquet` without quotes: the shell passes three paths to one --input.
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    paths = [str(write_parquet(tmp_path / f"part{n}.parquet", [ca_row(f"order_{n}_{i}") for i in range(3)]))
             for n in range(3)]
    code = main(["--input", *paths, "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
                 "--report", str(tmp_path / "report.json"), "--dead-letter", str(tmp_path / "dead" / "dead"),
                 *IN_PROCESS])
    assert code == 0
    assert len(emulator.recorded_events(EMULATOR_PIXEL_ID)) == 9
    assert read_report(tmp_path / "report.json")["rows_read"] == 9


def test_an_option_that_does_not_exist_exits_2_with_the_key_masked(capsys, tmp_path):
    key = "sk-svcacct-REALLOOKINGKEY123"
    assert main(["--input", str(tmp_path / "a.parquet"), "--api-key", key, *IN_PROCESS]) == 2
    captured = capsys.readouterr()
    assert "unknown option --api-key sk-svcacct-[masked]" in captured.err
    assert "REALLOOKINGKEY123" not in captured.err + captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("extra, name, message", [
    ([], "missing.parquet",
     "--input {path}: no such file. A path without a wildcard must name an existing file; a "
     "glob may match none."),
    ([], "exports",
     "--input {path}: no such file (a folder? name its files: {path}/*.parquet). A path "
     "without a wildcard must name an existing file; a glob may match none."),
    (["--input-format", "dead-letter"], "dead-00000.jsonl",
     "--input {path}: no such file. A path without a wildcard must name an existing file; a "
     "glob may match none."),
])
def test_an_input_path_that_names_no_file_exits_2_before_anything_is_sent(
        emulator, tmp_path, monkeypatch, capsys, extra, name, message):
    # Before, the run started and Beam's matcher failed in the worker: a traceback ending in
    # `ValueError: ALLOW_IF_WILDCARD`, exit 1, after the preflight request.
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    path = str(tmp_path / name)
    argv = ["--input", str(export), path, *extra, "--pixel-id", EMULATOR_PIXEL_ID,
            "--endpoint", emulator.url, "--dead-letter", str(tmp_path / "dead" / "dead"),
            *IN_PROCESS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"capi-sync: configuration error: {message.format(path=path)}\n" in err
    assert "Traceback" not in err
    assert emulator.request_log == []


def test_an_input_that_is_a_local_folder_exits_2_naming_its_files(emulator, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    folder = tmp_path / "exports"
    folder.mkdir()
    write_parquet(folder / "part-0.parquet", [ca_row("order_1")])
    argv = ["--input", str(folder), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(tmp_path / "dead" / "dead"), *IN_PROCESS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"capi-sync: configuration error: --input {folder} is a folder: name its files, "
            f"e.g. {folder}/*.parquet (or {folder}/ for every file in it)\n") in err
    assert "Traceback" not in err
    assert emulator.request_log == []


def test_dead_letter_files_given_as_rows_exit_2_asking_for_the_dead_letter_format(
        emulator, tmp_path, monkeypatch, capsys):
    # Before, each dead letter was mapped as an export row and dead-lettered again
    # (invalid_type: no event name), exit 6.
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    letters = tmp_path / "dead-delivery-00000.jsonl"
    letters.write_bytes(b"\xef\xbb\xbf\n" + json.dumps(
        {"reason": "retries_exhausted", "detail": "gave up", "event_id": "order_1",
         "source": "x.parquet#row=1", "event": {"id": "order_1"}, "pixel_id": None}).encode()
        + b"\n")
    rows = tmp_path / "rows.jsonl"     # export rows that merely carry a reason
    rows.write_text(json.dumps({"reason": "promo", "detail": "x", "source": "web"}) + "\n")
    base = ["--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(tmp_path / "dead" / "dead"), *IN_PROCESS]
    assert main(["--input", str(tmp_path / "dead-*.jsonl"), *base]) == 2
    err = capsys.readouterr().err
    assert (f"capi-sync: configuration error: {letters} holds capi-sync dead letters, not export "
            f"rows: to send their events again, add --input-format dead-letter\n") in err
    assert "Traceback" not in err
    assert emulator.request_log == []
    assert main(["--input", str(rows), "--report", str(tmp_path / "report.json"), *base]) == 6
    assert read_report(tmp_path / "report.json")["rows_read"] == 1


def test_no_pixel_id_and_no_mapped_pixel_exits_2_before_anything_is_sent(
        emulator, tmp_path, monkeypatch, capsys):
    # Before, the run read and mapped every row, then failed in the sink with a traceback.
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    assert main(["--input", str(export), "--endpoint", emulator.url,
                 "--dead-letter", str(tmp_path / "dead" / "dead"), *IN_PROCESS]) == 2
    err = capsys.readouterr().err
    assert ("capi-sync: configuration error: No pixel to send to: give --pixel-id (the pixel id "
            "of your Conversions API key, px_…), or map pixel_id in the mapping (pixel_id: "
            "<column>) to send each row to its own pixel.\n") in err
    assert "Traceback" not in err
    assert emulator.request_log == []


def test_a_dead_letter_prefix_holding_an_earlier_runs_files_exits_2_and_keeps_them(
        emulator, tmp_path, monkeypatch, capsys):
    # Before, a daily job with a fixed --dead-letter prefix replaced yesterday's dead letters
    # with today's when the run finished.
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1"), ca_row(None)])
    prefix = tmp_path / "dead" / "dead"
    argv = ["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(prefix), *IN_PROCESS]
    assert main(argv) == 0
    [written] = (tmp_path / "dead").glob("dead-*.jsonl")
    first = written.read_text()
    assert '"missing_id"' in first
    requests = len(emulator.request_log)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (f"capi-sync: configuration error: --dead-letter {prefix} already holds dead letters "
            f"of an earlier run ({written}): this run's would replace them. Give each run its "
            f"own prefix") in err
    assert written.read_text() == first and len(emulator.request_log) == requests


def test_the_default_dead_letter_folder_is_the_runs_own(tmp_path, monkeypatch):
    # Two scheduled runs started in the same second from one folder used to share it.
    from pipeline.run import plan_run
    monkeypatch.chdir(tmp_path)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    now = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.timezone.utc)
    _, plan = plan_run(["--input", str(export), "--pixel-id", "px_1", *IN_PROCESS], now=now)
    assert plan.dead_letter_prefix == os.path.join(
        "dead_letters", f"20261201T020000Z-{os.getpid()}", "dead")


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in, even by root (who ignores permission bits): sysfs."""
    if os.geteuid() == 0:
        yield pathlib.Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("flag, name, what", [
    ("--report", "report.json", "--report"),
    ("--state-file", "state.json", "--state-file"),
    ("--dead-letter", "dead/dead", "--dead-letter"),
])
def test_an_output_that_cannot_be_written_exits_2_before_anything_is_sent(
        emulator, tmp_path, monkeypatch, capsys, read_only_dir, flag, name, what):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    location = read_only_dir / name
    argv = ["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--skip-preflight", "--dead-letter", str(tmp_path / "dead" / "dead"), flag, str(location),
            *IN_PROCESS]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {what} {location} cannot be written: no file can be created in " in err
    assert "Traceback" not in err
    assert emulator.request_log == []


def test_a_report_that_fails_at_the_end_still_prints_the_summary_and_exits_7(
        emulator, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1"), ca_row("order_2")])
    state = tmp_path / "state.json"
    code = main(["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
                 "--report", "/dev/full", "--state-file", str(state),
                 "--dead-letter", str(tmp_path / "dead" / "dead"), *IN_PROCESS])
    captured = capsys.readouterr()
    assert code == 7
    assert len(emulator.recorded_events(EMULATOR_PIXEL_ID)) == 2
    assert re.search(r"^events accepted +2$", captured.out, re.MULTILINE)
    assert ("capi-sync: not saved: the report was not written to /dev/full: No space left on device"
            in captured.err)
    assert "Traceback" not in captured.err
    assert json.loads(state.read_text())["last_run"]["events_accepted"] == 2   # delivered: it advances


def test_a_future_watermark_exits_2_naming_the_state_file(tmp_path, capsys, emulator):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"watermark": "2999-01-01T00:00:00+00:00"}))
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    assert main(["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
                 "--state-file", str(state), *IN_PROCESS]) == 2
    err = capsys.readouterr().err
    assert f"State file {state} holds watermark 2999-01-01T00:00:00+00:00, later than now" in err
    assert emulator.request_log == []
    assert json.loads(state.read_text()) == {"watermark": "2999-01-01T00:00:00+00:00"}


@pytest.mark.parametrize("stop, line, code, extra", [
    # what a terminal does on Ctrl-C: SIGINT to the whole process group
    (lambda pid: os.killpg(pid, signal.SIGINT), INTERRUPTED, 130, []),
    # what a scheduler's timeout or a container runtime does: SIGTERM to the launcher alone.
    # Before, the launcher died at once (exit -15) and each worker printed gRPC tracebacks.
    (lambda pid: os.kill(pid, signal.SIGTERM), TERMINATED, 143, []),
    # Beam's own workers (plain DirectRunner, as on a Beam version the tests did not run with):
    # before, they outlived the launcher by a moment and each printed gRPC tracebacks.
    (lambda pid: os.kill(pid, signal.SIGTERM), TERMINATED, 143, ["--no-warm-workers"]),
], ids=["ctrl-c", "sigterm", "sigterm-plain-direct-runner"])
def test_a_stop_signal_prints_one_line_and_leaves_nothing_half_written_or_running(
        emulator, tmp_path, stop, line, code, extra):
    rows = [ca_row(f"order_{i}" if i % 10 else None) for i in range(4_000)]   # 1 in 10 dead-lettered
    export = write_parquet(tmp_path / "export.parquet", rows, row_group_size=500)
    # Sending everything takes at least 72 requests / 8 in flight x 0.5 s: the signal lands
    # well inside the run even on a loaded machine.
    emulator.set_latency(0.5)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline", "--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID,
               "--endpoint", emulator.url, "--batch-size", "50", "--report", str(out / "report.json"),
               "--state-file", str(out / "state.json"), "--dead-letter", str(out / "dead" / "dead"),
               "--direct_num_workers", "2", "--direct_running_mode", "multi_processing", *extra]
    env = dict(os.environ, OPENAI_CAPI_API_KEY=EMULATOR_API_KEY, PYTHONPATH=str(REPO_ROOT))
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while emulator.stats["recorded"] == 0 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before the signal"
        workers = psutil.Process(process.pid).children(recursive=True)
        assert workers, "the run has no worker process"
        stop(process.pid)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Requests in flight at Ctrl-C are answered into closed sockets: let the emulator finish
    # them here, not while the next test captures stderr.
    last, quiet_since, deadline = emulator.stats["requests"], time.monotonic(), time.monotonic() + 30
    while time.monotonic() - quiet_since < 1.0 and time.monotonic() < deadline:
        time.sleep(0.05)
        if emulator.stats["requests"] != last:
            last, quiet_since = emulator.stats["requests"], time.monotonic()
    assert process.returncode == code
    # What the run printed before the signal (the mapping's warnings) stays; after it, one line.
    assert stderr.decode().endswith("\n" + line + "\n")
    assert psutil.wait_procs(workers, timeout=10)[1] == []      # no worker is left running
    assert "Traceback" not in stderr.decode() and "ERROR" not in stderr.decode()
    assert stdout == b""
    assert not (out / "report.json").exists() and not (out / "state.json").exists()
    # No dead-letter file (dead-<step>-NNNNN.jsonl): Beam renames them into place only at the end;
    # what a worker had written is in Beam's temporary folders.
    assert list((out / "dead").glob("dead-*")) == []
    assert all(path.name.startswith("beam-temp-dead-") for path in (out / "dead").glob("*"))
    assert 0 < emulator.stats["recorded"] < 3_600


def test_a_look_alike_character_in_a_mapping_path_exits_2_before_reading(capsys, tmp_path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("extends: default\nuser:\n  fields:\n    email: us\u0435r.email\n", encoding="utf-8")
    assert main(["--input", str(tmp_path / "missing.parquet"), "--mapping", str(mapping), *IN_PROCESS]) == 2
    err = capsys.readouterr().err
    assert "U+0435 CYRILLIC SMALL LETTER IE at position 3" in err and str(mapping) in err
    assert "Traceback" not in err


def test_the_demo_refuses_an_unknown_option_with_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--bogus", *IN_PROCESS]) == 2
    err = capsys.readouterr().err
    assert "capi-sync: configuration error: unknown option --bogus." in err
    assert "Traceback" not in err


def test_preview_refuses_unknown_options_and_reads_the_state_file_like_a_run(capsys, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    assert main(["preview", "--input", str(export), "--pixelid", "px_1"]) == 2
    assert "unknown option --pixelid px_1 (did you mean --pixel-id?)" in capsys.readouterr().err
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"watermark": "2999-01-01T00:00:00+00:00"}))
    assert main(["preview", "--input", str(export), "--state-file", str(state)]) == 2
    assert f"State file {state} holds watermark 2999-01-01T00:00:00+00:00" in capsys.readouterr().err


def test_preview_help_is_the_preview_usage_not_the_run_help(capsys):
    # Before, `capi-sync preview --help` printed the run's help, which has no --rows.
    assert main(["preview", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: capi-sync preview <source options> [--mapping FILE|PRESET] "
                          "[--rows N]")
    assert "--rows, default 5" in out and "Nothing is sent" in out
    assert "--pixel-id" not in out
