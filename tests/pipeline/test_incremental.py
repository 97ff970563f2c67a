import datetime as dt
import http.server
import json
import threading
import urllib.parse

import pytest

from pipeline.incremental import (
    StateFileChanged,
    effective_since,
    parse_since,
    read_watermark,
    write_watermark,
)
from transforms.errors import ConfigError

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("36h", NOW - dt.timedelta(hours=36)),
    ("2d", NOW - dt.timedelta(days=2)),
    ("90m", NOW - dt.timedelta(minutes=90)),
    ("2026-11-20T00:00:00Z", dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)),
    ("2026-11-20T01:00:00+01:00", dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)),
    ("2026-11-20 00:00:00", dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)),
])
def test_since_takes_durations_and_timestamps(text, expected):
    assert parse_since(text, NOW) == expected


def test_since_that_is_neither_names_both_forms():
    with pytest.raises(ConfigError, match="36h.*ISO"):
        parse_since("yesterday", NOW)


def test_since_in_the_future_is_a_configuration_error():
    # Before, `--since 2027-01-01` ran and dead-lettered or skipped every row.
    later = NOW + dt.timedelta(hours=2)
    with pytest.raises(ConfigError) as raised:
        parse_since(later.strftime("%Y-%m-%d %H:%M:%S"), NOW)
    assert str(raised.value) == (
        f"--since {later.strftime('%Y-%m-%d %H:%M:%S')!r} is in the future "
        f"({later.replace(microsecond=0).isoformat()}; now is "
        f"{NOW.replace(microsecond=0).isoformat()}): no row could be sent. Give a past time "
        f"(times without a zone are UTC) or a duration such as 36h.")
    assert parse_since(NOW.isoformat(), NOW) == NOW          # now itself is allowed


def test_lower_bound_is_never_before_the_api_window():
    ten_days_ago = NOW - dt.timedelta(days=10)
    assert effective_since(ten_days_ago, None, NOW) == NOW - dt.timedelta(days=7)
    assert effective_since(None, None, NOW) == NOW - dt.timedelta(days=7)


def test_lower_bound_is_the_latest_of_since_and_watermark():
    since, watermark = NOW - dt.timedelta(hours=36), NOW - dt.timedelta(hours=20)
    assert effective_since(since, watermark, NOW) == watermark
    assert effective_since(watermark, since, NOW) == watermark


def test_watermark_round_trips_through_the_state_file(tmp_path):
    path = str(tmp_path / "state.json")
    assert read_watermark(path, NOW) is None
    write_watermark(path, NOW, {"events_accepted": 3}, previous=None)
    assert read_watermark(path, NOW) == NOW
    assert json.loads((tmp_path / "state.json").read_text())["last_run"] == {"events_accepted": 3}


def test_the_state_file_is_replaced_whole_never_rewritten_in_place(tmp_path):
    path = tmp_path / "state.json"
    write_watermark(str(path), NOW - dt.timedelta(hours=1), {}, previous=None)
    before = path.stat().st_ino
    write_watermark(str(path), NOW, {}, previous=NOW - dt.timedelta(hours=1))
    assert path.stat().st_ino != before           # a new file renamed into place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]


def test_a_future_watermark_is_a_configuration_error_naming_the_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"watermark": "2026-11-27T12:00:00+00:00"}))
    with pytest.raises(ConfigError) as refused:
        read_watermark(str(path), NOW)
    message = str(refused.value)
    assert message.startswith(f"State file {path} holds watermark 2026-11-27T12:00:00+00:00, "
                              "later than now (2026-11-26T12:00:00+00:00)")
    assert "delete the file" in message


@pytest.mark.parametrize("content, why", [
    ("[1, 2]", 'it is not JSON with a "watermark" time'),
    ("{", 'it is not JSON with a "watermark" time'),
    ('{"watermark": 17}', 'it is not JSON with a "watermark" time'),
    ('{"watermark": "2026-11-20"}', "its watermark '2026-11-20' has no time zone"),
    ('{"watermark": "2026-11-20T06:00:00"}', "its watermark '2026-11-20T06:00:00' has no time zone"),
    (None, "it cannot be read (Is a directory)"),
    ("x" * 70_000, "it is larger than 65,536 bytes"),
])
def test_a_foreign_state_file_is_refused_with_the_fix(tmp_path, content, why):
    path = tmp_path / "state.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        read_watermark(str(path), NOW)
    assert str(refused.value) == (
        f"State file {path} is not a capi-sync watermark file ({why}; expected "
        '{"watermark": "2026-11-20T06:00:00+00:00"}); fix or delete it.')


def test_a_device_that_never_ends_is_refused_not_read_forever():
    with pytest.raises(ConfigError, match="is not a capi-sync watermark file .it is larger than"):
        read_watermark("/dev/zero", NOW)


def test_a_run_does_not_overwrite_a_watermark_another_run_advanced(tmp_path):
    # Runs A and B both start from the same watermark; A finishes first and advances it.
    path = str(tmp_path / "state.json")
    start = NOW - dt.timedelta(hours=24)
    write_watermark(path, start, {}, previous=None)
    write_watermark(path, NOW - dt.timedelta(minutes=5), {"run": "A"}, previous=start)
    with pytest.raises(StateFileChanged, match="another capi-sync run uses the same file"):
        write_watermark(path, NOW, {"run": "B"}, previous=start)
    assert read_watermark(path, NOW) == NOW - dt.timedelta(minutes=5)


def test_a_held_lock_makes_the_writer_give_up_at_its_deadline_without_writing(tmp_path, monkeypatch):
    import fcntl

    from pipeline import incremental
    monkeypatch.setattr(incremental, "_LOCK_TIMEOUT_S", 0.2)
    path = str(tmp_path / "state.json")
    with open(path + ".lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(StateFileChanged, match="held .*state.json.lock"):
            write_watermark(path, NOW, {}, previous=None)
    assert read_watermark(path, NOW) is None


class FakeGcs:
    """A loopback stand-in for the three GCS JSON-API calls the state file makes (object
    metadata, media download, multipart upload), with generations and `ifGenerationMatch`,
    reached by google-cloud-storage itself through STORAGE_EMULATOR_HOST."""

    def __init__(self):
        self.objects: dict[str, tuple[bytes, int]] = {}     # name -> (data, generation)
        self.uploads: list[dict] = []
        self.before_upload = lambda: None                    # a concurrent writer's moment
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body=b"", content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                media = url.path.startswith("/download/")
                name = urllib.parse.unquote(url.path.split("/o/", 1)[1])
                if name not in fake.objects:
                    return self._answer(404, b'{"error": {"code": 404, "message": "No such object"}}')
                data, generation = fake.objects[name]
                if "ifGenerationMatch" in query and int(query["ifGenerationMatch"][0]) != generation:
                    return self._answer(412, b'{"error": {"code": 412, "message": "Precondition"}}')
                if media:
                    return self._answer(200, data, "application/octet-stream")
                return self._answer(200, json.dumps(fake.metadata(name)).encode())

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
                parts = [part for part in body.split(b"--" + boundary) if part.strip(b"-\r\n")]
                metadata = json.loads(parts[0].split(b"\r\n\r\n", 1)[1])
                data = parts[1].split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
                fake.before_upload()
                name = metadata["name"]
                generation = fake.objects.get(name, (b"", 0))[1]
                wanted = int(query["ifGenerationMatch"][0]) if "ifGenerationMatch" in query else None
                fake.uploads.append({"name": name, "ifGenerationMatch": wanted})
                if wanted is not None and wanted != generation:
                    return self._answer(412, b'{"error": {"code": 412, "message": "Precondition"}}')
                fake.objects[name] = (data, generation + 1)
                return self._answer(200, json.dumps(fake.metadata(name)).encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def metadata(self, name):
        data, generation = self.objects[name]
        return {"bucket": "bucket", "name": name, "generation": str(generation),
                "size": str(len(data)), "metageneration": "1"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_gcs(monkeypatch):
    with FakeGcs() as gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{gcs.server.server_port}")
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
        yield gcs


def test_on_gcs_the_watermark_is_written_only_if_the_object_generation_is_unchanged(fake_gcs):
    path = "gs://bucket/capi/state.json"
    write_watermark(path, NOW - dt.timedelta(hours=1), {}, previous=None)
    assert fake_gcs.uploads == [{"name": "capi/state.json", "ifGenerationMatch": 0}]   # "must not exist"
    write_watermark(path, NOW, {"run": 2}, previous=NOW - dt.timedelta(hours=1))
    assert fake_gcs.uploads[-1] == {"name": "capi/state.json", "ifGenerationMatch": 1}
    state = json.loads(fake_gcs.objects["capi/state.json"][0])
    assert state == {"watermark": NOW.isoformat(), "last_run": {"run": 2}}

    with pytest.raises(StateFileChanged, match="watermark 2026-11-26T11:00:00\\+00:00 when it started"):
        write_watermark(path, NOW, {}, previous=NOW - dt.timedelta(hours=1))   # another run moved it


def test_on_gcs_a_write_between_the_read_and_the_upload_fails_the_precondition(fake_gcs):
    path = "gs://bucket/state.json"
    write_watermark(path, NOW - dt.timedelta(hours=2), {}, previous=None)
    other = json.dumps({"watermark": (NOW - dt.timedelta(minutes=1)).isoformat()}).encode()
    fake_gcs.before_upload = lambda: fake_gcs.objects.update({"state.json": (other, 7)})
    with pytest.raises(StateFileChanged, match="its generation is no longer 1"):
        write_watermark(path, NOW, {}, previous=NOW - dt.timedelta(hours=2))
    assert fake_gcs.objects["state.json"] == (other, 7)
