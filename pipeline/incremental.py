"""Incremental scheduled syncs: --since and the watermark state file.

The watermark is the start time of the last run that finished with no `retries_exhausted` dead
letters (and whose state file no other run advanced meanwhile: see `write_watermark`). The next
run reads rows at or after it (pushed down to SQL/BigQuery as the `since` parameter). The lower
bound is never earlier than the API's 7-day window: older rows would only be rejected as stale,
so they are not read at all.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems

from pipeline.outputs import is_local, write_file
from transforms.errors import CapiSyncError, ConfigError
from transforms.events import MAX_AGE_MS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """'36h' -> now - 36 hours; '2026-11-20T00:00:00Z' -> that instant (naive = UTC)."""
    match = _DURATION.match(value)
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {value!r} is neither a duration (36h, 2d, 90m) nor an ISO "
                          f"timestamp (2026-11-20T00:00:00Z).") from None
    since = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    if since > now:     # a typo'd year, a local time taken for UTC: nothing could be read
        raise ConfigError(f"--since {value!r} is in the future ({since.isoformat()}; now is "
                          f"{now.replace(microsecond=0).isoformat()}): no row could be sent. "
                          f"Give a past time (times without a zone are UTC) or a duration "
                          f"such as 36h.")
    return since


def read_watermark(path: str, now: dt.datetime) -> dt.datetime | None:
    """The watermark stored by the last fully successful run, or None on the first run.

    Anything else is a configuration error (exit 2) naming the file: not JSON, no "watermark",
    a directory, a time without a zone or a bare date (which instant would it be?), and a
    watermark later than `now` (a clock that ran ahead, a hand-edited or restored file: reading
    from there would skip every row loaded meanwhile).
    """
    raw = _read_state(path)
    if raw is None:
        return None
    watermark = _parse_state(path, raw)
    if watermark > now:
        raise ConfigError(
            f"State file {path} holds watermark {watermark.isoformat()}, later than now "
            f"({now.isoformat()}): the clock of the machine that wrote it was ahead, or the "
            f"file was edited or restored. Reading from there would skip the rows loaded "
            f"meanwhile. Fix: set \"watermark\" to the last time you know every row was sent, "
            f"or delete the file (the next run then reads the API's last 7 days).")
    return watermark


_MAX_STATE_BYTES = 1 << 16    # a watermark file is ~300 bytes


def _read_state(path: str) -> bytes | None:
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            raw = handle.read(_MAX_STATE_BYTES + 1)     # /dev/zero would never end
    except OSError as error:          # a directory, no permission, ... (BeamIOError included)
        raise _not_a_state_file(path, f"it cannot be read ({_reason(error)})") from None
    if len(raw) > _MAX_STATE_BYTES:
        raise _not_a_state_file(path, f"it is larger than {_MAX_STATE_BYTES:,} bytes")
    return raw


def _parse_state(path: str, raw: bytes) -> dt.datetime:
    try:
        state = json.loads(raw)
        text = state["watermark"]
        if not isinstance(text, str):
            raise TypeError
        watermark = dt.datetime.fromisoformat(text)
    except (ValueError, KeyError, TypeError):
        raise _not_a_state_file(path, "it is not JSON with a \"watermark\" time") from None
    if watermark.tzinfo is None:
        raise _not_a_state_file(path, f"its watermark {text!r} has no time zone")
    return watermark


def _not_a_state_file(path: str, why: str) -> ConfigError:
    return ConfigError(f"State file {path} is not a capi-sync watermark file ({why}; expected "
                       f"{{\"watermark\": \"2026-11-20T06:00:00+00:00\"}}); fix or delete it.")


def _reason(error: OSError) -> str:
    return error.strerror or str(error).splitlines()[0][:200]


class StateFileChanged(CapiSyncError):
    """Another run advanced the state file while this one ran; this run left it as it was."""


def write_watermark(path: str, watermark: dt.datetime, run_summary: dict,
                    previous: dt.datetime | None) -> None:
    """Advances the watermark if the file still holds `previous` (what this run read at start).

    A compare-and-swap: when another run on the same state file advanced it meanwhile, this
    one does not overwrite it (raises StateFileChanged); two runs never both move it silently.
    - local: the compare and the replace happen under an exclusive lock on `<path>.lock`, and
      the file is replaced atomically (temp file + rename);
    - gs://: the object is read with its generation and written with `if_generation_match` on
      it (google-cloud-storage): a write by anyone in between fails the precondition;
    - other FileSystems schemes: read again just before the write (a window of one round trip).
    """
    data = json.dumps({"watermark": watermark.isoformat(), "last_run": run_summary},
                      indent=2).encode()
    if path.startswith("gs://"):
        _write_gcs_if_unchanged(path, data, previous)
        return
    with _locked(path):
        raw = _read_state(path)
        _check_unchanged(path, previous, None if raw is None else _parse_state(path, raw))
        write_file(path, data)


def _check_unchanged(path: str, previous: dt.datetime | None, current: dt.datetime | None,
                     ) -> None:
    if current != previous:
        raise StateFileChanged(
            f"State file {path} changed while this run ran (watermark {_show(previous)} when "
            f"it started, {_show(current)} now): another capi-sync run uses the same file. "
            f"This run left it as is; the rows of both runs were sent (the API deduplicates "
            f"repeats). Give each scheduled job its own state file, or do not start one before "
            f"the previous run ended.")


def _write_gcs_if_unchanged(path: str, data: bytes, previous: dt.datetime | None) -> None:
    from google.api_core import exceptions
    from google.cloud import storage

    bucket_name, _, name = path[len("gs://"):].partition("/")
    bucket = storage.Client().bucket(bucket_name)
    blob = bucket.get_blob(name)
    generation = 0 if blob is None else blob.generation       # 0: "only if it does not exist"
    current = None if blob is None else _parse_state(
        path, blob.download_as_bytes(if_generation_match=generation))
    _check_unchanged(path, previous, current)
    try:
        bucket.blob(name).upload_from_string(data, content_type="application/json",
                                             if_generation_match=generation)
    except exceptions.PreconditionFailed:
        raise StateFileChanged(
            f"State file {path} was rewritten by another run while this one advanced it "
            f"(its generation is no longer {generation}); this run left it as is.") from None


def _show(watermark: dt.datetime | None) -> str:
    return "none" if watermark is None else watermark.isoformat()


_LOCK_TIMEOUT_S = 30.0


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` (local files only), held for a compare-and-replace."""
    if not is_local(path):
        yield
        return
    import fcntl

    deadline = time.monotonic() + _LOCK_TIMEOUT_S
    with open(f"{path}.lock", "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StateFileChanged(f"State file {path}: another process held "
                                           f"{path}.lock for {_LOCK_TIMEOUT_S:.0f} s; this run "
                                           f"left the file as is.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def effective_since(since: dt.datetime | None, watermark: dt.datetime | None,
                    now: dt.datetime) -> dt.datetime:
    """The lower bound pushed down to the source: the latest of --since, watermark and now - 7 days."""
    window_start = now - dt.timedelta(milliseconds=MAX_AGE_MS)
    return max(bound for bound in (since, watermark, window_start) if bound is not None)
