from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import reasons
from transforms.errors import InvalidValueError
from transforms.money import (
    CURRENCY_EXPONENTS,
    MAJOR,
    MINOR,
    _decimal_minor_units,
    normalize_currency,
    to_minor_units,
)


@pytest.mark.parametrize("amount, currency, expected", [
    (19.99, "USD", 1999),            # 19.99 * 100 == 1998.9999999999998 in binary floats
    (0.29, "USD", 29),               # 0.29 * 100 == 28.999999999999996
    (1.005, "USD", 101),             # half up
    (1.004, "USD", 100),
    (500, "JPY", 500),
    (500.0, "JPY", 500),
    (0.5, "JPY", 1),                 # half up at exponent 0
    (1.234, "KWD", 1234),            # exponent 3
    (Decimal("19.99"), "EUR", 1999),
    ("19.99", "USD", 1999),
    (" 7 ", "USD", 700),
    (20, "USD", 2000),
    (0, "USD", 0),
    (1e-9, "USD", 0),
])
def test_major_units_to_minor_units(amount, currency, expected):
    assert to_minor_units(amount, currency) == expected


@pytest.mark.parametrize("amount, expected", [(1999, 1999), (1999.0, 1999), ("1999", 1999)])
def test_declared_minor_units_are_taken_as_they_are(amount, expected):
    assert to_minor_units(amount, "USD", MINOR) == expected


@pytest.mark.parametrize("amount", [
    float("nan"), float("inf"), float("-inf"), -1, -0.01, Decimal("NaN"), Decimal("-2"),
    "abc", "1,99", "", True, [1], {"a": 1}, 1e30,
])
def test_invalid_amounts(amount):
    with pytest.raises(InvalidValueError) as caught:
        to_minor_units(amount, "USD")
    assert caught.value.reason == reasons.INVALID_AMOUNT


def test_minor_units_with_a_fraction_are_invalid():
    with pytest.raises(InvalidValueError) as caught:
        to_minor_units(19.5, "USD", MINOR)
    assert caught.value.reason == reasons.INVALID_AMOUNT


def test_currency_without_minor_unit_cannot_carry_an_amount():
    with pytest.raises(InvalidValueError) as caught:
        to_minor_units(1, "XAU")
    assert caught.value.reason == reasons.INVALID_CURRENCY


@pytest.mark.parametrize("value, expected", [("usd", "USD"), (" eur ", "EUR"), ("JPY", "JPY")])
def test_normalize_currency(value, expected):
    assert normalize_currency(value) == expected


@pytest.mark.parametrize("value", ["US$", "XYZ", "", "dollars", 840, None])
def test_non_iso_currency_is_invalid(value):
    with pytest.raises(InvalidValueError) as caught:
        normalize_currency(value)
    assert caught.value.reason == reasons.INVALID_CURRENCY


def test_detail_never_echoes_the_value():
    with pytest.raises(InvalidValueError) as caught:
        to_minor_units("secret-looking-text", "USD", field="data.amount")
    assert "secret" not in caught.value.detail
    assert "data.amount" in caught.value.detail


@settings(max_examples=200, deadline=None)
@given(cents=st.integers(min_value=0, max_value=10**12))
def test_float_of_exact_cents_round_trips(cents):
    assert to_minor_units(cents / 100, "USD") == cents


_AMOUNTS = st.one_of(
    st.floats(min_value=-1e3, max_value=1e22, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**12).map(lambda n: n / 1000),   # 3 decimals, halves
    st.integers(min_value=-10**3, max_value=10**20),
    st.sampled_from([0.5, 1.005, 2.675, 0.125, 1e-9, 1e16, 123456789.125, 9.2e18, 0.0, -0.0,
                     float("nan"), float("inf"), True]))


@settings(max_examples=2000, deadline=None)
@given(amount=_AMOUNTS, currency=st.sampled_from(["JPY", "USD", "KWD", "CLF", "XAU"]))
def test_the_plain_path_gives_what_the_decimal_path_gives(amount, currency):
    """Ints and plain floats are converted in integer arithmetic on the float's repr; the
    result (or the error) must be the Decimal path's, for every currency exponent."""
    def outcome(convert):
        try:
            return convert()
        except InvalidValueError as exc:
            return (exc.reason, exc.detail)
    assert CURRENCY_EXPONENTS["CLF"] == 4 and CURRENCY_EXPONENTS["XAU"] is None
    assert outcome(lambda: to_minor_units(amount, currency)) == \
        outcome(lambda: _decimal_minor_units(amount, currency, MAJOR, "data.amount"))
