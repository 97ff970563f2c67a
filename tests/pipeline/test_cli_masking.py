"""No key echoed by the command line (issue 12, point 13): every source of echo a user can hit.

Each run is in-process and stops before any data is read; a hostile server on loopback stands
in for the API, so a test can also say that nothing was sent.
"""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.report import write_report
from tests.connectors.hostile import HostileServer, answer
from tests.pipeline.builders import ca_row, write_parquet

KEY = "sk-svcacct-ECHOED-0123456789abcdefXYZ"


@pytest.fixture
def export(tmp_path):
    return write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main([*args, "--direct_num_workers", "1", "--direct_running_mode", "in_memory"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("api_key_env", [
    f"OPENAI_CAPI_API_KEY={KEY}",      # the whole `export` line pasted
    f" {KEY}",                        # the key itself, with the space a copy picked up
    f"Bearer {KEY}",                  # the header value
])
def test_a_key_given_as_the_variable_name_is_never_printed(capsys, monkeypatch, tmp_path, export,
                                                           api_key_env):
    monkeypatch.delenv("OPENAI_CAPI_API_KEY", raising=False)
    with HostileServer(answer(200)) as server:
        code, output = run_cli(capsys, "--input", str(export), "--pixel-id", "px_test",
                               "--endpoint", server.url, "--api-key-env", api_key_env,
                               "--dead-letter", str(tmp_path / "dead" / "dead"))
        assert server.received == []
    assert code == 2
    assert KEY not in output
    assert "ECHOED" not in output


@pytest.mark.parametrize("template", [
    "http://capi:{key}@127.0.0.1:{port}/v1/events",
    "http://{key}@127.0.0.1:{port}/v1/events",
    "http://127.0.0.1:{port}/v1/events?k={key}",
    "http://127.0.0.1:{port}/v1/events?api_key={key}&x=1",
])
def test_an_endpoint_holding_a_key_is_refused_before_anything_is_sent(capsys, monkeypatch,
                                                                      tmp_path, export, template):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", "sk-svcacct-the-real-one")
    with HostileServer(answer(404, b"not found", content_type="text/plain")) as server:
        endpoint = template.format(key=KEY, port=server.origin.rsplit(":", 1)[1])
        code, output = run_cli(capsys, "--input", str(export), "--pixel-id", "px_test",
                               "--endpoint", endpoint, "--dead-letter", str(tmp_path / "dead" / "d"))
        assert server.received == []         # no preflight, no event: nothing echoed anywhere
    assert code == 2
    assert "--endpoint must not carry" in output
    assert KEY not in output and "ECHOED" not in output
    assert not (tmp_path / "dead").exists()


def test_the_report_file_masks_what_a_user_typed(tmp_path):
    path = tmp_path / "report.json"
    write_report({"rows_read": 1, "report_path": f"/reports/{KEY}.json"}, str(path))
    assert KEY not in path.read_text()
    assert json.loads(path.read_text())["report_path"] == "/reports/sk-svcacct-[masked].json"
