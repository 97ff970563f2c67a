"""Small builders for end-to-end tests: Commanders-Act-shaped rows and the files holding them."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ca_row(event_id: str | None, event_name: str = "purchase", *, minutes_ago: int = 60,
           **overrides) -> dict:
    """One Commanders-Act-shaped row (nested structs and an items list)."""
    row = {
        "event_name": event_name,
        "type": "web",
        "value": 25.99,
        "currency": "USD",
        "context": {"event_id": event_id,
                    "event_timestamp": NOW - dt.timedelta(minutes=minutes_ago),
                    "page": {"url": "https://shop.example.com/checkout/done"},
                    "device": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0"}},
        "user": {"email": " Mary.Jane@Example.COM ", "phone": "+1 (415) 555-0100", "id": "cust-42",
                 "firstname": "Mary-Jane", "lastname": "O'Brien", "city": "San Francisco",
                 "state": "CA", "zipcode": "94105-1234", "country": "usa"},
        "partners": {"openai": {"oppref": "oppref_abc", "plan_id": None, "opt_out": None}},
        "items": [{"id": "sku_123", "quantity": 1, "content_type": None, "currency": None,
                   "product": {"name": "Starter bundle", "price": 25.99}}],
    }
    for path, value in overrides.items():
        target = row
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return row


def write_parquet(path: pathlib.Path, rows: list[dict], row_group_size: int = 1000) -> pathlib.Path:
    pq.write_table(pa.Table.from_pylist(copy.deepcopy(rows)), path, row_group_size=row_group_size)
    return path


def read_dead_letters(prefix_dir: pathlib.Path) -> list[dict]:
    records = []
    for path in sorted(prefix_dir.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def read_report(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())
