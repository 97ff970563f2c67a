"""Whole runs against a hostile API on loopback (tests/connectors/hostile.py): what the exit code,
the report and the watermark say when the answers are not the API's (issue 12, points 4-6)."""
from __future__ import annotations

import _thread
import json
import threading

import pytest

from pipeline.cli import main
from tests.connectors.hostile import HostileServer, answer
from tests.pipeline.builders import ca_row, read_report, write_parquet

KEY = "sk-svcacct-hostile-run-0123456789"
IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", KEY)


def run_cli(capsys, server, tmp_path, rows: int, *extra: str) -> tuple[int, str]:
    """The command line on `rows` valid rows, under a deadline: a run still going after 120 s
    is interrupted (as Ctrl-C would) and the test fails instead of hanging. main() runs on the
    main thread, where it installs its Ctrl-C handler."""
    export = write_parquet(tmp_path / "export.parquet", [ca_row(f"order_{n}") for n in range(rows)])
    argv = ["--input", str(export), "--pixel-id", "px_test", "--endpoint", server.url,
            "--dead-letter", str(tmp_path / "dead" / "dead"), "--report",
            str(tmp_path / "report.json"), "--progress-seconds", "0", *IN_PROCESS, *extra]
    hung = threading.Event()

    def interrupt():
        hung.set()
        _thread.interrupt_main()

    watchdog = threading.Timer(120, interrupt)
    watchdog.daemon = True
    watchdog.start()
    try:
        code = main(argv)
    except KeyboardInterrupt:
        code = None
    finally:
        watchdog.cancel()
    assert not hung.is_set(), "the run hangs"
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("wrong", [
    answer(404, b'{"error":{"message":"Not Found"}}'),
    answer(308, b"", headers={"Location": "https://elsewhere.example/v1/events"}),
])
def test_a_wrong_endpoint_mid_run_stops_it_and_keeps_the_watermark(capsys, tmp_path, wrong):
    state = tmp_path / "state.json"
    # preflight and the first request are accepted; then the endpoint says it is not the API
    with HostileServer(answer(200), answer(200), wrong) as server:
        code, output = run_cli(capsys, server, tmp_path, 6, "--batch-size", "2",
                               "--max-in-flight", "1", "--state-file", str(state))
        requests = len(server.received)

    assert code == 3
    assert "capi-sync: run stopped: Wrong endpoint (HTTP" in output
    assert "Traceback" not in output
    assert not state.exists()               # the watermark never moves past undelivered rows
    assert requests == 3                    # nothing more was sent once the endpoint was wrong
    assert KEY not in output


def test_2xx_answers_that_are_not_json_are_counted_and_hold_the_watermark(capsys, caplog,
                                                                          tmp_path):
    state = tmp_path / "state.json"
    portal = answer(200, b"<html><body>Please log in to the hotel WiFi</body></html>",
                    content_type="text/html")
    with HostileServer(portal) as server:
        code, output = run_cli(capsys, server, tmp_path, 4, "--batch-size", "2",
                               "--state-file", str(state))

    report = read_report(tmp_path / "report.json")
    assert (report["events_accepted"], report["suspicious_2xx_bodies"]) == (4, 2)
    assert "WARNING: 2 answers were 2xx with a body that is not JSON" in output
    warnings = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
    assert warnings and all("text/html" in w and "captive portal" in w for w in warnings)
    assert json.loads((tmp_path / "report.json").read_text())["reconciled"] is True
    assert not state.exists()         # the next run re-sends them; the API dedups on ids
    assert code == 0


def test_an_untrusted_certificate_at_the_preflight_is_one_line_and_exit_2(
        capsys, tmp_path, tls, monkeypatch):
    # Before: three connection_error retries, then a line ending in urllib3's
    # "Max retries exceeded ... SSLCertVerificationError(...)".
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with HostileServer(answer(200), tls=tls[0]) as server:
        code, output = run_cli(capsys, server, tmp_path, 2)
        requests = len(server.received)
    assert code == 2
    assert (f"capi-sync: Wrong endpoint (TLS certificate of {server.url} not verified: "
            "self-signed certificate): this is not a certificate this machine trusts for the API."
            " Behind a proxy that inspects TLS, give its CA bundle in REQUESTS_CA_BUNDLE=") in output
    assert "retry" not in output and "Traceback" not in output
    assert requests == 0 and not (tmp_path / "report.json").exists()


def test_a_wrong_endpoint_at_the_preflight_is_a_configuration_error(capsys, tmp_path):
    with HostileServer(answer(404, b"<h1>Not Found</h1>", content_type="text/html")) as server:
        code, output = run_cli(capsys, server, tmp_path, 2)
        requests = len(server.received)

    assert code == 2
    assert "capi-sync: Wrong endpoint (HTTP 404 from http://127.0.0.1:" in output
    assert requests == 1                       # the preflight; no row was read or sent
    assert not (tmp_path / "report.json").exists()
