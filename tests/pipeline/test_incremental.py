import datetime as dt

import pytest

from pipeline.incremental import effective_since, parse_since, read_watermark, write_watermark
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
    assert read_watermark(path) is None
    write_watermark(path, NOW, {"events_accepted": 3})
    assert read_watermark(path) == NOW


def test_a_foreign_state_file_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="fix or delete it"):
        read_watermark(str(path))
