"""Incremental scheduled syncs: --since and the watermark state file.

The watermark is the start time of the last run that finished with no `retries_exhausted` dead
letters. The next run reads rows at or after it (pushed down to SQL/BigQuery as the `since`
parameter). The lower bound is never earlier than the API's 7-day window: older rows would only
be rejected as stale, so they are not read at all.
"""
from __future__ import annotations

import datetime as dt
import json
import re

from apache_beam.io.filesystems import FileSystems

from transforms.errors import ConfigError
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
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def read_watermark(path: str) -> dt.datetime | None:
    """The watermark stored by the last fully successful run, or None on the first run."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        raw = handle.read()
    try:
        state = json.loads(raw)
        return dt.datetime.fromisoformat(state["watermark"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"State file {path} is not a capi-sync watermark file "
                          f"({{\"watermark\": ISO time}}); fix or delete it.") from None


def write_watermark(path: str, watermark: dt.datetime, run_summary: dict) -> None:
    state = {"watermark": watermark.isoformat(), "last_run": run_summary}
    with FileSystems.create(path, mime_type="application/json") as handle:
        handle.write(json.dumps(state, indent=2).encode())


def effective_since(since: dt.datetime | None, watermark: dt.datetime | None,
                    now: dt.datetime) -> dt.datetime:
    """The lower bound pushed down to the source: the latest of --since, watermark and now - 7 days."""
    window_start = now - dt.timedelta(milliseconds=MAX_AGE_MS)
    return max(bound for bound in (since, watermark, window_start) if bound is not None)
