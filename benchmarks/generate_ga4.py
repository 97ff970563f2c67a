"""GA4 BigQuery-export-shaped rows as Arrow record batches, for the GA4 preset's benchmark.

A mix like a shop's export after the preset's filter: page views, product views, add-to-carts,
checkouts and purchases (with items), plus automatically collected events the filter skips;
event_timestamp in microseconds, "(not set)" where GA4 writes it, a few consent "No" rows.
"""
from __future__ import annotations

import random

import pyarrow as pa

PARAM_VALUE = pa.struct([("string_value", pa.string()), ("int_value", pa.int64()),
                         ("float_value", pa.float64()), ("double_value", pa.float64())])
SCHEMA = pa.schema([
    ("event_timestamp", pa.int64()), ("event_name", pa.string()),
    ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", PARAM_VALUE)]))),
    ("user_id", pa.string()), ("user_pseudo_id", pa.string()),
    ("privacy_info", pa.struct([("ads_storage", pa.string())])),
    ("geo", pa.struct([("city", pa.string()), ("country", pa.string()), ("region", pa.string())])),
    ("ecommerce", pa.struct([("purchase_revenue", pa.float64()), ("transaction_id", pa.string())])),
    ("items", pa.list_(pa.struct([("item_id", pa.string()), ("item_name", pa.string()),
                                  ("price", pa.float64()), ("quantity", pa.int64())]))),
])
EVENTS = (("page_view", 40), ("view_item", 20), ("add_to_cart", 10), ("begin_checkout", 5),
          ("purchase", 5), ("session_start", 10), ("user_engagement", 10))
PLACES = (("San Francisco", "United States", "California"), ("Berlin", "Germany", "Berlin"),
          ("(not set)", "France", "(not set)"), ("Osaka", "Japan", "Osaka"))


def _param(key: str, value) -> dict:
    member = {"string_value": None, "int_value": None, "float_value": None, "double_value": None}
    member["string_value" if isinstance(value, str) else "int_value" if isinstance(value, int)
           else "double_value"] = value
    return {"key": key, "value": member}


def ga4_batches(rows: int, now_ms: int, seed: int = 0, batch_rows: int = 1000
                ) -> list[pa.RecordBatch]:
    rng = random.Random(seed)
    names = [name for name, weight in EVENTS for _ in range(weight)]
    out = []
    for n in range(rows):
        name = rng.choice(names)
        city, country, region = rng.choice(PLACES)
        items = [{"item_id": f"SKU-{rng.randrange(5000)}", "item_name": f"Product {n % 97}",
                  "price": round(rng.uniform(1, 200), 2), "quantity": rng.randint(1, 3)}
                 for _ in range(rng.randint(1, 3))] if name in (
                     "view_item", "add_to_cart", "begin_checkout", "purchase") else []
        revenue = round(sum(i["price"] * i["quantity"] for i in items), 2)
        purchase = name == "purchase"
        params = [_param("page_location", f"https://shop.example.com/p/{n % 500}?oppref=op{n}"),
                  _param("page_title", f"Page {n % 500}"), _param("ga_session_id", 1_700_000 + n),
                  _param("engagement_time_msec", rng.randrange(10_000))]
        if items:
            params += [_param("currency", "USD"), _param("value", revenue)]
        if purchase:
            params.append(_param("transaction_id", f"T-{n}"))
        out.append({
            "event_timestamp": (now_ms - rng.randrange(3_600_000, 86_400_000)) * 1000 + n % 1000,
            "event_name": name, "event_params": params,
            "user_id": f"u-{rng.randrange(20_000)}" if rng.random() < 0.3 else None,
            "user_pseudo_id": f"{rng.randrange(10**9)}.{rng.randrange(10**9)}",
            "privacy_info": {"ads_storage": "No" if rng.random() < 0.05 else "Yes"},
            "geo": {"city": city, "country": country, "region": region},
            "ecommerce": {"purchase_revenue": revenue if purchase else None,
                          "transaction_id": f"T-{n}" if purchase else "(not set)"},
            "items": items,
        })
    return pa.Table.from_pylist(out, schema=SCHEMA).to_batches(max_chunksize=batch_rows)
