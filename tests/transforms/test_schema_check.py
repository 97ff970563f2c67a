"""The mapping against a source's columns (pure: plans and column lists)."""
from __future__ import annotations

import pyarrow as pa
import pytest
from google.cloud.bigquery import SchemaField

from transforms.errors import MappingFileError
from transforms.mapping import load_mapping, parse_mapping
from transforms.schema_check import (
    ANY,
    LIST,
    SCALAR,
    STRUCT,
    Column,
    check_mapping,
    columns_from_arrow,
    columns_from_bigquery,
    columns_from_names,
    raise_for_problems,
)


def plan(yaml_text: str):
    return parse_mapping(yaml_text, "mapping.yaml")


ORDERS = """
version: 1
event:
  id: order_{order_id}
  type: {constant: purchase}
  timestamp_ms: {path: created_at, unit: iso}
  oppref: click_id | attribution.oppref
data:
  amount: {path: revenue, unit: major}
  currency: {path: currency, default: USD}
  contents:
    path: items
    fields:
      id: items.X.sku
      quantity: items.X.qty
user:
  fields:
    email: email
    phone: user.phone
"""

FLAT = columns_from_names(["order_id", "created_at", "click_id", "revenue", "currency",
                           "items", "email", "user.phone"])


def check(yaml_text: str, columns, default_plan=None):
    return check_mapping(plan(yaml_text), columns, "export.csv", default_plan)


def test_a_mapping_whose_paths_all_match_has_no_problem():
    result = check(ORDERS, FLAT)
    assert result.problems == ()
    # the fallback attribution.oppref matches nothing, click_id does: a note, not an error
    assert result.notes == ("event.oppref: the fallback `attribution.oppref` matches no column",)


@pytest.mark.parametrize(("wrong", "right", "location", "expected"), [
    ("email: email", "email: emial", "user.fields.email",
     "user.fields.email: `emial` matches no column; did you mean `email`?"),
    ("{path: revenue, unit: major}", "{path: revenu, unit: major}", "data.amount",
     "data.amount: `revenu` matches no column; did you mean `revenue`?"),
    ("order_{order_id}", "order_{orderid}", "event.id",
     "event.id: `orderid` matches no column; did you mean `order_id`?"),
    ("phone: user.phone", "phone: user.phon", "user.fields.phone",
     "user.fields.phone: `user.phon` matches no column; did you mean `user.phone`?"),
])
def test_a_path_matching_no_column_is_a_problem_naming_it_and_the_nearest_column(
        wrong, right, location, expected):
    result = check(ORDERS.replace(wrong, right), FLAT)
    assert result.problems == (expected,)


def test_a_contents_list_matching_no_column_is_reported_once_not_per_item_field():
    result = check(ORDERS.replace("items", "products"), FLAT)
    assert result.problems == ("data.contents.path: `products` matches no column",)


def test_an_item_path_through_a_text_column_is_not_checked_below_the_list():
    # CSV: `items` is JSON text, decoded by the mapper; what is inside is not known
    result = check(ORDERS.replace("items.X.qty", "items.X.anything"), FLAT)
    assert result.problems == ()


ARROW = pa.schema([
    ("order_id", pa.string()), ("created_at", pa.string()), ("click_id", pa.string()),
    ("revenue", pa.float64()), ("currency", pa.string()), ("email", pa.string()),
    ("user", pa.struct([("phone", pa.string()), ("email", pa.string())])),
    ("items", pa.list_(pa.struct([("sku", pa.string()), ("quantity", pa.int64())]))),
    ("tags", pa.map_(pa.string(), pa.string())),
])


def test_arrow_columns_reach_through_structs_lists_and_maps():
    columns = columns_from_arrow(ARROW)
    assert columns[6] == Column("user", STRUCT, (Column("phone"), Column("email")))
    assert columns[7].kind == LIST and columns[7].element.child("quantity") == Column("quantity")
    result = check(ORDERS.replace("items.X.qty", "items.X.quantity")
                   .replace("click_id |", "tags.source |"), columns)
    assert result.problems == ()
    result = check(ORDERS, columns)
    assert result.problems == (
        "data.contents.fields.quantity: `items.X.qty` matches no column; did you mean "
        "`items.X.quantity`?",)


def test_a_scalar_column_has_nothing_below_it_and_a_flat_dotted_column_matches():
    columns = columns_from_names(["order_id", "user", "user.email"])
    text = "version: 1\nevent: {id: order_id, type: {constant: purchase}}\n" \
           "user: {fields: {email: user.email, phone: user.phone}}\n"
    result = check(text, columns)
    assert result.problems == (
        "user.fields.phone: `user.phone` matches no column; did you mean `user.email`?",)


def test_a_column_of_unknown_structure_matches_any_path_below_it():
    columns = (Column("order_id"), Column("payload", ANY))
    text = "version: 1\nevent: {id: order_id, type: payload.event.name}\n"
    assert check(text, columns).problems == ()


def test_the_default_mappings_fields_are_notes_except_id_and_type():
    default = load_mapping()
    columns = columns_from_names(["event_name", "context.event_id", "user.email"])
    result = check_mapping(default, columns, "export.csv", default)
    assert result.problems == ()
    assert len(result.notes) == 1
    assert result.notes[0].startswith(
        "fields of the default mapping that match no column (left empty): "
        "event.timestamp_ms (`context.event_timestamp`), ")
    assert "user.fields.email" not in result.notes[0]
    missing_id = check_mapping(default, columns_from_names(["event_name"]), "ga4.parquet",
                               default)
    assert missing_id.problems == ("event.id: `context.event_id` matches no column",)


def test_extends_default_checks_only_what_the_file_changes_strictly():
    default = load_mapping()
    text = "extends: default\nuser:\n  fields:\n    email: mail_address\n"
    columns = columns_from_names(["event_name", "context.event_id", "email_address"])
    result = check_mapping(plan(text), columns, "export.csv", default)
    assert result.problems == (
        "user.fields.email: `mail_address` matches no column; did you mean `email_address`?",)


def test_bigquery_schema_fields_become_columns():
    schema = [SchemaField("order_id", "STRING"),
              SchemaField("user", "RECORD", fields=[SchemaField("email", "STRING")]),
              SchemaField("items", "RECORD", mode="REPEATED",
                          fields=[SchemaField("sku", "STRING"), SchemaField("qty", "INT64")]),
              SchemaField("payload", "JSON")]
    columns = columns_from_bigquery(schema)
    assert columns == (
        Column("order_id"), Column("user", STRUCT, (Column("email"),)),
        Column("items", LIST, (Column("X", STRUCT, (Column("sku"), Column("qty"))),)),
        Column("payload", SCALAR))


def test_raise_for_problems_names_the_mapping_the_source_and_the_fix():
    result = check(ORDERS.replace("email: email", "email: emial"), FLAT)
    with pytest.raises(MappingFileError) as caught:
        raise_for_problems(result, "mapping.yaml")
    assert str(caught.value).splitlines()[:2] == [
        "Mapping 'mapping.yaml' reads paths that match no column of export.csv:",
        "  - user.fields.email: `emial` matches no column; did you mean `email`?"]
    raise_for_problems(check(ORDERS, FLAT), "mapping.yaml")    # nothing to raise
