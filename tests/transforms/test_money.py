from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms import reasons
from transforms.errors import InvalidValueError
from transforms.money import MINOR, normalize_currency, to_minor_units


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
