"""Money: decimal major units -> integer minor units by the currency's ISO 4217 exponent.

Computed in decimal arithmetic, never through binary floats: 19.99 * 100 is
1998.9999999999998 as a float, so a float is read through its shortest repr (Decimal('19.99')).
Rounding is half up (1.005 USD -> 101 cents). Ints and plain floats take a shortcut with the
same result: integer arithmetic on the digits of that repr (a property test holds the two
equal). Problems raise InvalidValueError with the dead-letter reason (invalid_amount,
invalid_currency); the detail never echoes the value.
"""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from iso4217 import Currency

from transforms import reasons
from transforms.errors import InvalidValueError

MAJOR = "major"
MINOR = "minor"
MONEY_UNITS = (MAJOR, MINOR)

# code -> exponent (digits after the decimal point); None for units without minor units (XAU).
CURRENCY_EXPONENTS: dict[str, int | None] = {currency.code: currency.exponent for currency in Currency}

# The API takes an integer; keep it within a signed 64-bit integer like any JSON consumer can.
MAX_MINOR_UNITS = 2**63 - 1
_ONE = Decimal(1)


def normalize_currency(value: Any, field: str = "data.currency") -> str:
    """' usd ' -> 'USD'; anything that is not an ISO 4217 code raises invalid_currency."""
    if isinstance(value, str):
        code = value.strip().upper()
        if code in CURRENCY_EXPONENTS:
            return code
    raise InvalidValueError(reasons.INVALID_CURRENCY, f"{field} is not an ISO 4217 currency code")


def to_decimal(value: Any, field: str = "data.amount") -> Decimal:
    """A finite, non-negative Decimal from an int, float, Decimal or numeric string."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is NaN or infinite")
        number = Decimal(repr(value))
    elif kind is int:
        number = Decimal(value)
    elif isinstance(value, bool):
        raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is a boolean, not a number")
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(int(value))
    elif isinstance(value, float):
        return to_decimal(float(value), field)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidValueError(reasons.INVALID_AMOUNT,
                                    f"{field} is text that is not a number") from None
    else:
        raise InvalidValueError(reasons.INVALID_AMOUNT,
                                f"{field} is a {type(value).__name__}, not a number")
    if not number.is_finite():
        raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is NaN or infinite")
    if number < 0:
        raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is negative")
    return number


def to_minor_units(value: Any, currency: str, unit: str = MAJOR,
                   field: str = "data.amount") -> int:
    """19.99 USD -> 1999, 500 JPY -> 500, 1.234 KWD -> 1234; unit 'minor' takes integers as they are.

    `currency` must already be a normalized code (normalize_currency).
    """
    if unit == MAJOR:
        exponent = CURRENCY_EXPONENTS.get(currency)
        if exponent is not None:
            minor = _plain_minor_units(value, exponent)
            if minor is not None:
                return minor
    return _decimal_minor_units(value, currency, unit, field)


def _plain_minor_units(value: Any, exponent: int) -> int | None:
    """The common amounts (an int, or a float whose shortest repr is plain digits with a point)
    in integer arithmetic on that repr, exactly as the Decimal path rounds them (half up); None
    for anything else, negative or too large included: the Decimal path decides (and words the
    error).
    """
    kind = type(value)
    if kind is int:
        minor = value * 10 ** exponent
    elif kind is float and value >= 0:
        whole, point, fraction = repr(value).partition(".")
        if not point or not fraction.isdigit():     # 1e+16, 1.5e-07, inf, nan
            return None
        digits = int(whole + fraction)
        shift = exponent - len(fraction)
        if shift >= 0:
            minor = digits * 10 ** shift
        else:
            unit = 10 ** -shift
            minor, rest = divmod(digits, unit)
            if 2 * rest >= unit:
                minor += 1
    else:
        return None
    return minor if 0 <= minor <= MAX_MINOR_UNITS else None


def _decimal_minor_units(value: Any, currency: str, unit: str, field: str) -> int:
    number = to_decimal(value, field)
    if unit == MINOR:
        if number != number.to_integral_value():
            raise InvalidValueError(reasons.INVALID_AMOUNT,
                                    f"{field} is declared in minor units but has a fraction")
        minor = int(number)
    else:
        exponent = CURRENCY_EXPONENTS.get(currency)
        if exponent is None:
            raise InvalidValueError(reasons.INVALID_CURRENCY,
                                    f"{field}: currency has no minor unit in ISO 4217")
        try:
            minor = int(number.scaleb(exponent).quantize(_ONE, rounding=ROUND_HALF_UP))
        except InvalidOperation:
            raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is too large") from None
    if minor > MAX_MINOR_UNITS:
        raise InvalidValueError(reasons.INVALID_AMOUNT, f"{field} is too large")
    return minor
