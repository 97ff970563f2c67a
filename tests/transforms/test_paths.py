import collections
import pickle
import re

import pytest

from transforms.paths import (
    Path,
    PathSyntaxError,
    Template,
    ValueSource,
    compile_reference,
    is_empty,
    split_alternatives,
)

NESTED = {
    "user": {"email": "a@example.com", "state": None},
    "context": {"device": {"ip": "203.0.113.7", "user_agent": None}},
    "items": [{"id": "a", "product": {"price": 1.5}}, {"id": "b"}, {"product": {"price": 2}}],
    "attributes": [("color", "red"), ("size", "M")],          # an Arrow map, as pyarrow lists it
    "pairs": [{"key": "k", "value": "v"}],
}
FLAT = {"user.email": "flat@example.com", "order_id": 42, "context.device": {"ip": "198.51.100.1"}}


@pytest.mark.parametrize("path, row, expected", [
    ("user.email", NESTED, "a@example.com"),
    ("user.email", FLAT, "flat@example.com"),                  # flat column named by the path
    ("context.device.ip", NESTED, "203.0.113.7"),
    ("context.device.ip", FLAT, "198.51.100.1"),               # mixed: struct column 'context.device'
    ("context.device.user_agent", NESTED, None),
    ("user.state", NESTED, None),
    ("missing.column", NESTED, None),
    ("order_id", FLAT, 42),
    ("items.X.id", NESTED, ["a", "b"]),                       # X: each element, empties dropped
    ("items.X.product.price", NESTED, [1.5, 2]),
    ("items.1.id", NESTED, "b"),
    ("items.9.id", NESTED, None),
    ("attributes.size", NESTED, "M"),
    ("pairs.k", NESTED, "v"),
    ("user.email.deeper", NESTED, None),
])
def test_path_resolution(path, row, expected):
    assert Path(path).get(row) == expected


def test_nested_null_leaf_falls_back_to_flat_column():
    row = {"user": {"email": None}, "user.email": "flat@example.com"}
    assert Path("user.email").get(row) == "flat@example.com"


def test_path_on_non_mapping_row_is_none():
    assert Path("user.email").get("not a row") is None
    assert Path("a.b.c").get(None) is None


def test_top_level_columns_lists_every_reading():
    assert Path("context.device.ip").top_level_columns() == (
        "context", "context.device", "context.device.ip")
    assert Path("items.X.product.price").top_level_columns() == ("items",)


@pytest.mark.parametrize("text", ["a..b", ".a", "a.", "a. b", "a|b.c", "a.{b}"])
def test_bad_path_syntax(text):
    with pytest.raises(PathSyntaxError):
        Path(text)


@pytest.mark.parametrize("template, row, expected", [
    ("order_{order_id}", {"order_id": 42}, "order_42"),
    ("order_{order_id}", {"order_id": 42.0}, "order_42"),
    ("{a}-{b.c}", {"a": "x", "b": {"c": " y "}}, "x-y"),
    ("{{literal}}_{a}", {"a": 1}, "{literal}_1"),
    ("order_{order_id}", {"order_id": None}, None),            # an empty placeholder -> no value
    ("order_{order_id}", {}, None),
])
def test_template_rendering(template, row, expected):
    assert Template(template).get(row) == expected


@pytest.mark.parametrize("text, message", [
    ("order_{order_id", "never closed"),
    ("order_}x", "without a matching"),
    ("order_{}", "empty or nested placeholder"),
    ("order_{items.X.id}", "cannot use 'X'"),
    ("order_{a..b}", "empty segment"),
])
def test_template_errors(text, message):
    with pytest.raises(PathSyntaxError, match=message):
        Template(text)


@pytest.mark.parametrize("spec, expected", [
    ("a", ["a"]),
    ("a | b", ["a", "b"]),
    (["a | b", "c"], ["a", "b", "c"]),
    ("order_{x} | y", ["order_{x}", "y"]),
])
def test_split_alternatives(spec, expected):
    assert split_alternatives(spec) == expected


@pytest.mark.parametrize("value, empty", [
    (None, True), ("", True), ("  ", True), ([], True), ({}, True), (0, False), ("x", False),
    (False, False), ([None], False),
])
def test_is_empty(value, empty):
    assert is_empty(value) is empty


def test_value_source_first_non_empty_then_default_counted():
    source = ValueSource("event.action_source",
                         (compile_reference("a"), compile_reference("b")), default="web")
    counters = collections.Counter()
    assert source.get({"a": "", "b": "offline"}, counters) == "offline"
    assert source.get({"a": "  ", "b": None}, counters) == "web"
    assert counters == {"event.action_source.defaulted": 1}


def test_value_source_constant_and_template_fallback():
    assert ValueSource("x", has_constant=True, constant="USD").get({}) == "USD"
    chain = ValueSource("event.id", (compile_reference("order_{order_id}"),
                                     compile_reference("event_id")))
    assert chain.get({"order_id": 7, "event_id": "e"}) == "order_7"
    assert chain.get({"event_id": "e"}) == "e"


@pytest.mark.parametrize("obj", [
    Path("context.device.ip"), Path("items.X.id"), Template("order_{a}"),
    ValueSource("x", (compile_reference("a"), compile_reference("user.email")), default=1),
])
def test_compiled_objects_pickle(obj):
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj
    assert clone.get(NESTED) == obj.get(NESTED)


@pytest.mark.parametrize("text, message", [
    ("*.a", "must start with a column name"),
    ("params[key=a].X.b", "uses 'X' after a [key=value]"),
    ("params[key].value", "is not a lookup"),
    ("params[key=a]extra.value", "is not a lookup"),
])
def test_lookup_and_first_member_syntax_errors(text, message):
    with pytest.raises(PathSyntaxError, match=re.escape(message)):
        Path(text)


@pytest.mark.parametrize("text, row, expected", [
    ("p[key=a.b].v", {"p": [{"key": "a.b", "v": 1}]}, 1),             # dots inside brackets
    ("p[key=2].v", {"p": [{"key": 2, "v": "two"}]}, "two"),            # a number key as text
    ("p[key=a].v.*", {"p": [{"key": "a", "v": {"s": " ", "i": 0}}]}, 0),   # blank text skipped
    ("p[key=a].v.*", {"p": [{"key": "a", "v": {"s": None, "i": None}}]}, None),
    ("s.p[key=a].v", {"s": {"p": [{"key": "a", "v": 3}]}}, 3),          # a list inside a struct
    ("s.p[key=a].v", {"s.p": [{"key": "a", "v": 4}]}, 4),               # a flat dotted column
    ("items.X.p[key=a].v", {"items": [{"p": [{"key": "a", "v": 5}]}, {"p": []}]}, [5]),
])
def test_lookup_and_first_member_reading(text, row, expected):
    assert Path(text).get(row) == expected


def test_schema_text_is_the_plain_path_a_schema_check_resolves():
    assert Path("event_params[key=currency].value.*").schema_text == "event_params.X.value"
    assert Path("a.b").schema_text == "a.b"
