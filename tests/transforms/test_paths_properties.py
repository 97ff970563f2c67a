"""Property tests: the unrolled getters agree with the general rule, for all inputs.

Path.get is specialised for one, two and three segments, ValueSource for one reference,
present_column for text columns and UserBuilder.build_columns for a whole batch; each is pinned
here to an oracle written again from the documented rule (not to the code it checks).
"""
from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.columnar import _Position, dict_item_tuples
from transforms.mapping import ItemValueSource
from transforms.paths import Path, ValueSource, present, present_column, select_index
from transforms.user_fields import NOT_BUILT, UserBuilder

SEGMENTS = ("a", "b", "c")
KEYS = ("a", "b", "c", "a.b", "b.c", "a.b.c", "0")

leaves = st.one_of(st.none(), st.sampled_from(["", " ", "x", "y z"]), st.integers(-2, 2),
                   st.just([]), st.just({}))
rows = st.recursive(leaves, lambda children: st.one_of(
    st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
    st.lists(children, max_size=2)), max_leaves=12)
row_dicts = st.dictionaries(st.sampled_from(KEYS), rows, max_size=5)
path_texts = st.lists(st.sampled_from(SEGMENTS + ("0",)), min_size=1, max_size=4).map(".".join)


def oracle_get(node, segments):
    """The documented rule: every split of the segments into keys (a key may join segments
    with dots), nested reading first, then longer keys; the first non-None value wins."""
    if not segments:
        return node
    for take in range(1, len(segments) + 1):
        key = ".".join(segments[:take])
        if isinstance(node, dict):
            value = node.get(key)
        elif isinstance(node, list) and key.isdigit():
            value = node[int(key)] if int(key) < len(node) else None
        else:
            value = None
        if value is None:
            continue
        found = oracle_get(value, segments[take:])
        if found is not None:
            return found
    return None


def oracle_present(value):
    if value is None:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    if isinstance(value, (list, tuple, dict)) and len(value) == 0:
        return None
    return value


@settings(max_examples=400, deadline=None)
@given(row_dicts, path_texts)
def test_path_get_is_the_general_rule(row, text):
    assert Path(text).get(row) == oracle_get(row, text.split("."))


@settings(max_examples=300, deadline=None)
@given(row_dicts, path_texts)
def test_one_reference_value_source_is_present_of_the_path(row, text):
    fast = ValueSource("f", (Path(text),))
    general = ValueSource("f", (Path(text), Path("nowhere")))   # the loop, not the unrolled one
    assert fast.get(row) == general.get(row) == oracle_present(oracle_get(row, text.split(".")))


class Text(str):
    """A str subclass (a driver's own text type): the same rule as str."""


column_kinds = [st.text(max_size=3), st.integers(), st.floats(allow_nan=False), st.booleans(),
                st.lists(st.integers(), max_size=2), st.just({}), st.just({"a": 1}),
                st.just(()), st.sampled_from(["", " ", "x"]).map(Text)]


@given(st.data())
def test_present_column_is_present_of_each_value(data):
    # columns of one kind or two (each fast path of present_column), with and without None
    kinds = data.draw(st.lists(st.sampled_from(column_kinds), min_size=1, max_size=2))
    values = data.draw(st.lists(st.one_of(st.none(), *kinds), max_size=6))
    assert present_column(values) == [present(v) for v in values] == \
        [oracle_present(v) for v in values]


@given(st.lists(st.text(alphabet="aB (@.x)", max_size=5), max_size=6),
       st.sampled_from(["(not set)", "null"]))
def test_placeholders_are_compared_stripped_and_case_blind(values, placeholder):
    values = values + [f" {placeholder.upper()} "]
    got = present_column(values, frozenset({placeholder}))
    assert got[-1] is None
    assert got[:-1] == [oracle_present(v) if v.strip().lower() != placeholder else None
                        for v in values[:-1]]


texts = st.one_of(st.none(), st.sampled_from([
    " A@Example.com ", "not an email", "+1 415 555 0100", "(415) 555-0100", "US", "fr", "Texas",
    "78701", "A" * 64, "", "José", "10.0.0.1"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[texts] * 7), min_size=1, max_size=6),
       st.sampled_from(["openai", "scalar"]))
def test_build_columns_is_build_row_by_row(rows_of_text, profile):
    # names and cities: their normalization and hashes are cached (values that repeat)
    fields = ("email", "phone", "country", "region", "first_name", "last_name", "city")
    sources = tuple((logical, ValueSource(f"user.fields.{logical}", (Path(str(i)),)))
                    for i, logical in enumerate(fields))
    builder = UserBuilder(profile, sources, "US")
    positions = "".join(str(i) for i in range(len(fields)))
    rows = [dict(zip(positions, row, strict=True)) for row in rows_of_text]
    columns = {str(i): [row[str(i)] for row in rows] for i in range(len(fields))}
    built = builder.build_columns(lambda source: present_column(columns[source.refs[0].text]),
                                  len(rows))
    for row, got in zip(rows, built, strict=True):
        counters = collections.Counter()
        want = builder.build(row, counters)
        assert got is not NOT_BUILT
        assert got.user == want
        assert collections.Counter(got.counts) == counters


present_values = st.one_of(st.none(), st.sampled_from(["x", "y z"]), st.integers(-2, 2),
                           st.just([1]))
positions = st.lists(st.integers(0, 3), min_size=1, max_size=3)


@settings(max_examples=400, deadline=None)
@given(st.tuples(*[present_values] * 4), st.tuples(*[present_values] * 4), positions,
       st.lists(st.booleans(), min_size=3, max_size=3), st.sampled_from([None, "dflt"]))
def test_position_getters_are_the_first_present_value_then_the_default(
        row, item, indexes, reads_item, default):
    """Row and item tuples hold `present` values (transforms.columnar): a source over their
    positions gives the first that is not None, else its default, counted once."""
    refs = [_Position(f"p{index}", index) for index in indexes]
    by_position = ValueSource("f", tuple(refs), default=default)
    counts = collections.Counter()
    want = next((row[index] for index in indexes if row[index] is not None), default)
    assert by_position.get(row, counts) == want
    assert counts["f.defaulted"] == (default is not None
                                     and all(row[index] is None for index in indexes))

    item_refs = tuple(zip(reads_item[:len(refs)], refs, strict=True))
    item_source = ItemValueSource("i", item_refs, default=default)
    item_counts = collections.Counter()
    read = [(item if from_item else row)[ref.present_index] for from_item, ref in item_refs]
    want = next((value for value in read if value is not None), default)
    assert item_source.get(item, row, item_counts) == want
    assert item_counts["i.defaulted"] == (default is not None and all(v is None for v in read))


def oracle_select(node, value):
    """`[key=value]` as documented: the first element of a list whose `key` member reads as
    `value` (text stripped, blank text is no value, whole numbers without a point)."""
    if not isinstance(node, list):
        return None
    for element in node:
        if isinstance(element, dict) and element.get("key") is not None:
            key = element["key"]
            text = (key.strip() or None) if isinstance(key, str) else str(key)
            if text == value:
                return element
    return None


_params = st.lists(st.one_of(
    st.fixed_dictionaries({"key": st.one_of(st.none(), st.sampled_from(["a", " a", "b", ""]),
                                            st.integers(0, 2)),
                           "value": st.integers(0, 9)}),
    st.none(), st.just("a"), st.just({})), max_size=6)


@settings(max_examples=500, deadline=None)
@given(node=st.one_of(_params, st.none(), st.just("a"), st.just({"key": "a"})),
       value=st.sampled_from(["a", "b", "0", "1", ""]))
def test_a_select_index_picks_what_the_select_step_picks(node, value):
    index = select_index(node, "key")
    picked = None if index is None else index.get(value)
    assert picked is oracle_select(node, value)
    if value:   # a path cannot select an empty key
        assert Path(f"p[key={value}]").get({"p": node}) is oracle_select(node, value)


@settings(max_examples=400, deadline=None)
@given(values=st.lists(st.one_of(rows, _params), max_size=8),
       text=st.sampled_from(["p[key=a].value", "p[key=0].value.*", "p.*", "p.*.a",
                             "p[key=a].b.0", "p.*.*", "p[key=b]"]))
def test_steps_over_a_column_are_the_steps_of_each_value(values, text):
    steps = Path(text).tail()
    assert steps.apply_column(values) == [None if v is None else steps(v) for v in values]


item_lists = st.one_of(
    st.none(), st.lists(st.one_of(st.none(), row_dicts), max_size=3),
    # what makes a chunk keep its items as dicts: text, an object, a list holding a scalar
    st.sampled_from(['[{"a": 1}]', {"a": [1]}, 3, [{"a": 1}, "x"], [[{"a": 1}]]]))


@settings(max_examples=300, deadline=None)
@given(st.lists(item_lists, max_size=5), st.lists(path_texts, min_size=1, max_size=3))
def test_dict_item_tuples_are_present_item_values_per_row(lists, texts):
    got = dict_item_tuples(lists, [Path(text) for text in texts])
    if not all(value is None or (isinstance(value, list) and all(
            item is None or isinstance(item, dict) for item in value)) for value in lists):
        assert got is None
        return
    assert got == [[tuple(oracle_present(oracle_get(item, text.split("."))) for text in texts)
                    for item in value] if value else None for value in lists]
