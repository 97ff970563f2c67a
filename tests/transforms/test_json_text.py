"""json_text.loads gives exactly what json.loads gives (the oracle: the standard library).

JSON columns (PostgreSQL json/jsonb, DuckDB JSON, Snowflake VARIANT), JSON Lines files and a
contents list held as text are parsed with it, so every value the mapper reads from them must
be json.loads's, down to the type of each number; a document json.loads refuses must raise
json.loads's own error.
"""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.json_text import loads


def same(left, right) -> bool:
    """Equal values of the same types all the way down (1 != 1.0 != True here; nan == nan)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or (
            left == right and math.copysign(1, left) == math.copysign(1, right))
    return left == right


def outcome(parse, text):
    try:
        return "value", parse(text)
    except ValueError as error:
        return "error", (type(error), str(error))


def assert_as_json_loads(text: str) -> None:
    got, expected = outcome(loads, text), outcome(json.loads, text)
    assert got[0] == expected[0], text
    if got[0] == "value":
        assert same(got[1], expected[1]), text
    else:
        assert got[1] == expected[1], text


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
documents = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.text(max_size=6), children, max_size=4)), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(documents, st.booleans(), st.sampled_from([None, (",", ":"), (", ", ": ")]))
def test_documents_parse_as_json_loads(document, ensure_ascii, separators) -> None:
    # json.dumps writes NaN and Infinity as json.loads reads them; large ints as digits
    assert_as_json_loads(json.dumps(document, ensure_ascii=ensure_ascii, separators=separators))


number_texts = st.builds(
    lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,30}", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,25}", fullmatch=True)),
    st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True)))


@settings(max_examples=400, deadline=None)
@given(number_texts)
def test_numbers_parse_to_the_same_int_or_float(text) -> None:
    # every digit string: the same int of any size, or the same correctly rounded float
    assert_as_json_loads(text)
    assert_as_json_loads(f'[{text}, {{"n": {text}}}]')


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('{}[]:,"\\ -.0123456789eEtruefalsnNIy\t\n\x00\ud800'),
               max_size=16))
def test_any_text_parses_or_fails_as_json_loads(text) -> None:
    assert_as_json_loads(text)


@pytest.mark.parametrize("text", [
    "NaN", "-Infinity", "[Infinity]",            # beyond RFC 8259: json.loads reads them
    "1e400", "-1e400",                           # json.loads: inf
    "18446744073709551616", "-9223372036854775809", "123456789012345678901234567890",
    '"\\ud800"', '{"k": "\\udc00x"}',            # lone surrogate escapes
    '{"a": 1, "a": 2}',                          # the last of two equal keys wins
    "-0", "-0.0", "1.0", "1E2", "0.1e-400", "9007199254740993", "9007199254740993.0",
    '"\\u0000"', '"\u00e9\u4e2d\U0001f600"',
    "", " ", "01", "1.", ".5", "[1,]", '{"a":1,}', '"a\tb"', "\ufeff{}", "1 2", "tru",
])
def test_edge_documents_parse_or_fail_as_json_loads(text) -> None:
    assert_as_json_loads(text)
