"""The mapping language's forms, each case on both mapping paths (row dicts and columnar).

Each case is a small mapping on top of a base, a table built from rows, and the exact outcome:
map_both_ways (tests/transforms/test_columnar.py) maps the table through RowMapper and through
ColumnarMapper and asserts they agree in everything, so every form is pinned on both paths.
"""
from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from tests.transforms.test_columnar import NOW_MS, map_both_ways
from transforms.errors import MappingFileError
from transforms.mapper import RowMapper
from transforms.mapping import parse_mapping

BASE = """
event:
  id: id
  type: {constant: lead}
  action_source: {constant: offline}
"""
T_MS = NOW_MS - 3_600_000


def plan_of(extra: str):
    """BASE plus `extra`; an `  id:` line in extra replaces BASE's."""
    base = BASE.replace("  id: id\n", "") if extra.startswith("  id:") else BASE
    return parse_mapping(base + extra, "case.yaml")


def outcome(result):
    if result.event is not None:
        return result.event.event
    if result.dead_letter is not None:
        return (result.dead_letter.reason, result.dead_letter.detail)
    return result.skipped


PARAMS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.struct([
    ("string_value", pa.string()), ("int_value", pa.int64()), ("double_value", pa.float64())]))]))


def params(**values):
    out = []
    for key, value in values.items():
        member = {"string_value": None, "int_value": None, "double_value": None}
        kind = ("string_value" if isinstance(value, str) else "int_value" if isinstance(value, int)
                else "double_value")
        member[kind] = value
        out.append({"key": key, "value": member})
    return out


CASES = [
    # --- units ------------------------------------------------------------------------------
    ("unit us", "  timestamp_ms: {path: t, unit: us}\n",
     [{"id": "a", "t": T_MS * 1000 + 999}], {}, [{"id": "a", "timestamp_ms": T_MS}]),
    ("unit ns", "  timestamp_ms: {path: t, unit: ns}\n",
     [{"id": "a", "t": T_MS * 1_000_000 + 5}], {}, [{"id": "a", "timestamp_ms": T_MS}]),
    ("unit us as numeric text", "  timestamp_ms: {path: t, unit: us}\n",
     [{"id": "a", "t": str(T_MS * 1000)}], {}, [{"id": "a", "timestamp_ms": T_MS}]),
    ("microseconds under unit ms name the unit", "  timestamp_ms: {path: t, unit: ms}\n",
     [{"id": "a", "t": T_MS * 1000}], {},
     [("invalid_timestamp", "event.timestamp_ms: epoch number out of range; it looks like epoch"
                            " microseconds: declare unit: us")]),
    ("nanoseconds under unit us name the unit", "  timestamp_ms: {path: t, unit: us}\n",
     [{"id": "a", "t": T_MS * 1_000_000}], {},
     [("invalid_timestamp", "event.timestamp_ms: epoch number out of range; it looks like epoch"
                            " nanoseconds: declare unit: ns")]),
    # --- key/value lookups in a list of structs ----------------------------------------------
    ("[key=value] then a typed member", "  source_url: params[key=page_location].value.string_value\n",
     [{"id": "a", "params": params(page_title="Home", page_location="https://s.example/")}],
     {"params": PARAMS}, [{"id": "a", "source_url": "https://s.example/"}]),
    ("[key=value] then * takes the first non-empty member",
     "  custom_event_name: {constant: x}\n  oppref: params[key=campaign].value.*\n",
     [{"id": "a", "params": params(campaign=42)}, {"id": "b", "params": params(campaign="c9")},
      {"id": "c", "params": params(other="z")}, {"id": "d", "params": None}],
     {"params": PARAMS}, [{"id": "a", "oppref": "42"}, {"id": "b", "oppref": "c9"}, {"id": "c"},
                          {"id": "d"}]),
    ("an absent key falls back to the next path",
     "  source_url: params[key=page_location].value.string_value | url\n",
     [{"id": "a", "params": params(page_title="T"), "url": "https://fallback.example/"}],
     {"params": PARAMS}, [{"id": "a", "source_url": "https://fallback.example/"}]),
    # --- placeholders ------------------------------------------------------------------------
    ("per field placeholders fall through to the next path",
     "  id: {path: 'order | id', placeholders: ['(not set)']}\n",
     [{"id": "a", "order": "(not set)"}, {"id": "b", "order": " (NOT SET) "},
      {"id": "c", "order": "o-1"}], {}, [{"id": "a"}, {"id": "b"}, {"id": "o-1"}]),
    ("mapping-wide placeholders reach templates",
     "  id: 'ord_{order} | id'\nplaceholders: ['(not set)', 'null']\n",
     [{"id": "a", "order": "(not set)"}, {"id": "b", "order": "null"}, {"id": "c", "order": "7"}],
     {}, [{"id": "a"}, {"id": "b"}, {"id": "ord_7"}]),
    ("a placeholder id is a missing id", "placeholders: ['(not set)']\n",
     [{"id": "(not set)"}], {},
     [("missing_id", None)]),
    # --- query parameters --------------------------------------------------------------------
    ("query takes a parameter of a URL column", "  oppref: {path: landing, query: oppref}\n",
     [{"id": "a", "landing": "https://s.example/p?utm=x&oppref=op_1"},
      {"id": "b", "landing": "https://s.example/p?utm=x"}, {"id": "c", "landing": None}],
     {}, [{"id": "a", "oppref": "op_1"}, {"id": "b"}, {"id": "c"}]),
    ("query then fallback", "  oppref: {path: 'landing | ref', query: oppref}\n",
     [{"id": "a", "landing": "https://s.example/", "ref": "https://r.example/?oppref=r1"}],
     {}, [{"id": "a", "oppref": "r1"}]),
    # --- filters -----------------------------------------------------------------------------
    ("filter in keeps listed values, case-blind",
     "filter:\n  - {path: status, in: [paid, partially_refunded]}\n",
     [{"id": "a", "status": "paid"}, {"id": "b", "status": "Pending"},
      {"id": "c", "status": " PARTIALLY_REFUNDED"}, {"id": "d", "status": None}], {},
     [{"id": "a"}, "filtered_out", {"id": "c"}, "filtered_out"]),
    ("filter not_in skips listed values", "filter:\n  - {path: test, not_in: [true]}\n",
     [{"id": "a", "test": True}, {"id": "b", "test": False}, {"id": "c", "test": None}], {},
     ["filtered_out", {"id": "b"}, {"id": "c"}]),
    ("filters on a number and on a nested struct",
     "filter:\n  - {path: n, in: [1, 2]}\n  - {path: s.kind, not_in: [bot]}\n",
     [{"id": "a", "n": 1, "s": {"kind": "web"}}, {"id": "b", "n": 3, "s": {"kind": "web"}},
      {"id": "c", "n": 2, "s": {"kind": "bot"}}], {},
     [{"id": "a"}, "filtered_out", "filtered_out"]),
]


def _pick(event, want):
    return {key: event.get(key) for key in want} if isinstance(event, dict) else event


@pytest.mark.parametrize("label, extra, rows, types, expected", CASES,
                         ids=[case[0] for case in CASES])
def test_forms_on_both_mapping_paths(label, extra, rows, types, expected):
    schema = pa.schema([(name, types.get(name) or pa.infer_type([row.get(name) for row in rows]))
                        for name in dict.fromkeys(k for row in rows for k in row)])
    table = pa.Table.from_pylist(rows, schema=schema)
    results = map_both_ways(plan_of(extra), table, columnar=True)
    got = [outcome(result) for result in results]
    for index, (one, want) in enumerate(zip(got, expected, strict=True)):
        if isinstance(want, dict):
            assert isinstance(one, dict), (index, one)
            assert {key: one.get(key) for key in want} == want, index
            if "oppref" not in want and "oppref" in extra:
                assert "oppref" not in one
        elif isinstance(want, tuple):
            assert one[0] == want[0] and (want[1] is None or one[1] == want[1]), one
        else:
            assert one == want


def test_filtered_rows_are_counted_by_filter():
    plan = plan_of("filter:\n  - {path: status, in: [paid]}\n")
    mapper = RowMapper(plan, clock_ms=lambda: NOW_MS)
    for status in ("paid", "pending", "voided"):
        mapper.map_row({"id": status, "status": status})
    assert mapper.counters["filter[0].filtered_out"] == 2


def test_the_unit_hint_is_logged_once_per_run(caplog):
    from transforms import mapper as mapper_module
    mapper_module._logged_hints.clear()
    mapper = RowMapper(plan_of("  timestamp_ms: {path: t, unit: ms}\n"), clock_ms=lambda: NOW_MS)
    with caplog.at_level(logging.WARNING, logger="transforms.mapper"):
        for index in range(3):
            assert mapper.map_row({"id": str(index), "t": T_MS * 1000}).dead_letter is not None
    hints = [r.getMessage() for r in caplog.records if "declare unit: us" in r.getMessage()]
    assert len(hints) == 1
    assert "looks like epoch microseconds: declare unit: us" in hints[0]


# --- grouping ------------------------------------------------------------------------------------

GROUPED = BASE.replace("id: id", "id: order_{order}") + """
group_by: order
data:
  currency: currency
  amount: total
  contents:
    fields:
      id: sku
      quantity: qty
      amount: price
"""


def _grouped_base(id_path: str) -> str:
    return BASE.replace("id: id", f"id: {id_path}").replace("{constant: lead}", "{constant: purchase}")


def _grouped_plan_text() -> str:
    return GROUPED.replace("type: {constant: lead}", "type: {constant: purchase}")


def _grouped_plan():
    return parse_mapping(_grouped_plan_text(), "grouped.yaml")


@pytest.mark.parametrize("rows, expected_contents", [
    # the first row carries the order fields; every row is an item
    ([{"order": "1", "currency": "JPY", "total": 3000, "sku": "A", "qty": 2, "price": 1000},
      {"order": "1", "currency": None, "total": None, "sku": "B", "qty": 1, "price": 1000}],
     [{"id": "A", "quantity": 2, "amount": 1000}, {"id": "B", "quantity": 1, "amount": 1000}]),
    # one row: one item
    ([{"order": "2", "currency": "EUR", "total": 9.5, "sku": "C", "qty": 1, "price": 9.5}],
     [{"id": "C", "quantity": 1, "amount": 950}]),
])
def test_a_group_is_one_event_with_every_row_as_an_item(rows, expected_contents):
    mapper = RowMapper(_grouped_plan(), clock_ms=lambda: NOW_MS)
    result = mapper.map_group(rows, [f"o.csv#row={i + 1}" for i in range(len(rows))])
    data = result.event.event["data"]
    assert result.event.event["id"] == f"order_{rows[0]['order']}"
    assert data["contents"] == expected_contents
    assert data["currency"] == rows[0]["currency"]


GROUP_CASES = [
    ("the first row is filtered: the whole group is", "filter:\n  - {path: status, in: [paid]}\n",
     [{"order": "1", "status": "pending", "currency": "USD", "total": 1, "sku": "A", "qty": 1,
       "price": 1}, {"order": "1", "status": "paid", "sku": "B", "qty": 1, "price": 1}],
     "filtered_out"),
    ("the first row has no currency: the group is dead-lettered", "",
     [{"order": "1", "currency": None, "total": 5, "sku": "A", "qty": 1, "price": 5},
      {"order": "1", "currency": "USD", "sku": "B", "qty": 1, "price": 5}],
     ("missing_currency", "data.amount is set but data.currency is empty")),
    ("an item's bad quantity names its position in the group", "",
     [{"order": "1", "currency": "USD", "total": 5, "sku": "A", "qty": 1, "price": 5},
      {"order": "1", "sku": "B", "qty": "many", "price": 5}],
     ("invalid_contents", None)),
]


@pytest.mark.parametrize("label, extra, rows, expected", GROUP_CASES,
                         ids=[case[0] for case in GROUP_CASES])
def test_group_outcomes_on_both_mappers(label, extra, rows, expected):
    from transforms.columnar import ColumnarMapper
    plan = parse_mapping(_grouped_plan_text() + extra, "grouped.yaml")
    sources = [f"o.csv#row={i + 1}" for i in range(len(rows))]
    by_rows = RowMapper(plan, clock_ms=lambda: NOW_MS).map_group(rows, sources)
    by_columns = ColumnarMapper(plan, clock_ms=lambda: NOW_MS).map_group(rows, sources)
    assert by_rows == by_columns
    got = outcome(by_rows)
    if isinstance(expected, tuple):
        assert got[0] == expected[0] and (expected[1] is None or got[1] == expected[1]), got
    else:
        assert got == expected


def test_grouped_items_from_a_list_in_each_row():
    plan = parse_mapping(_grouped_base("o") + "group_by: o\ndata:\n  currency: c\n"
                         "  contents:\n    path: items\n    fields: {id: items.X.sku}\n", "g.yaml")
    rows = [{"o": "1", "c": "EUR", "items": [{"sku": "A"}, {"sku": "B"}]},
            {"o": "1", "items": []}, {"o": "1", "items": [{"sku": "C"}]}]
    result = RowMapper(plan, clock_ms=lambda: NOW_MS).map_group(rows, ["a", "b", "c"])
    assert [item["id"] for item in result.event.event["data"]["contents"]] == ["A", "B", "C"]


def test_contents_without_a_path_need_group_by():
    with pytest.raises(MappingFileError, match="data.contents.path: is required but missing"):
        parse_mapping(BASE + "data:\n  contents:\n    fields: {id: sku}\n", "x.yaml")
