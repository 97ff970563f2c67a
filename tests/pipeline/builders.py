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


def read_dead_letters_by_step(prefix_dir: pathlib.Path, prefix: str = "dead") -> dict[str, list[dict]]:
    """{step: records} from `<prefix>-<step>-NNNNN.jsonl` (unreadable, mapping, delivery, replay)."""
    by_step: dict[str, list[dict]] = {}
    for path in sorted(prefix_dir.glob(f"{prefix}-*.jsonl")):
        step = path.name[len(prefix) + 1:].rsplit("-", 1)[0]
        by_step.setdefault(step, []).extend(
            json.loads(line) for line in path.read_text().splitlines() if line)
    return by_step


def read_report(path: pathlib.Path) -> dict:
    return json.loads(path.read_text())


# -- fault-tolerance builders (helper faults-F) ---------------------------------------------------

def parquet_event_ids(path: pathlib.Path) -> list[str]:
    """context.event_id of every row of a Parquet export, in row order (row N is index N-1)."""
    context = pq.read_table(path, columns=["context"]).column("context").combine_chunks()
    return context.field("event_id").to_pylist()


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_jsonl(path: pathlib.Path, lines: list[dict | bytes]) -> pathlib.Path:
    """One line per item: a dict as JSON (datetimes as ISO-8601), bytes written as they are."""
    with path.open("wb") as handle:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line, default=_json_default).encode()
            handle.write(line + b"\n")
    return path


def _csv_field(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        value = value.encode()
    if any(ch in value for ch in (b",", b'"', b"\n")):
        value = b'"' + value.replace(b'"', b'""') + b'"'
    return value


def write_csv(path: pathlib.Path, header: list[str], records: list[list[str | bytes | None]]
              ) -> pathlib.Path:
    """A CSV file; a field given as bytes is written raw (to plant invalid UTF-8)."""
    with path.open("wb") as handle:
        for record in [header, *records]:
            handle.write(b",".join(_csv_field(value) for value in record) + b"\n")
    return path


def expected_user(**changes) -> dict:
    """The user object of ca_row through the default mapping, by hand from contract section 6."""
    user = {
        "emails_sha256": [sha256("mary.jane@example.com")],
        "phone_numbers_sha256": [sha256("14155550100")],
        "external_ids_sha256": [sha256("cust-42")],
        "first_names_sha256": [sha256("maryjane")],
        "last_names_sha256": [sha256("obrien")],
        "countries": ["US"],
        "cities": ["san francisco"],
        "regions": ["ca"],
        "postal_codes": ["94105-1234"],
        "ip_address": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
    }
    for key, value in changes.items():
        if value is None:
            del user[key]
        else:
            user[key] = value
    return user
