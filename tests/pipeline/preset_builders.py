"""Small exports in the schemas the presets map: GA4, Segment, Snowplow, Shopify.

Each builder writes the columns the real export has (with its odd parts: GA4's event_params and
microseconds and "(not set)", Segment's flattened columns and JSON-text products, Snowplow's
separate transaction_item rows, Shopify's one line per line item) and only what a test needs.
"""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

from tests.pipeline.builders import NOW, write_csv

HOUR_AGO = NOW - dt.timedelta(hours=1)
HOUR_AGO_MS = int(HOUR_AGO.timestamp() * 1000)

# --- GA4 BigQuery export ---------------------------------------------------------------------

GA4_PARAM_VALUE = pa.struct([("string_value", pa.string()), ("int_value", pa.int64()),
                             ("float_value", pa.float64()), ("double_value", pa.float64())])
GA4_SCHEMA = pa.schema([
    ("event_date", pa.string()),
    ("event_timestamp", pa.int64()),
    ("event_name", pa.string()),
    ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", GA4_PARAM_VALUE)]))),
    ("user_id", pa.string()),
    ("user_pseudo_id", pa.string()),
    ("privacy_info", pa.struct([("analytics_storage", pa.string()), ("ads_storage", pa.string()),
                                ("uses_transient_token", pa.string())])),
    ("device", pa.struct([("category", pa.string()), ("web_info", pa.struct([
        ("browser", pa.string()), ("hostname", pa.string())]))])),
    ("geo", pa.struct([("city", pa.string()), ("country", pa.string()),
                       ("continent", pa.string()), ("region", pa.string())])),
    ("ecommerce", pa.struct([("total_item_quantity", pa.int64()),
                             ("purchase_revenue", pa.float64()),
                             ("unique_items", pa.int64()), ("transaction_id", pa.string())])),
    ("items", pa.list_(pa.struct([("item_id", pa.string()), ("item_name", pa.string()),
                                  ("item_brand", pa.string()), ("price", pa.float64()),
                                  ("quantity", pa.int64())]))),
])


def ga4_param(key: str, value) -> dict:
    member = {"string_value": None, "int_value": None, "float_value": None, "double_value": None}
    if isinstance(value, str):
        member["string_value"] = value
    elif isinstance(value, int):
        member["int_value"] = value
    else:
        member["double_value"] = value
    return {"key": key, "value": member}


def ga4_row(name: str, microsecond: int, *, params: dict | None = None, ads: str | None = "Yes",
            transaction_id: str | None = "(not set)", revenue: float | None = None,
            items: list[tuple[str, str, float, int]] | None = None, user_id: str | None = None,
            city: str = "San Francisco") -> dict:
    """One GA4 export row; event_timestamp is epoch microseconds, an hour ago + microsecond."""
    return {
        "event_date": HOUR_AGO.strftime("%Y%m%d"),
        "event_timestamp": HOUR_AGO_MS * 1000 + microsecond,
        "event_name": name,
        "event_params": [ga4_param(k, v) for k, v in (params or {}).items()],
        "user_id": user_id,
        "user_pseudo_id": "1234567.890",
        "privacy_info": {"analytics_storage": ads, "ads_storage": ads, "uses_transient_token": "No"},
        "device": {"category": "desktop", "web_info": {"browser": "Chrome",
                                                       "hostname": "shop.example.com"}},
        "geo": {"city": city, "country": "United States", "continent": "Americas",
                "region": "California"},
        "ecommerce": {"total_item_quantity": None, "purchase_revenue": revenue,
                      "unique_items": None, "transaction_id": transaction_id},
        "items": [{"item_id": i, "item_name": n, "item_brand": "(not set)", "price": p,
                   "quantity": q} for i, n, p, q in items or ()],
    }


def write_ga4_export(directory: pathlib.Path, rows: list[dict], files: int = 2) -> str:
    """The rows as `files` Parquet files, like GA4's daily export read through its files."""
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(rows) // files)
    for index in range(files):
        part = rows[index * per_file:(index + 1) * per_file]
        pq.write_table(pa.Table.from_pylist(part, schema=GA4_SCHEMA),
                       directory / f"events_{index:03d}.parquet")
    return str(directory / "*.parquet")


# --- Segment / RudderStack warehouse table ----------------------------------------------------

SEGMENT_COLUMNS = ("id", "event", "event_text", "timestamp", "received_at", "user_id",
                   "anonymous_id", "context_page_url", "context_ip", "context_user_agent",
                   "context_traits_email", "order_id", "total", "currency", "products")


def segment_order(message_id: str, order_id: str, total, currency: str | None,
                  products: list[dict], email: str = "ann@example.com") -> tuple:
    """One row of Segment's `order_completed` table (products as the JSON text it stores)."""
    return (message_id, "order_completed", "Order Completed", HOUR_AGO, HOUR_AGO, "user-7",
            "anon-7", "https://shop.example.com/thanks?oppref=op_seg&utm_source=x",
            "198.51.100.7", "Mozilla/5.0 (Macintosh)", email, order_id, total, currency,
            json.dumps(products))


# --- Snowplow atomic events --------------------------------------------------------------------

SNOWPLOW_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("event", pa.string()), ("event_name", pa.string()),
    ("collector_tstamp", pa.timestamp("us", "UTC")), ("derived_tstamp", pa.timestamp("us", "UTC")),
    ("page_url", pa.string()), ("user_id", pa.string()), ("domain_userid", pa.string()),
    ("user_ipaddress", pa.string()), ("useragent", pa.string()), ("geo_country", pa.string()),
    ("geo_city", pa.string()), ("geo_region", pa.string()), ("geo_zipcode", pa.string()),
    ("se_category", pa.string()), ("se_action", pa.string()), ("se_label", pa.string()),
    ("se_property", pa.string()), ("se_value", pa.float64()),
    ("tr_orderid", pa.string()), ("tr_total", pa.float64()), ("tr_currency", pa.string()),
    ("ti_orderid", pa.string()), ("ti_sku", pa.string()), ("ti_price", pa.float64()),
    ("ti_quantity", pa.int64()),
])


def snowplow_event(event_id: str, event: str, event_name: str, **columns) -> dict:
    row = {field.name: None for field in SNOWPLOW_SCHEMA}
    row.update(event_id=event_id, event=event, event_name=event_name,
               collector_tstamp=HOUR_AGO + dt.timedelta(seconds=2), derived_tstamp=HOUR_AGO,
               page_url="https://www.example.org/pricing?oppref=op_sp", user_id="u-9",
               domain_userid="d-9", user_ipaddress="192.0.2.44", useragent="Mozilla/5.0 (X11)",
               geo_country="DE", geo_city="Berlin", geo_region="BE", geo_zipcode="10115")
    row.update(columns)
    return row


def write_snowplow_export(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=SNOWPLOW_SCHEMA), path)
    return path


# --- Shopify orders CSV --------------------------------------------------------------------------

SHOPIFY_HEADER = ["Name", "Email", "Financial Status", "Paid at", "Fulfillment Status",
                  "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Created at",
                  "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem sku",
                  "Billing City", "Billing Zip", "Billing Country", "Phone", "Id"]
SHOPIFY_TIME = HOUR_AGO.strftime("%Y-%m-%d %H:%M:%S +0000")


def shopify_order(name: str, status: str, currency: str, total: str, email: str,
                  lines: list[tuple[str, str, str, str]]) -> list[list[str]]:
    """An order's lines: (quantity, name, price, sku) each; order fields on the first only."""
    records = []
    for index, (quantity, item, price, sku) in enumerate(lines):
        first = index == 0
        records.append([
            name, email if first else "", status if first else "", SHOPIFY_TIME if first else "",
            "unfulfilled" if first else "", currency if first else "", total if first else "",
            "0.00" if first else "", "0.00" if first else "", total if first else "",
            SHOPIFY_TIME if first else "", quantity, item, price, sku, "", "", "", "", ""])
    return records


def write_shopify_export(path: pathlib.Path, records: list[list[str]]) -> pathlib.Path:
    return write_csv(path, SHOPIFY_HEADER, records)
