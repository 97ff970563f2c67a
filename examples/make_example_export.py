"""Builds the bundled example export (pipeline/demo_data/commanders_act_export.parquet).

A small, deterministic Commanders-Act-shaped export: nested `context`, `user`, `partners` and
`items` columns, a mix of event names, and a handful of rows with the mistakes real exports have
(so the demo shows dead letters too). Re-run it only to change the example:

    python examples/make_example_export.py
"""

from __future__ import annotations

import datetime as dt
import pathlib
import random

import pyarrow as pa
import pyarrow.parquet as pq

OUT = (
    pathlib.Path(__file__).resolve().parent.parent
    / "pipeline"
    / "demo_data"
    / "commanders_act_export.parquet"
)
BASE = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.timezone.utc)
CITIES = [
    ("San Francisco", "CA", "94105", "US", "+1 415 555 {:04d}"),
    ("London", "England", "EC1A 1BB", "GB", "020 7946 {:04d}"),
    ("Paris", "Île-de-France", "75001", "France", "+33 1 42 68 {:02d} {:02d}"),
    ("Tokyo", "Tokyo", "100-0001", "JPN", "+81 3 1234 {:04d}"),
]
PRODUCTS = [
    ("sku_100", "Starter bundle", 25.99),
    ("sku_200", "Refill pack", 9.5),
    ("sku_300", "Gift card", 50.0),
    ("sku_400", "Sticker", 0.29),
]
EVENTS = [
    "purchase",
    "page_view",
    "add_to_cart",
    "begin_checkout",
    "view_item",
    "sign_up",
    "generate_lead",
    "subscribe",
    "start_trial",
    "newsletter_opt_in",
    "app_open",
]


def _phone(template: str, n: int) -> str:
    return template.format(n % 100, n % 97) if template.count("{") == 2 else template.format(n)


def build_rows() -> list[dict]:
    rng = random.Random(7)
    rows = []
    for n in range(200):
        name = EVENTS[n % len(EVENTS)]
        city, state, zipcode, country, phone = CITIES[n % len(CITIES)]
        currency = "JPY" if country == "JPN" else "EUR" if country == "France" else "USD"
        items = []
        if name in ("purchase", "add_to_cart", "begin_checkout", "view_item"):
            for sku, title, price in rng.sample(PRODUCTS, k=1 + n % 3):
                items.append(
                    {
                        "id": sku,
                        "quantity": 1 + n % 2,
                        "content_type": None,
                        "currency": None,
                        "product": {
                            "name": title,
                            "price": float(round(price * 100)) if currency == "JPY" else price,
                        },
                    }
                )
        value = round(sum(i["product"]["price"] * i["quantity"] for i in items), 2) or None
        if name in ("subscribe", "start_trial"):
            value = 12.0
        rows.append(
            {
                "event_name": name,
                "type": "mobile_app" if name == "app_open" else "web",
                "value": value,
                "currency": currency if value is not None else None,
                "context": {
                    "event_id": f"{name}_{10_000 + n}",
                    "event_timestamp": BASE - dt.timedelta(minutes=17 * n),
                    "page": {"url": f"https://shop.example.com/p/{n}"},
                    "device": {
                        "ip": f"203.0.113.{n % 250}",
                        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)",
                    },
                },
                "user": {
                    "email": f" Customer.{n}@Example.com ",
                    "phone": _phone(phone, 1000 + n),
                    "id": f"cust-{n:05d}",
                    "firstname": "Mary-Jane" if n % 2 else "José",
                    "lastname": "O'Brien" if n % 3 else "Müller",
                    "city": city,
                    "state": state,
                    "zipcode": zipcode,
                    "country": country,
                },
                "partners": {
                    "openai": {
                        "oppref": f"oppref_{n:04x}" if n % 4 == 0 else None,
                        "plan_id": "plan_pro_monthly" if name in ("subscribe", "start_trial") else None,
                        "custom_event_name": None,
                        "opt_out": n % 25 == 0,
                    }
                },
                "items": items or None,
            }
        )
    # The mistakes real exports have; each row becomes a dead letter with a reason.
    rows[3]["context"]["event_id"] = None  # missing_id
    rows[14]["context"]["event_id"] = "  "  # missing_id
    rows[25]["currency"], rows[25]["value"] = "US$", 10.0  # invalid_currency
    rows[36]["value"] = -5.0  # invalid_amount
    rows[47]["context"]["event_timestamp"] = BASE - dt.timedelta(days=30)  # stale_timestamp
    rows[58]["context"]["page"] = None  # missing_source_url (web)
    rows[69]["event_name"] = "Spring Promo!"  # invalid_custom_event_name
    return rows


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(build_rows()), OUT, row_group_size=64)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
