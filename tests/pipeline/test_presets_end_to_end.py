"""Each preset end to end on DirectRunner against the emulator, on a small export in its schema.

`--mapping <preset>` with no mapping file and no SQL: the exact events the emulator recorded,
the dead letters, the skips by reason and a reconciled report. The expected events are written
out by hand from each schema's documentation and the contract (hashes of the normalized text).
"""
from __future__ import annotations

import duckdb
import psycopg
import pytest

from pipeline.run import EXIT_OK, run
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import read_dead_letters, read_report, sha256
from tests.pipeline.preset_builders import (
    HOUR_AGO_MS,
    SEGMENT_COLUMNS,
    ga4_row,
    segment_order,
    shopify_order,
    snowplow_event,
    write_ga4_export,
    write_shopify_export,
    write_snowplow_export,
)

IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def delivery_args(emulator, tmp_path, *extra) -> list[str]:
    return ["--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(tmp_path / "dead" / "dead"),
            "--report", str(tmp_path / "report.json"), "--progress-seconds", "0",
            *IN_PROCESS, *extra]


def recorded_by_id(emulator) -> dict[str, dict]:
    events = emulator.recorded_events(EMULATOR_PIXEL_ID)
    by_id = {event["id"]: event for event in events}
    assert len(by_id) == len(events)
    return by_id


def assert_report(tmp_path, *, rows, accepted, dead, skipped):
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_accepted"]) == (rows, accepted)
    assert report["dead_letter_reasons"] == dead
    assert report["skip_reasons"] == skipped
    assert report["reconciled"] is True
    return report


# --- GA4 -----------------------------------------------------------------------------------------

def test_ga4_export_with_the_ga4_preset(emulator, tmp_path):
    page = "https://shop.example.com/checkout?oppref=op_ga&gclid=1"
    rows = [
        ga4_row("purchase", 101, transaction_id="T-1001", revenue=59.98, user_id="u-1",
                params={"page_location": page, "currency": "USD", "value": 59.98,
                        "transaction_id": "T-1001", "ga_session_id": 17},
                items=[("SKU-1", "Tee", 19.99, 2), ("SKU-2", "Cap", 20.0, 1)]),
        # ecommerce.transaction_id "(not set)": the id comes from the transaction_id param
        ga4_row("purchase", 102, revenue=None,
                params={"page_location": "https://shop.example.com/done", "currency": "EUR",
                        "value": 10, "transaction_id": "T-1002"},
                items=[("SKU-3", "Mug", 10.0, 1)]),
        ga4_row("page_view", 103, city="(not set)",
                params={"page_location": "https://shop.example.com/", "page_title": "Home"}),
        ga4_row("session_start", 104, params={"page_location": "https://shop.example.com/"}),
        ga4_row("add_to_cart", 105, ads="No", params={"page_location": page}),
        ga4_row("purchase", 106, transaction_id="T-1003", revenue=5.0,
                params={"page_location": page, "currency": "(not set)"}),
        ga4_row("generate_lead", 107, params={"page_location": "https://shop.example.com/contact"}),
    ]
    export = write_ga4_export(tmp_path / "export", rows)
    outcome = run(["--input", export, "--mapping", "ga4", *delivery_args(emulator, tmp_path)])
    assert outcome.exit_code == EXIT_OK

    geo = {"countries": ["US"], "cities": ["san francisco"], "regions": ["california"]}
    assert recorded_by_id(emulator) == {
        "T-1001": {
            "id": "T-1001", "type": "order_created", "timestamp_ms": HOUR_AGO_MS,
            "action_source": "web", "source_url": "https://shop.example.com/checkout",
            "oppref": "op_ga", "user": {"external_ids_sha256": [sha256("u-1")], **geo},
            "data": {"type": "contents", "amount": 5998, "currency": "USD", "contents": [
                {"id": "SKU-1", "name": "Tee", "amount": 1999, "quantity": 2,
                 "content_type": "product"},
                {"id": "SKU-2", "name": "Cap", "amount": 2000, "quantity": 1,
                 "content_type": "product"}]}},
        "T-1002": {
            "id": "T-1002", "type": "order_created", "timestamp_ms": HOUR_AGO_MS,
            "action_source": "web", "source_url": "https://shop.example.com/done", "user": geo,
            "data": {"type": "contents", "amount": 1000, "currency": "EUR", "contents": [
                {"id": "SKU-3", "name": "Mug", "amount": 1000, "quantity": 1,
                 "content_type": "product"}]}},
        f"ga4_1234567.890_{HOUR_AGO_MS * 1000 + 103}_page_view": {
            "id": f"ga4_1234567.890_{HOUR_AGO_MS * 1000 + 103}_page_view",
            "type": "page_viewed", "timestamp_ms": HOUR_AGO_MS, "action_source": "web",
            "source_url": "https://shop.example.com/",
            "user": {"countries": ["US"], "regions": ["california"]},
            "data": {"type": "contents"}},
        f"ga4_1234567.890_{HOUR_AGO_MS * 1000 + 107}_generate_lead": {
            "id": f"ga4_1234567.890_{HOUR_AGO_MS * 1000 + 107}_generate_lead",
            "type": "lead_created", "timestamp_ms": HOUR_AGO_MS, "action_source": "web",
            "source_url": "https://shop.example.com/contact", "user": geo,
            "data": {"type": "customer_action"}},
    }
    dead = read_dead_letters(tmp_path / "dead")
    assert [(d["reason"], d["event_id"]) for d in dead] == [("missing_currency", "T-1003")]
    assert dead[0]["source"].endswith("events_001.parquet#row=2")   # rows 5-7 in file 2
    assert_report(tmp_path, rows=7, accepted=4, dead={"missing_currency": 1},
                  skipped={"filtered_out": 1, "no_consent": 1})


# --- Segment / RudderStack -----------------------------------------------------------------------

def segment_rows():
    return [
        segment_order("msg-1", "1001", 45.5, "USD", [
            {"product_id": "p-1", "sku": "SKU-1", "name": "Lamp", "price": 30.5, "quantity": 1},
            {"sku": "SKU-2", "name": "Bulb", "price": 7.5, "quantity": 2}]),
        segment_order("msg-2", "1002", 3000, "JPY", [
            {"product_id": "p-9", "name": "Tea", "price": 3000, "quantity": 1}],
            email=" Bo@Example.com "),
        segment_order("msg-3", "1003", 12.0, None, []),
    ]


def expected_segment_events() -> dict[str, dict]:
    common = {"type": "order_created", "timestamp_ms": HOUR_AGO_MS, "action_source": "web",
              "source_url": "https://shop.example.com/thanks", "oppref": "op_seg"}
    user = {"external_ids_sha256": [sha256("user-7")], "ip_address": "198.51.100.7",
            "user_agent": "Mozilla/5.0 (Macintosh)"}
    return {
        "msg-1": {"id": "msg-1", **common,
                  "user": {"emails_sha256": [sha256("ann@example.com")], **user},
                  "data": {"type": "contents", "amount": 4550, "currency": "USD", "contents": [
                      {"id": "p-1", "name": "Lamp", "amount": 3050, "quantity": 1,
                       "content_type": "product"},
                      {"id": "SKU-2", "name": "Bulb", "amount": 750, "quantity": 2,
                       "content_type": "product"}]}},
        "msg-2": {"id": "msg-2", **common,
                  "user": {"emails_sha256": [sha256("bo@example.com")], **user},
                  "data": {"type": "contents", "amount": 3000, "currency": "JPY", "contents": [
                      {"id": "p-9", "name": "Tea", "amount": 3000, "quantity": 1,
                       "content_type": "product"}]}},
    }


def assert_segment_outcome(emulator, tmp_path, outcome, source):
    assert outcome.exit_code == EXIT_OK
    assert recorded_by_id(emulator) == expected_segment_events()
    dead = read_dead_letters(tmp_path / "dead")
    assert [(d["reason"], d["event_id"], d["source"]) for d in dead] == [
        ("missing_currency", "msg-3", source)]
    assert_report(tmp_path, rows=3, accepted=2, dead={"missing_currency": 1}, skipped={})


SEGMENT_DDL = ("CREATE TABLE order_completed (id VARCHAR, event VARCHAR, event_text VARCHAR,"
               " timestamp TIMESTAMPTZ, received_at TIMESTAMPTZ, user_id VARCHAR,"
               " anonymous_id VARCHAR, context_page_url VARCHAR, context_ip VARCHAR,"
               " context_user_agent VARCHAR, context_traits_email VARCHAR, order_id VARCHAR,"
               " total NUMERIC(12, 2), currency VARCHAR, products VARCHAR)")
SEGMENT_QUERY = "SELECT * FROM order_completed ORDER BY id"


def test_segment_order_completed_table_in_duckdb(emulator, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(SEGMENT_DDL)
        con.executemany(f"INSERT INTO order_completed VALUES ({', '.join('?' * len(SEGMENT_COLUMNS))})",
                        segment_rows())
    outcome = run(["--sql-url", f"duckdb:///{database}", "--sql-query", SEGMENT_QUERY,
                   "--mapping", "segment", *delivery_args(emulator, tmp_path)])
    assert_segment_outcome(emulator, tmp_path, outcome, "sql:order_completed#row=3")


def test_rudderstack_table_in_postgresql(emulator, tmp_path, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS order_completed")
        con.execute(SEGMENT_DDL.replace("VARCHAR", "text").replace("TIMESTAMPTZ", "timestamptz"))
        with con.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO order_completed VALUES ({', '.join(['%s'] * len(SEGMENT_COLUMNS))})",
                segment_rows())
    outcome = run(["--sql-url", postgres_url, "--sql-query", SEGMENT_QUERY,
                   "--mapping", "rudderstack", *delivery_args(emulator, tmp_path)])
    assert_segment_outcome(emulator, tmp_path, outcome, "sql:order_completed#row=3")


# --- Snowplow ------------------------------------------------------------------------------------

def test_snowplow_atomic_events(emulator, tmp_path):
    rows = [
        snowplow_event("e-1", "page_view", "page_view"),
        snowplow_event("e-2", "struct", "event", se_category="shop", se_action="add_to_cart",
                       se_label="sku-4"),
        snowplow_event("e-3", "struct", "event", se_category="news", se_action="newsletter_signup",
                       se_label="footer", se_property="weekly", se_value=1.0),
        snowplow_event("e-4", "transaction", "transaction", tr_orderid="o-77", tr_total=30.0,
                       tr_currency="EUR"),
        snowplow_event("e-5", "transaction_item", "transaction_item", ti_orderid="o-77",
                       ti_sku="sku-4", ti_price=30.0, ti_quantity=1),
        snowplow_event("e-6", "page_ping", "page_ping"),
        snowplow_event("e-7", "page_view", "page_view", page_url=None),
    ]
    export = write_snowplow_export(tmp_path / "atomic_events.parquet", rows)
    outcome = run(["--input", str(export), "--mapping", "snowplow",
                   *delivery_args(emulator, tmp_path)])
    assert outcome.exit_code == EXIT_OK
    common = {"timestamp_ms": HOUR_AGO_MS, "action_source": "web",
              "source_url": "https://www.example.org/pricing", "oppref": "op_sp",
              "user": {"external_ids_sha256": [sha256("u-9")], "ip_address": "192.0.2.44",
                       "user_agent": "Mozilla/5.0 (X11)", "countries": ["DE"],
                       "cities": ["berlin"], "regions": ["be"], "postal_codes": ["10115"]}}
    assert recorded_by_id(emulator) == {
        "e-1": {"id": "e-1", "type": "page_viewed", **common, "data": {"type": "contents"}},
        "e-2": {"id": "e-2", "type": "items_added", **common, "data": {"type": "contents"}},
        "e-3": {"id": "e-3", "type": "custom", "custom_event_name": "newsletter_signup", **common,
                "data": {"type": "custom", "category": "news", "label": "footer",
                         "property": "weekly", "value": 1.0}},
        "e-4": {"id": "e-4", "type": "order_created", **common,
                "data": {"type": "contents", "amount": 3000, "currency": "EUR"}},
    }
    dead = read_dead_letters(tmp_path / "dead")
    assert [(d["reason"], d["event_id"]) for d in dead] == [("missing_source_url", "e-7")]
    assert_report(tmp_path, rows=7, accepted=4, dead={"missing_source_url": 1},
                  skipped={"excluded_event": 2})


# --- Shopify -------------------------------------------------------------------------------------

def test_shopify_orders_csv_one_event_per_paid_order_with_every_line(emulator, tmp_path):
    order_1002 = shopify_order("#1002", "paid", "JPY", "4500", "ko@example.jp", [
        ("1", "Matcha", "1500", "M-1"), ("2", "Whisk", "1000", "W-1"), ("1", "Bowl", "1000", "")])
    records = [
        *shopify_order("#1001", "paid", "USD", "25.00", "Ann@Example.com", [
            ("2", "Tee", "10.00", "T-1"), ("1", "Cap", "5.00", "C-1")]),
        *order_1002[:2],
        *shopify_order("#1003", "pending", "USD", "9.00", "cy@example.com", [
            ("1", "Pin", "4.50", "P-1"), ("1", "Pin", "4.50", "P-1")]),
        *shopify_order("#1004", "partially_refunded", "EUR", "12.50", "di@example.com", [
            ("1", "Scarf", "12.50", "S-1")]),
        order_1002[2],   # not adjacent to its order: the grouping must still find it
        *shopify_order("#1005", "paid", "XYZ", "3.00", "ed@example.com", [
            ("1", "Card", "1.50", "K-1"), ("1", "Card", "1.50", "K-1")]),
    ]
    export = write_shopify_export(tmp_path / "orders_export.csv", records)
    outcome = run(["--input", str(export), "--mapping", "shopify", "--chunk-size", "3",
                   *delivery_args(emulator, tmp_path)])
    assert outcome.exit_code == EXIT_OK

    def order(name, email, currency, amount, contents):
        return {"id": f"shopify_{name}", "type": "order_created", "timestamp_ms": HOUR_AGO_MS,
                "action_source": "other", "user": {"emails_sha256": [sha256(email)]},
                "data": {"type": "contents", "amount": amount, "currency": currency,
                         "contents": [{"id": sku, "name": item, "amount": price, "quantity": n,
                                       "content_type": "product"}
                                      for sku, item, price, n in contents]}}
    assert recorded_by_id(emulator) == {
        "shopify_#1001": order("#1001", "ann@example.com", "USD", 2500,
                               [("T-1", "Tee", 1000, 2), ("C-1", "Cap", 500, 1)]),
        "shopify_#1002": order("#1002", "ko@example.jp", "JPY", 4500,
                               [("M-1", "Matcha", 1500, 1), ("W-1", "Whisk", 1000, 2),
                                ("Bowl", "Bowl", 1000, 1)]),
        "shopify_#1004": order("#1004", "di@example.com", "EUR", 1250,
                               [("S-1", "Scarf", 1250, 1)]),
    }
    dead = read_dead_letters(tmp_path / "dead")
    assert [(d["reason"], d["event_id"], d["source"]) for d in dead] == [
        ("invalid_currency", "shopify_#1005", f"{export}#row=9")]
    # 10 lines = 3 orders sent + #1005 dead-lettered + #1003's 2 lines filtered + 4 lines
    # merged into their order's event (one of #1001, two of #1002, one of #1005)
    assert_report(tmp_path, rows=10, accepted=3, dead={"invalid_currency": 1},
                  skipped={"filtered_out": 2, "grouped_into_event": 4})
