"""ColumnarMapper gives exactly what RowMapper gives on the same rows as dicts.

Each case maps one Arrow table both ways, batch by batch, with a fixed clock, and compares every
MapResult (events, dead letters with reason and detail, skips) and the counters. Whether the
batch took the column path or fell back to row dicts is asserted too, so a case cannot pass by
silently taking the row path.
"""
from __future__ import annotations

import collections.abc
import datetime as dt
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.generate_rows import commanders_act_rows, write_parquet
from connectors.rows import parquet_batch_to_rows
from transforms.arrow_rows import json_column
from transforms.columnar import ColumnarMapper
from transforms.mapper import RowMapper
from transforms.mapping import load_mapping, parse_mapping

NOW_MS = 1_795_000_000_000
NOW = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.timezone.utc)


def map_both_ways(plan, table: pa.Table, *, columnar: bool, chunk: int = 97):
    by_columns = ColumnarMapper(plan, clock_ms=lambda: NOW_MS)
    by_rows = RowMapper(plan, clock_ms=lambda: NOW_MS)
    from_columns, from_rows = [], []
    first = 1
    for batch in table.to_batches(max_chunksize=chunk):
        sources = [f"t.parquet#row={first + i}" for i in range(batch.num_rows)]
        first += batch.num_rows
        assert (by_columns.positional_rows(batch) is not None) is columnar
        from_columns.extend(by_columns.map_batch(batch, sources))
        from_rows.extend(by_rows.map_row(row, source) for row, source
                         in zip(parquet_batch_to_rows(batch), sources, strict=True))
    assert len(from_columns) == table.num_rows
    for index, (got, want) in enumerate(zip(from_columns, from_rows, strict=True)):
        assert got == want, f"row {index + 1}"
    assert by_columns.counters == by_rows.counters
    return from_columns


def test_commanders_act_rows_with_every_kind_of_bad_row(tmp_path):
    path = str(tmp_path / "rows.parquet")
    write_parquet(path, 2_000, seed=7, now_ms=NOW_MS, bad_fraction=0.3)
    results = map_both_ways(load_mapping(), pq.read_table(path), columnar=True)
    reasons = {r.dead_letter.reason for r in results if r.dead_letter is not None}
    assert len(reasons) >= 5, reasons               # the bad rows reach many different checks
    assert sum(r.event is not None for r in results) > 1_000


def test_flat_dotted_columns_and_mixed_readings_take_the_first_non_null():
    plan = load_mapping()
    table = pa.Table.from_pylist([
        # nested context.event_id wins over the flat column when both are set
        {"event_name": "purchase", "context": {"event_id": "nested", "device.ip": None},
         "context.event_id": "flat", "context.device": {"ip": "10.0.0.1"},
         "value": 5.0, "currency": "usd", "user.email": " A@Example.com ", "type": "offline"},
        # nested is null: the flat column is read; the struct holding a dotted name too
        {"event_name": "purchase", "context": {"event_id": None, "device.ip": "10.0.0.2"},
         "context.event_id": "flat-2", "context.device": None, "value": 1.5,
         "currency": "EUR", "user.email": "b@example.com", "type": "offline"},
        # the whole context struct is null
        {"event_name": "lead", "context": None, "context.event_id": "flat-3",
         "context.device": {"ip": "not an ip"}, "value": None, "currency": None,
         "user.email": None, "type": "offline"},
        # nothing anywhere: missing_id
        {"event_name": "lead", "context": None, "context.event_id": None,
         "context.device": None, "value": None, "currency": None, "user.email": "x",
         "type": "offline"},
    ])
    results = map_both_ways(plan, table, columnar=True, chunk=3)
    assert results[0].event.event["id"] == "nested"
    assert results[1].event.event["id"] == "flat-2"
    assert results[2].event.event["id"] == "flat-3"
    assert results[3].dead_letter.reason == "missing_id"
    assert results[0].event.event["user"]["emails_sha256"] == [
        hashlib.sha256(b"a@example.com").hexdigest()]


def test_templates_consent_pixel_and_custom_data_read_positions():
    plan = parse_mapping("""
extends: default
event:
  id: "order_{order.id}_{order.line}"
  timestamp_ms: {path: ts, unit: s}
consent: consent.ads
pixel_id: pixel
data:
  custom:
    coupon: order.coupon
    score: score
""")
    table = pa.Table.from_pylist([
        {"event_name": "Spin_Wheel", "order": {"id": 7, "line": 1.0, "coupon": "X1"},
         "ts": NOW_MS // 1000 - 60, "consent": {"ads": "YES"}, "pixel": "px_eu", "score": 0.5,
         "context": {"page": {"url": "https://e.example/"}}},
        {"event_name": "purchase", "order": {"id": 8, "line": None, "coupon": None},
         "ts": NOW_MS // 1000, "consent": {"ads": "yes"}, "pixel": None, "score": None,
         "context": {"page": {"url": "https://e.example/"}}},
        {"event_name": "purchase", "order": {"id": 9, "line": 2.0, "coupon": None},
         "ts": NOW_MS // 1000, "consent": {"ads": "no"}, "pixel": "px", "score": 1.0,
         "context": None},
    ])
    results = map_both_ways(plan, table, columnar=True)
    assert results[0].event.event["id"] == "order_7_1"
    assert results[0].event.pixel_id == "px_eu"
    assert results[0].event.event["data"]["coupon"] == "X1"
    assert results[1].dead_letter is not None          # template placeholder empty: no id
    assert results[2].skipped == "no_consent"


def test_binary_hashes_and_nanosecond_timestamps_convert_like_rows():
    digest = hashlib.sha256(b"a@example.com").digest()
    table = pa.table({
        "event_name": ["lead", "lead"],
        "context": pa.array([{"event_id": "a", "event_timestamp": NOW},
                             {"event_id": "b", "event_timestamp": None}],
                            pa.struct([("event_id", pa.string()),
                                       ("event_timestamp", pa.timestamp("ns", "UTC"))])),
        "user": pa.array([{"email": digest}, {"email": None}],
                         pa.struct([("email", pa.binary())])),
    })
    plan = parse_mapping("extends: default\nevent:\n  timestamp_ms: {path: context.event_timestamp,"
                         " unit: ms}\n  action_source: {constant: mobile_app}\n")
    results = map_both_ways(plan, table, columnar=True)
    assert results[0].event.event["user"]["emails_sha256"] == [digest.hex()]
    assert results[0].event.event["timestamp_ms"] == NOW_MS


@pytest.mark.parametrize("yaml_text, reason", [
    ("extends: default\nevent:\n  id: ids.0\n", "a path indexing a list"),
    ("extends: default\nevent:\n  id: attrs.event_id\n", "a path into a map column"),
    ("extends: default\nuser:\n  fields:\n    email: emails.X\n", "X at row level"),
])
def test_paths_through_lists_and_maps_are_read_per_row_from_their_column(yaml_text, reason):
    table = pa.table({
        "event_name": ["lead", "lead"],
        "ids": [["e-1"], []],
        "attrs": pa.array([[("event_id", "e-1")], []], pa.map_(pa.string(), pa.string())),
        "emails": [["a@example.com", "b@example.com"], None],
        "context": [{"device": {"ip": "10.0.0.1"}}, None],
    })
    map_both_ways(parse_mapping(yaml_text), table, columnar=True)


def test_a_path_absent_from_the_schema_reads_as_missing():
    table = pa.table({"event_name": ["lead", "purchase"], "context": [{"event_id": "a"}, None]})
    results = map_both_ways(load_mapping(), table, columnar=True)
    assert results[0].dead_letter.reason == "missing_source_url"
    assert results[1].dead_letter.reason == "missing_id"



def test_a_null_struct_hides_the_values_its_children_still_hold():
    """A writer may leave values under a null parent (Arrow keeps them, masked): they are
    missing on both paths, at the top level and one struct further down."""
    event_ids = pa.array(["kept", "hidden", "deep"])
    urls = pa.array(["https://a.example/1", "https://a.example/2", "https://a.example/3"])
    page = pa.StructArray.from_arrays([urls], ["url"], mask=pa.array([False, False, True]))
    context = pa.StructArray.from_arrays([event_ids, page], ["event_id", "page"],
                                         mask=pa.array([False, True, False]))
    table = pa.table({"event_name": ["lead"] * 3, "type": ["web"] * 3, "context": context})
    results = map_both_ways(load_mapping(), table, columnar=True)
    assert results[0].event.event["id"] == "kept"
    assert results[0].event.event["source_url"] == "https://a.example/1"
    assert results[1].dead_letter.reason == "missing_id"
    assert results[2].dead_letter.reason == "missing_source_url"

USER_ROWS = [
    # text everywhere; a hash passes through; a phone without +country takes the default region
    {"email": " A@Example.com ", "phone": "(415) 555-0100", "country": None, "state": "Texas",
     "zip": "78701-1234", "hash": "A" * 64, "name": "José"},
    # the row's country gives the phone region and the US-only state/zip rules
    {"email": "b@example.com", "phone": "020 7946 0018", "country": "GB", "state": "London",
     "zip": "SW1A 1AA", "hash": None, "name": "  "},
    # invalid values are left out and counted; blank text is missing
    {"email": "not an email", "phone": "12", "country": "Narnia", "state": "", "zip": "???",
     "hash": "xyz", "name": "O'Brien"},
]


@pytest.mark.parametrize("profile", ["openai", "scalar"])
def test_user_fields_built_column_wise_equal_build(profile):
    plan = parse_mapping(f"""
extends: default
user:
  profile: {profile}
  default_phone_region: US
  fields:
    email: u.email
    phone: u.phone
    country: u.country
    region: u.state
    postal_code: u.zip
    external_id: u.hash
    first_name: u.name
""")
    rows = [{"event_name": "lead", "type": "offline", "context": {"event_id": f"e{i}"},
             "u": user} for i, user in enumerate(USER_ROWS)]
    results = map_both_ways(plan, pa.Table.from_pylist(rows), columnar=True)
    users = [result.event.event.get("user") for result in results]
    if profile == "openai":
        assert users[0]["phone_numbers_sha256"] == [hashlib.sha256(b"14155550100").hexdigest()]
        assert users[0]["external_ids_sha256"] == ["a" * 64]
        assert users[1]["phone_numbers_sha256"] == [hashlib.sha256(b"442079460018").hexdigest()]
        assert users[2]["external_ids_sha256"] == [hashlib.sha256(b"xyz").hexdigest()]
        assert set(users[2]) == {"external_ids_sha256", "first_names_sha256"}
    else:
        assert users[1]["country_sha256"] == hashlib.sha256(b"gb").hexdigest()
        assert users[2]["external_id"] == "xyz"


def test_user_values_that_are_not_text_go_through_the_row_builder():
    plan = parse_mapping("extends: default\nuser:\n  fields:\n    email: emails\n    phone: phone\n"
                         "    country: country\n")
    table = pa.table({
        "event_name": ["lead"] * 3, "type": ["offline"] * 3,
        "context": [{"event_id": "a"}, {"event_id": "b"}, {"event_id": "c"}],
        "emails": [["a@example.com", "A@example.com ", "b@example.com", "c@x.io", "d@x.io"],
                   [], None],
        "phone": [4155550100, None, 33612345678],
        "country": ["US", None, "FR"],
    })
    by_columns = ColumnarMapper(plan, clock_ms=lambda: NOW_MS)
    batch = table.to_batches()[0]
    built = by_columns.built_users(batch, by_columns._columns(batch))
    from transforms.user_fields import NOT_BUILT
    assert [value is NOT_BUILT for value in built] == [True, False, True]
    results = map_both_ways(plan, table, columnar=True)
    assert len(results[0].event.event["user"]["emails_sha256"]) == 3   # the first 3 distinct


def test_one_mapper_serves_files_with_different_schemas():
    plan = load_mapping()
    by_columns = ColumnarMapper(plan, clock_ms=lambda: NOW_MS)
    by_rows = RowMapper(plan, clock_ms=lambda: NOW_MS)
    nested = pa.table({"event_name": ["lead"], "type": ["offline"],
                       "context": [{"event_id": "a"}], "user": [{"email": "a@example.com"}]})
    flat = pa.table({"event_name": ["lead"], "type": ["offline"],
                     "context.event_id": ["b"], "user.email": ["b@example.com"]})
    for table in (nested, flat, nested):
        batch = table.to_batches()[0]
        got = list(by_columns.map_batch(batch, ["f#row=1"]))
        assert got == [by_rows.map_row(parquet_batch_to_rows(batch)[0], "f#row=1")]
        assert got[0].event.event["user"]["emails_sha256"]
    assert len(by_columns._layouts) == 2          # one resolution per distinct schema


def test_rows_pyarrow_cannot_read_become_dead_letters_not_a_crash():
    user_type = pa.struct([("email", pa.string()), ("email", pa.string())])
    table = pa.table({
        "event_name": ["lead", "lead"], "context": [{"event_id": "a"}, {"event_id": "b"}],
        "user": pa.StructArray.from_arrays(
            [pa.array(["a@example.com", None]), pa.array(["b@example.com", None])],
            fields=list(user_type)),
    })
    by_columns = ColumnarMapper(load_mapping(), clock_ms=lambda: NOW_MS)
    results = list(by_columns.map_batch(table.to_batches()[0], ["f#row=1", "f#row=2"]))
    assert [r.dead_letter.reason for r in results] == ["mapping_error", "mapping_error"]
    assert [r.dead_letter.source for r in results] == ["f#row=1", "f#row=2"]
    assert "duplicate field names" in results[0].dead_letter.detail
    assert "example.com" not in results[0].dead_letter.detail
    assert by_columns.counters == {}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_published_rules_read_the_same_by_columns_and_by_rows():
    """Names with non-ASCII punctuation, international phones, Android ids, source URLs and
    custom names through the column path (its cached name cores included) and the row path."""
    rows = [
        ("D\u2019Angelo", "Anne\u2013Marie", "0044 20 7946 0958",
         "38400000-8CF0-11BD-B23E-10B96E40000D", "https://s.example/p?e=a%40b.c#x", "Promo_Click"),
        ("D'Angelo", "Anne-Marie", "+44 (0) 20 7946 0958",
         "00000000-0000-0000-0000-000000000000", "https://s.example/p", "promo_view"),
        ("Zoe\u0308", "O\u2019Brien", "+683 4002", "not-a-uuid", "/checkout/thanks", "purchase"),
        ("Jo", "Lee", "+49 30 123456789012", None, "s.example/p/9", "_promo"),
    ]
    table = pa.Table.from_pylist([
        {"event_name": name, "context": {"event_id": f"e{i}", "page": {"url": url},
                                         "device": {"advertising_id": gaid}},
         "user": {"firstname": first, "lastname": last, "phone": phone}}
        for i, (first, last, phone, gaid, url, name) in enumerate(rows)])
    results = map_both_ways(load_mapping(), table, columnar=True)

    first, second = results[0].event.event, results[1].event.event
    assert (first["custom_event_name"], first["source_url"]) == ("promo_click", "https://s.example/p")
    assert first["user"] == {
        "first_names_sha256": [_sha("d\u2019angelo")], "last_names_sha256": [_sha("anne\u2013marie")],
        "phone_numbers_sha256": [_sha("442079460958")],
        "android_advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d"}
    assert second["user"] == {
        "first_names_sha256": [_sha("dangelo")], "last_names_sha256": [_sha("annemarie")],
        "phone_numbers_sha256": [_sha("442079460958")]}
    assert [r.dead_letter.reason for r in results[2:]] == ["invalid_source_url",
                                                           "invalid_custom_event_name"]
    third_user = results[2].dead_letter.event["user"]
    assert third_user == {"first_names_sha256": [_sha("zo\u00eb")],
                          "last_names_sha256": [_sha("o\u2019brien")]}


ITEMS_MAPPING = """
extends: default
data:
  contents:
    path: order.items
    fields:
      id: order.items.X.sku
      name: order.items.X.product.name | order.items.X.title
      content_type: {path: order.items.X.kind | content_type, default: product}
      amount: {path: order.items.X.product.price, unit: major}
      quantity: order.items.X.qty
      currency: order.items.X.currency
      variant_dict: order.items.X.variants
"""
ITEM_TYPE = pa.struct([
    ("sku", pa.string()), ("qty", pa.int64()), ("currency", pa.string()),
    ("kind", pa.string()), ("title", pa.string()),
    ("product", pa.struct([("name", pa.string()), ("price", pa.float64())])),
    ("variants", pa.map_(pa.string(), pa.string()))])


def _items_table(items: list) -> pa.Table:
    count = len(items)
    return pa.table({
        "event_name": ["purchase"] * count, "type": ["offline"] * count,
        "currency": ["EUR", "JPY", "EUR", "USD", "EUR", "EUR"][:count],
        "value": [10.5] * count, "content_type": [None, "service", None, None, None, None][:count],
        "context": [{"event_id": f"e{i}"} for i in range(count)],
        "order": pa.array([{"items": row} for row in items],
                          pa.struct([("items", pa.list_(ITEM_TYPE))])),
    })


def test_items_of_a_list_of_structs_are_read_as_tuples_exactly_as_dicts():
    item = {"sku": "A1", "qty": 2, "currency": None, "kind": None, "title": "T-shirt",
            "product": {"name": "  ", "price": 9.99}, "variants": [("size", "M")]}
    items = [
        [item, {**item, "sku": " B2 ", "kind": "", "product": None, "variants": None}],
        [{**item, "currency": "JPY", "product": {"name": "Mug", "price": 1200.0}}],
        [],                                                  # empty list: no contents
        None,                                                # null list: no contents
        [None, {**item, "qty": None}],                       # a null item: empty, counted
        [{**item, "currency": "EURO"}],                      # a bad item: a dead letter
    ]
    table = _items_table(items)
    plan = parse_mapping(ITEMS_MAPPING)
    assert ColumnarMapper(plan).item_tuples(table.to_batches()[0])
    results = map_both_ways(plan, table, columnar=True, chunk=4)
    contents = [r.event.event["data"].get("contents") if r.event else None for r in results]
    assert contents[0] == [
        {"id": "A1", "name": "T-shirt", "content_type": "product", "quantity": 2,
         "variant_dict": {"size": "M"}, "amount": 999},
        {"id": "B2", "name": "T-shirt", "content_type": "product", "quantity": 2}]
    assert contents[1] == [{"id": "A1", "name": "Mug", "content_type": "service", "quantity": 2,
                            "currency": "JPY", "variant_dict": {"size": "M"}, "amount": 1200}]
    assert contents[2] is None and contents[3] is None
    assert [c.get("id") for c in contents[4]] == [None, "A1"]   # the null item: its default only
    assert results[5].dead_letter.reason == "invalid_currency"


def test_items_that_are_not_a_list_of_structs_are_read_as_dicts():
    plan = parse_mapping(ITEMS_MAPPING)
    # JSON text items (a warehouse's JSON column read as text) and a flat 'order.items' column
    as_text = pa.table({"event_name": ["purchase"], "type": ["offline"], "currency": ["EUR"],
                        "context": [{"event_id": "e1"}],
                        "order.items": ['[{"sku": "A1", "qty": 1}]']})
    assert not ColumnarMapper(plan).item_tuples(as_text.to_batches()[0])
    results = map_both_ways(plan, as_text, columnar=True)
    assert results[0].event.event["data"]["contents"] == [
        {"id": "A1", "content_type": "product", "quantity": 1}]


def _json_items_table(documents: list) -> pa.Table:
    """The items as a JSON column named `order.items` (a PostgreSQL jsonb column, flat)."""
    count = len(documents)
    texts = [None if doc is None else json.dumps(doc) for doc in documents]
    return pa.table({
        "event_name": ["purchase"] * count, "type": ["offline"] * count,
        "currency": ["EUR"] * count, "value": [10.5] * count,
        "content_type": [None, "service"] * (count // 2) + [None] * (count % 2),
        "context": [{"event_id": f"e{i}"} for i in range(count)],
        "order.items": json_column(pa.array(texts, pa.string())),
    })


JSON_ITEM = {"sku": "A1", "qty": 2, "currency": None, "title": "T-shirt",
             "product": {"name": "  ", "price": 9.99}, "variants": {"size": "M"}}


def test_json_items_are_read_as_tuples_exactly_as_dicts():
    documents = [
        [JSON_ITEM, {"sku": " B2 ", "kind": "", "qty": 1.0, "product": None}],
        [{**JSON_ITEM, "currency": "JPY", "product": {"name": "Mug", "price": 1200}}],
        [],                                           # no contents
        None,                                         # SQL NULL: no contents
        [None, {"qty": "3"}],                         # a null item: empty, counted
        [{**JSON_ITEM, "currency": "EURO"}],          # a bad item: a dead letter
        [{"sku": 7, "qty": 2.5, "variants": ["a"]}],  # wrong types: a dead letter
        [{}],                                         # an empty object: an empty item
    ]
    table = _json_items_table(documents)
    plan = parse_mapping(ITEMS_MAPPING)
    mapper = ColumnarMapper(plan)
    assert all(mapper.item_tuples(batch) for batch in table.to_batches(max_chunksize=4))
    results = map_both_ways(plan, table, columnar=True, chunk=4)
    contents = [r.event.event["data"].get("contents") if r.event else None for r in results]
    assert contents[0] == [
        {"id": "A1", "name": "T-shirt", "content_type": "product", "quantity": 2,
         "variant_dict": {"size": "M"}, "amount": 999},
        {"id": "B2", "content_type": "product", "quantity": 1}]
    assert contents[1][0]["amount"] == 1200 and contents[1][0]["currency"] == "JPY"
    assert contents[2] is None and contents[3] is None
    assert [r.dead_letter.reason for r in results if r.dead_letter] == [
        "invalid_currency", "invalid_contents"]


def test_json_items_with_placeholders_are_read_as_dicts():
    # a "(not set)" placeholder is checked per item value either way: tuples would not pay
    plan = parse_mapping(ITEMS_MAPPING.replace("extends: default\n",
                                               "extends: default\nplaceholders: [n/a]\n"))
    table = _json_items_table([[JSON_ITEM, {**JSON_ITEM, "sku": "n/a"}], [JSON_ITEM]])
    assert not ColumnarMapper(plan).item_tuples(table.to_batches()[0])
    results = map_both_ways(plan, table, columnar=True)
    assert [item.get("id") for item in results[0].event.event["data"]["contents"]] == [
        "A1", None]


@pytest.mark.parametrize("odd", [
    '[{"sku": "A1"}]',                # a JSON string holding a list: parsed by the row path
    {"sku": "A1"},                    # an object, not a list: a dead letter
    [{"sku": "A1"}, "B2"],            # a list holding a scalar: an empty item
    [[{"sku": "A1"}]],                # a list of lists
])
def test_json_items_that_are_not_lists_of_objects_are_read_as_dicts(odd):
    # the chunk holding the odd document falls back to dict items; the other chunk does not
    table = _json_items_table([[JSON_ITEM], [JSON_ITEM], [JSON_ITEM], odd])
    plan = parse_mapping(ITEMS_MAPPING)
    mapper = ColumnarMapper(plan)
    assert [mapper.item_tuples(batch) for batch in table.to_batches(max_chunksize=2)] == [
        True, False]
    map_both_ways(plan, table, columnar=True, chunk=2)


def map_dicts_both_ways(plan, rows: list, chunk: int = 50, now_ms: int = NOW_MS):
    """ColumnarMapper.map_rows (chunks of dicts read into columns) against RowMapper.map_row."""
    by_columns = ColumnarMapper(plan, clock_ms=lambda: now_ms)
    by_rows = RowMapper(plan, clock_ms=lambda: now_ms)
    sources = [f"t.jsonl#row={i + 1}" for i in range(len(rows))]
    got = []
    for start in range(0, len(rows), chunk):
        got.extend(by_columns.map_rows(rows[start:start + chunk], sources[start:start + chunk]))
    want = [by_rows.map_row(row, source) for row, source in zip(rows, sources, strict=True)]
    assert len(got) == len(rows)
    for index, (one, other) in enumerate(zip(got, want, strict=True)):
        assert one == other, f"row {index + 1}"
    assert by_columns.counters == by_rows.counters
    return got


class _UnreadableMapping(collections.abc.Mapping):
    """A record whose fields cannot be read (a driver's own record type failing)."""

    def __getitem__(self, key):
        raise RuntimeError("unreadable")

    def get(self, key, default=None):
        raise RuntimeError("unreadable")

    def __iter__(self):
        return iter(["name"])

    def __len__(self):
        return 1


def test_an_item_that_cannot_be_read_is_a_dead_letter_not_a_crash():
    # The row path makes it a mapping_error dead letter; read as item tuples, the same failure
    # must send the chunk the row way rather than fail the whole chunk.
    rows = [{"event_name": "purchase", "type": "offline", "currency": "EUR",
             "context": {"event_id": f"e{i}"},
             "order": {"items": [{"sku": "A1", "qty": 1,
                                  "product": _UnreadableMapping() if i == 1 else None}]}}
            for i in range(3)]
    results = map_dicts_both_ways(parse_mapping(ITEMS_MAPPING), rows, chunk=3)
    assert [r.dead_letter.reason if r.dead_letter else None for r in results] == [
        None, "mapping_error", None]


def test_row_dicts_read_into_columns_map_exactly_as_row_by_row():
    rows = list(commanders_act_rows(1_500, seed=3, now_ms=NOW_MS, bad_fraction=0.3))
    # values build_columns leaves to build(): lists, numbers, a dict; and a chunk whose rows
    # are not all dicts (a JSON line that is a list), mapped row by row
    rows[0]["user"]["email"] = ["a@example.com", "b@example.com"]
    rows[1]["user"]["phone"] = 33612345678
    rows[2]["user"]["city"] = {"name": "Paris"}
    rows[60] = ["not", "a", "record"]
    results = map_dicts_both_ways(load_mapping(), rows)
    reasons = {r.dead_letter.reason for r in results if r.dead_letter is not None}
    assert len(reasons) >= 5 and "mapping_error" in reasons, reasons
    assert sum(r.event is not None for r in results) > 800


@pytest.mark.parametrize("preset", ["ga4", "segment", "snowplow"])
def test_preset_rows_read_into_columns_map_exactly_as_row_by_row(preset):
    # (shopify is a group_by preset: its groups are mapped from row dicts by map_group)
    from tests.pipeline import preset_builders as b
    rows = {
        "ga4": lambda: [b.ga4_row(name, i, params={"page_location": "https://s.example/p?q=1",
                                                   "currency": "EUR", "value": 12.5},
                                  transaction_id=tid, items=[("sku-1", "Mug", 6.25, 2)])
                        for i, (name, tid) in enumerate([
                            ("purchase", "T-1"), ("purchase", "(not set)"), ("page_view", None),
                            ("add_to_cart", None), ("generate_lead", None), ("scroll", None)])],
        "segment": lambda: [dict(zip(b.SEGMENT_COLUMNS, b.segment_order(
            f"m{i}", f"o{i}", total, currency, [{"product_id": "p1", "price": 5, "quantity": 1}]),
            strict=True))
            for i, (total, currency) in enumerate(
                [(19.99, "USD"), (1200, "JPY"), (None, None), (5, "usd")])],
        "snowplow": lambda: [b.snowplow_event(f"s{i}", event, name, tr_orderid=order,
                                              tr_total=total, tr_currency="EUR")
                             for i, (event, name, order, total) in enumerate([
                                 ("transaction", "transaction", "o-1", 30.0),
                                 ("struct", "add_to_cart", None, None),
                                 ("page_view", "page_view", None, None)])],
    }[preset]()
    now_ms = b.HOUR_AGO_MS + 3_600_000
    results = map_dicts_both_ways(load_mapping(preset), rows, chunk=4, now_ms=now_ms)
    assert any(r.event is not None for r in results)


def _param(key, **value):
    return {"key": key, "value": {"string_value": value.get("s"), "int_value": value.get("i"),
                                  "float_value": None, "double_value": value.get("d")}}


def test_ga4_export_batches_map_column_wise_exactly_as_row_by_row():
    """The preset's `event_params[key=...]` paths share one index of each row's params, from
    Arrow batches and from row dicts."""
    from benchmarks.generate_ga4 import SCHEMA, ga4_batches
    table = pa.Table.from_batches(ga4_batches(800, NOW_MS, seed=5, batch_rows=97))
    # the first of two params with one key wins, a param without a key is skipped, and a
    # row without params reads as a row whose params hold none of the keys
    purchase = next(row for row in table.to_pylist() if row["event_name"] == "purchase")
    edges = [dict(purchase) for _ in range(3)]
    edges[0]["event_params"] = [_param("page_location", s="https://s.example/p"),
                                _param("currency", s="EUR"), _param("currency", s="USD"),
                                _param(None, s="x")]
    edges[1]["event_params"] = []
    edges[2]["event_params"] = None
    table = pa.concat_tables([table, pa.Table.from_pylist(edges, schema=SCHEMA)])
    results = map_both_ways(load_mapping("ga4"), table, columnar=True)
    # the same rows as dicts (a BigQuery source), read into columns the same way
    from_dicts = map_dicts_both_ways(load_mapping("ga4"), table.to_pylist(), chunk=97)
    assert [r.event and r.event.event for r in from_dicts] == [
        r.event and r.event.event for r in results]
    assert sum(r.event is not None for r in results) > 300
    first_wins, no_params, null_params = results[-3:]
    assert first_wins.event.event["data"]["currency"] == "EUR"
    assert first_wins.event.event["source_url"] == "https://s.example/p"
    assert (no_params.dead_letter.reason, null_params.dead_letter.reason) == (
        "missing_currency", "missing_currency")


def test_key_selections_from_two_lists_of_row_dicts_read_each_list():
    """Heads are kept per list: `ids[key=...]` and `pages[key=...]` never read each other."""
    plan = parse_mapping("""
version: 1
event:
  id: "ids[key=order].value | ids[key=fallback].value"
  type: {constant: purchase}
  timestamp_ms: ts
  action_source: {constant: web}
  source_url: pages[key=landing].value
  oppref: {path: "pages[key=landing].value", query: oppref}
data:
  amount: {path: "ids[key=total].value | pages[key=total].value", unit: major}
  currency: {constant: USD}
""")
    rows = [{"ts": NOW_MS - 1000 * i,
             "ids": [{"key": "order", "value": f"o-{i}"}, {"key": "total", "value": 5}]
             if i % 3 else [{"key": "fallback", "value": f"f-{i}"}],
             "pages": [{"key": "landing", "value": f"https://s.example/{i}?oppref=p{i}"},
                       {"key": "total", "value": 7.5}] if i % 4 else None}
            for i in range(12)]
    results = map_dicts_both_ways(plan, rows, chunk=5)
    assert [(r.event.event["id"], r.event.event["data"]["amount"]) for r in results
            if r.event is not None] == [
        (f"{'o' if i % 3 else 'f'}-{i}", 500 if i % 3 else 750) for i in range(12) if i % 4]
