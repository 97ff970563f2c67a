import datetime as dt
from decimal import Decimal

import pytest

from transforms import reasons
from transforms.errors import InvalidValueError
from transforms.timestamps import to_epoch_ms

T = 1757505600000          # 2025-09-10T12:00:00Z
UTC = dt.timezone.utc


@pytest.mark.parametrize("value, unit, expected", [
    (T, "ms", T),
    (T // 1000, "s", T),
    (1757505600.123, "s", T + 123),
    (float(T), "ms", T),
    (Decimal(T), "ms", T),
    (str(T), "ms", T),
    ("1757505600.5", "s", T + 500),
    ("2025-09-10T12:00:00Z", "ms", T),
    ("2025-09-10T12:00:00.250Z", "ms", T + 250),
    ("2025-09-10T14:00:00+02:00", "ms", T),
    ("2025-09-10 12:00:00", "ms", T),           # no offset: UTC
    ("2025-09-10T12:00:00Z", "iso", T),
    ("2025-09-10", "ms", T - 12 * 3600 * 1000),  # a date: midnight UTC
    (dt.datetime(2025, 9, 10, 12), "ms", T),    # naive: UTC
    (dt.datetime(2025, 9, 10, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))), "ms", T),
    (dt.datetime(2025, 9, 10, 12, 0, 0, 999, tzinfo=UTC), "ms", T),   # microseconds floor
    (dt.date(2025, 9, 10), "ms", T - 12 * 3600 * 1000),
])
def test_to_epoch_ms(value, unit, expected):
    assert to_epoch_ms(value, unit) == expected


@pytest.mark.parametrize("value, unit", [
    ("yesterday", "ms"), ("", "ms"), ("2025-13-40", "ms"), (float("nan"), "ms"),
    (float("inf"), "s"), (True, "ms"), ([T], "ms"), ({"t": T}, "ms"), (T, "iso"),
    (str(T), "iso"), ("1e400", "ms"), (10**30, "ms"), ("x" * 100, "ms"),
])
def test_unreadable_timestamps(value, unit):
    with pytest.raises(InvalidValueError) as caught:
        to_epoch_ms(value, unit, field="event.timestamp_ms")
    assert caught.value.reason == reasons.INVALID_TIMESTAMP
    assert caught.value.detail.startswith("event.timestamp_ms")
