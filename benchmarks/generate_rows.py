"""Synthetic Commanders-Act-shaped conversion rows (the default mapping's source shape).

High cardinality on purpose (unique ids, emails and phones), so caches cannot make a benchmark
look better than real data would:

    for row in commanders_act_rows(1000, seed=1):
        ...
    write_parquet("rows.parquet", 1_000_000)     # nested struct/list columns, written in chunks

`bad_fraction` of the rows carry one data problem each (missing id, unknown currency, negative
or NaN value, unreadable or stale timestamp, web event without URL, item amount without any
currency), so a run exercises every dead-letter path.
"""
from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from typing import Any

DAY_MS = 24 * 3600 * 1000

FIRST_NAMES = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
               "David", "Elizabeth", "Mary-Jane", "José", "Zoë", "Chloé", "François", "Anne Marie",
               "Søren", "Jürgen", "Yuki", "Haruto", "Amélie", "Noah", "Olivia", "Liam", "Emma"]
LAST_NAMES = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
              "O'Brien", "Müller", "Dubois", "Lefèvre", "Schmidt", "Tanaka", "Suzuki", "Martin",
              "Bernard", "Van der Berg", "Nguyen", "Kowalski", "Rossi", "Fischer", "Sato"]
DOMAINS = ["example.com", "mail.example.org", "example.net", "shop.example.co.uk"]

# alpha-2, spellings of the country, currencies (weighted), cities (city, state, zip pattern),
# phone formats: (international, national) with '#' for random digits.
COUNTRIES = [
    ("US", ["US", "us", "USA", "United States"], ["USD"] * 9 + ["EUR"],
     [("San Francisco", "CA", "941##"), ("New York", "New York", "100##-####"),
      ("Austin", "Texas", "787##"), ("Seattle", "WA", "981##"), ("Chicago", "Illinois", "606##")],
     ("+1 (415) ###-####", "(646) ###-####")),
    ("FR", ["FR", "France", "FRA"], ["EUR"] * 9 + ["USD"],
     [("Paris", "Île-de-France", "750##"), ("Lyon", "Auvergne-Rhône-Alpes", "6900#")],
     ("+33 6 ## ## ## ##", "06 ## ## ## ##")),
    ("DE", ["DE", "Germany", "DEU"], ["EUR"],
     [("Berlin", "Berlin", "101##"), ("München", "Bayern", "803##")],
     ("+49 151 ########", "0151 ########")),
    ("JP", ["JP", "Japan", "JPN"], ["JPY"],
     [("Tokyo", "Tokyo", "100-####"), ("Osaka", "Osaka", "530-####")],
     ("+81 90-####-####", "090-####-####")),
    ("GB", ["GB", "United Kingdom", "GBR"], ["GBP", "EUR", "USD"],
     [("London", "England", "SW1A #AA"), ("Manchester", "England", "M# #AB")],
     ("+44 7700 ######", "07700 ######")),
]
COUNTRY_WEIGHTS = [45, 20, 15, 10, 10]

# (source event name, weight, has value)
EVENTS = [("purchase", 20, True), ("page_view", 28, False), ("add_to_cart", 15, True),
          ("view_item", 10, True), ("begin_checkout", 5, True), ("sign_up", 6, False),
          ("generate_lead", 3, False), ("subscribe", 2, True), ("app_open", 2, False),
          ("newsletter_signup", 3, False), ("video_play", 2, False), ("Wishlist_Add", 2, False),
          ("store_locator", 2, False)]
PRODUCTS = [("Oxford shirt", 39.9), ("Wool socks", 9.99), ("Leather belt", 24.5),
            ("Rain jacket", 129.0), ("Canvas tote", 19.99), ("Sneakers", 89.95),
            ("Sunglasses", 0.29), ("Gift card", 50.0)]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
    " Gecko) Mobile/15E148",
]
BAD_KINDS = ("missing_id", "invalid_currency", "negative_value", "nan_value", "bad_timestamp",
             "stale_timestamp", "missing_url", "item_without_currency")


def _fill(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randrange(10)) if ch == "#" else ch for ch in pattern)


def _ascii(text: str) -> str:
    table = str.maketrans("éëèçüöøåäîôàñÉ", "eeecuooaaioanE")
    return "".join(ch for ch in text.translate(table).lower() if ch.isalnum())


def commanders_act_rows(n: int, *, seed: int = 0, now_ms: int | None = None,
                        bad_fraction: float = 0.0, iso_timestamp_fraction: float = 0.1
                        ) -> Iterator[dict[str, Any]]:
    """`n` nested rows shaped like a Commanders Act export, timestamps within the last 6 days."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    event_names = [e[0] for e in EVENTS]
    event_weights = [e[1] for e in EVENTS]
    with_value = {e[0] for e in EVENTS if e[2]}
    for index in range(n):
        alpha2, spellings, currencies, cities, phone_formats = rng.choices(
            COUNTRIES, COUNTRY_WEIGHTS)[0]
        city, state, zip_pattern = rng.choice(cities)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        event_name = rng.choices(event_names, event_weights)[0]
        email = f"{_ascii(first)}.{_ascii(last)}.{seed}.{index}@{rng.choice(DOMAINS)}"
        if rng.random() < 0.2:
            email = f"  {email.title()} "
        international = rng.random() < 0.5
        phone = _fill(rng, phone_formats[0] if international else phone_formats[1])
        timestamp_ms = now_ms - rng.randrange(6 * DAY_MS)
        timestamp: Any = timestamp_ms
        if rng.random() < iso_timestamp_fraction:
            timestamp = dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.timezone.utc).isoformat()
        currency = rng.choice(currencies)
        value = None
        if event_name in with_value:
            value = float(rng.randrange(100, 100_000)) if currency == "JPY" else \
                round(rng.uniform(1, 500), 2)
        action_type = "mobile_app" if event_name == "app_open" else rng.choice(["web", "web", None])
        items = None
        if index % 3 == 0:
            items = []
            for _ in range(3):
                name, price = rng.choice(PRODUCTS)
                items.append({
                    "id": f"sku-{rng.randrange(1_000_000):06d}",
                    "quantity": rng.randint(1, 4),
                    "currency": currency if rng.random() < 0.3 else None,
                    "content_type": "product" if rng.random() < 0.5 else None,
                    "product": {"name": name,
                                "price": float(round(price * 150)) if currency == "JPY" else price},
                })
        row = {
            "event_name": event_name,
            "type": action_type,
            "context": {
                "event_id": f"evt-{seed}-{index:09d}",
                "event_timestamp": timestamp,
                "page": {"url": f"https://shop.example.com/{event_name}/{index}"
                         if action_type != "mobile_app" else None,
                         "title": "Example shop"},
                "device": {"ip": f"{rng.randrange(1, 224)}.{rng.randrange(256)}."
                                 f"{rng.randrange(256)}.{rng.randrange(1, 255)}",
                           "user_agent": rng.choice(USER_AGENTS)},
            },
            "user": {
                "id": f"cust-{seed}-{index:08d}",
                "email": email,
                "phone": phone,
                "firstname": first,
                "lastname": last,
                "country": rng.choice(spellings),
                "city": city,
                "state": state,
                "zipcode": _fill(rng, zip_pattern),
            },
            "partners": {"openai": {
                "oppref": f"opp_{rng.getrandbits(64):016x}" if rng.random() < 0.6 else None,
                "custom_event_name": None,
                "opt_out": rng.random() < 0.05,
                "obref": None,
                "plan_id": "plan_premium_monthly" if event_name == "subscribe" else None,
            }},
            "value": value,
            "currency": currency if value is not None or items or rng.random() < 0.5 else None,
            "content_type": "product" if rng.random() < 0.2 else None,
            "items": items,
        }
        if bad_fraction and rng.random() < bad_fraction:
            _spoil(row, rng.choice(BAD_KINDS), now_ms)
        yield row


def _spoil(row: dict[str, Any], kind: str, now_ms: int) -> None:
    """Give one row one data problem (one dead-letter reason)."""
    if kind == "missing_id":
        row["context"]["event_id"] = None
    elif kind == "invalid_currency":
        row["value"], row["currency"] = 10.0, "XYZ"
    elif kind == "negative_value":
        row["value"], row["currency"] = -5.0, "USD"
    elif kind == "nan_value":
        row["value"], row["currency"] = float("nan"), "USD"
    elif kind == "bad_timestamp":
        row["context"]["event_timestamp"] = "last tuesday"
    elif kind == "stale_timestamp":
        row["context"]["event_timestamp"] = now_ms - 8 * DAY_MS
    elif kind == "missing_url":
        row["event_name"], row["type"] = "page_view", "web"
        row["context"]["page"]["url"] = None
    elif kind == "item_without_currency":
        row["event_name"], row["value"], row["currency"] = "purchase", None, None
        row["items"] = [{"id": "sku-1", "quantity": 1, "currency": None, "content_type": None,
                         "product": {"name": "Gift card", "price": 50.0}}]


def parquet_schema():
    import pyarrow as pa

    string = pa.string()
    return pa.schema([
        ("event_name", string),
        ("type", string),
        ("context", pa.struct([
            ("event_id", string),
            ("event_timestamp", pa.int64()),
            ("page", pa.struct([("url", string), ("title", string)])),
            ("device", pa.struct([("ip", string), ("user_agent", string)])),
        ])),
        ("user", pa.struct([(name, string) for name in (
            "id", "email", "phone", "firstname", "lastname", "country", "city", "state",
            "zipcode")])),
        ("partners", pa.struct([("openai", pa.struct([
            ("oppref", string), ("custom_event_name", string), ("opt_out", pa.bool_()),
            ("obref", string), ("plan_id", string)]))])),
        ("value", pa.float64()),
        ("currency", string),
        ("content_type", string),
        ("items", pa.list_(pa.struct([
            ("id", string), ("quantity", pa.int64()), ("currency", string),
            ("content_type", string),
            ("product", pa.struct([("name", string), ("price", pa.float64())])),
        ]))),
    ])


def write_parquet(path: str, n: int, *, seed: int = 0, now_ms: int | None = None,
                  bad_fraction: float = 0.0, chunk_rows: int = 20_000) -> int:
    """Write `n` rows as Parquet with nested struct/list columns, `chunk_rows` at a time (flat
    memory). Timestamps are int64 epoch ms (an unreadable one becomes null). Returns n."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    rows = commanders_act_rows(n, seed=seed, now_ms=now_ms, bad_fraction=bad_fraction,
                               iso_timestamp_fraction=0.0)
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            if not isinstance(row["context"]["event_timestamp"], int):
                row["context"]["event_timestamp"] = None
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return n
