"""Timestamps -> integer epoch milliseconds (contract section 5).

Accepted: Python/Arrow datetimes (naive = UTC), dates (midnight UTC), ISO-8601 strings with or
without an offset ('2026-09-10T12:00:00Z', '2026-09-10 12:00:00+02:00', '2026-09-10'), and epoch
numbers or numeric strings (milliseconds unless the mapping declares `unit: s`, `us` or `ns`;
GA4's `event_timestamp` is microseconds). With `unit: iso` only datetimes and ISO strings are
accepted. Anything else raises InvalidValueError (invalid_timestamp); an epoch number out of
range names the unit its size suggests (`looks_like_unit`). The 7-day / 10-minute window is
the validator's job, not this module's.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from transforms import reasons
from transforms.errors import InvalidValueError

MILLISECONDS = "ms"
SECONDS = "s"
MICROSECONDS = "us"
NANOSECONDS = "ns"
ISO = "iso"
TIMESTAMP_UNITS = (MILLISECONDS, SECONDS, MICROSECONDS, NANOSECONDS, ISO)
# Decimal exponent from the unit to milliseconds: 1 s = 10**3 ms, 1 us = 10**-3 ms.
_TO_MS_EXPONENT = {SECONDS: 3, MILLISECONDS: 0, MICROSECONDS: -3, NANOSECONDS: -6}
_UNIT_WORDS = {SECONDS: "seconds", MILLISECONDS: "milliseconds", MICROSECONDS: "microseconds",
               NANOSECONDS: "nanoseconds"}

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ONE_MS = dt.timedelta(milliseconds=1)
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_ONE = Decimal(1)
# |epoch ms| beyond year 10000 cannot be a real event; refuse before int() of huge exponents.
_MAX_ABS_MS = 253_402_300_800_000


def _invalid(field: str, what: str) -> InvalidValueError:
    return InvalidValueError(reasons.INVALID_TIMESTAMP, f"{field}: {what}")


def datetime_to_ms(value: dt.datetime) -> int:
    """Exact integer milliseconds (floor); a naive datetime is taken as UTC."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return (value - _EPOCH) // _ONE_MS


def looks_like_unit(number: Any, unit: str) -> str | None:
    """The unit an epoch number's size suggests when it is not `unit`: 1.7e15 -> 'us'.

    Today is ~1.7e9 s = 1.7e12 ms = 1.7e15 us = 1.7e18 ns; the boundaries sit halfway (in
    digits) between those, so any date from 1973 to 2286 is placed right."""
    try:
        magnitude = abs(Decimal(number))
    except (InvalidOperation, TypeError, ValueError):
        return None
    if not magnitude.is_finite() or not 10 ** 8 <= magnitude < 10 ** 20:
        return None
    guess = (SECONDS if magnitude < 10 ** 11 else MILLISECONDS if magnitude < 10 ** 14
             else MICROSECONDS if magnitude < 10 ** 17 else NANOSECONDS)
    return guess if guess != unit and unit in _TO_MS_EXPONENT else None


def out_of_range_detail(number: Any, unit: str) -> str:
    guess = looks_like_unit(number, unit)
    if guess is None:
        return "epoch number out of range"
    return (f"epoch number out of range; it looks like epoch {_UNIT_WORDS[guess]}:"
            f" declare unit: {guess}")


def _number_to_ms(number: Decimal, unit: str, field: str) -> int:
    exponent = _TO_MS_EXPONENT.get(unit, 0)
    if exponent:
        number = number.scaleb(exponent)
    try:
        ms = int(number.quantize(_ONE, rounding=ROUND_HALF_UP if exponent >= 0 else ROUND_FLOOR))
    except InvalidOperation:
        raise _invalid(field, out_of_range_detail(number.scaleb(-exponent), unit)) from None
    if abs(ms) > _MAX_ABS_MS:
        raise _invalid(field, out_of_range_detail(number.scaleb(-exponent), unit))
    return ms


def to_epoch_ms(value: Any, unit: str = MILLISECONDS, field: str = "timestamp_ms") -> int:
    """1757505600000 -> same; '2025-09-10T12:00:00Z' -> 1757505600000; unit 's': 1757505600 ->
    ...000; unit 'us': 1757505600123456 -> 1757505600123 (sub-millisecond digits dropped)."""
    kind = type(value)
    if kind is int and unit != ISO:
        exponent = _TO_MS_EXPONENT[unit]
        ms = value * 10 ** exponent if exponent >= 0 else value // 10 ** -exponent  # floor
        if abs(ms) > _MAX_ABS_MS:
            raise _invalid(field, out_of_range_detail(value, unit))
        return ms
    if isinstance(value, dt.datetime):
        return datetime_to_ms(value)
    if isinstance(value, dt.date):
        return datetime_to_ms(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        return _text_to_ms(value.strip(), unit, field)
    if isinstance(value, bool):
        raise _invalid(field, "a boolean is not a timestamp")
    if unit == ISO:
        raise _invalid(field, "declared unit iso but the value is not an ISO-8601 string")
    if isinstance(value, int):
        return _number_to_ms(Decimal(int(value)), unit, field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(field, "NaN or infinite number")
        return _number_to_ms(Decimal(repr(value)), unit, field)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _invalid(field, "NaN or infinite number")
        return _number_to_ms(value, unit, field)
    raise _invalid(field, f"a {type(value).__name__} is not a timestamp")


def _text_to_ms(text: str, unit: str, field: str) -> int:
    if _NUMERIC.fullmatch(text):
        if unit == ISO:
            raise _invalid(field, "declared unit iso but the text is a number")
        return _number_to_ms(Decimal(text), unit, field)
    if len(text) > 64:
        raise _invalid(field, "text too long for an ISO-8601 timestamp")
    if text[-1:] in ("Z", "z"):   # Python 3.10's fromisoformat does not read 'Z'
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(field, "text is neither ISO-8601 nor an epoch number") from None
    return datetime_to_ms(parsed)
