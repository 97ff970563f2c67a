"""What a sent event carries that OpenAI can match on, and which CAPI fields it fills.

    counts = collections.Counter()
    count_sent(events, counts)   # sent.order_created, sent.order_created.email, filled.oppref, ...
    identifiers_of(event)        # ["oppref", "email", ...]
    filled_fields(event)         # ["oppref", "data.amount", "user.emails_sha256", ...]

OpenAI publishes no match-quality score; the share of sent events carrying each identifier, per
event type, is the figure a data engineer can act on (report and summary: pipeline/report.py).
Identifiers are read from the wire `user` object through the profile tables of
transforms/user_fields.py, so a new wire key needs no change here.
"""
from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from transforms.metrics import FILLED_PREFIX as FILLED
from transforms.metrics import SENT_PREFIX as SENT
from transforms.user_fields import PROFILES

# identifier -> the logical user fields it needs (all of them); oppref is an event field
IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "oppref": (),
    "email": ("email",),
    "phone": ("phone",),
    "external_id": ("external_id",),
    "ip_and_user_agent": ("ip_address", "user_agent"),
    "android_id": ("android_advertising_id",),
}
IDENTIFIER_LABELS = {"oppref": "oppref", "email": "email", "phone": "phone",
                     "external_id": "external id", "ip_and_user_agent": "IP + user agent",
                     "android_id": "Android id"}

_LOGICAL_BY_WIRE_KEY: dict[str, str] = {
    wire.key: wire.logical for profile in PROFILES.values() for wire in profile}
_NOT_FILLED_EVENT_KEYS = frozenset({"id", "type", "timestamp_ms", "data", "user"})


def _identifiers(event_keys: Iterable[str], user_keys: Iterable[str]) -> list[str]:
    logical = {_LOGICAL_BY_WIRE_KEY.get(key, key) for key in user_keys}
    found = ["oppref"] if "oppref" in event_keys else []
    found.extend(name for name, needs in IDENTIFIERS.items()
                 if needs and all(field in logical for field in needs))
    return found


def _filled(event_keys: Iterable[str], data_keys: Iterable[str], user_keys: Iterable[str]
            ) -> list[str]:
    fields = [key for key in event_keys if key not in _NOT_FILLED_EVENT_KEYS]
    fields.extend(f"data.{key}" for key in data_keys if key != "type")
    fields.extend(f"user.{key}" for key in user_keys)
    return fields


def _present(mapping: Any) -> tuple[str, ...]:
    return tuple(key for key, value in mapping.items() if value not in (None, "", [], {})) \
        if mapping else ()


def identifiers_of(event: Mapping[str, Any]) -> list[str]:
    """The identifiers an event carries: `{"oppref": "o", "user": {"emails_sha256": [...]}}`
    -> ["oppref", "email"]."""
    return _identifiers(_present(event), _present(event.get("user")))


def filled_fields(event: Mapping[str, Any]) -> list[str]:
    """The CAPI fields an event fills, by their place in the event: `oppref`, `data.amount`,
    `user.emails_sha256` (id, type, timestamp_ms and data.type are always there)."""
    return _filled(_present(event), _present(event.get("data")), _present(event.get("user")))


def shape_of(event: Mapping[str, Any]) -> tuple:
    """What the counters depend on: the type and the keys present. The mapper leaves empty
    values out, so keys are enough; events of one export have few shapes (counter_names is
    cached by shape: ~1 us per event instead of ~10 building names)."""
    data, user = event.get("data"), event.get("user")
    return (event.get("type"), tuple(event), tuple(data) if data else (),
            tuple(user) if user else ())


@functools.lru_cache(maxsize=4096)
def counter_names(shape: tuple) -> tuple[str, ...]:
    """`sent.<type>`, `sent.<type>.<identifier>` and `filled.<field>` for an event shape."""
    event_type, event_keys, data_keys, user_keys = shape
    return (f"{SENT}{event_type}",
            *(f"{SENT}{event_type}.{name}" for name in _identifiers(event_keys, user_keys)),
            *(FILLED + field for field in _filled(event_keys, data_keys, user_keys)))


def count_sent(events: Iterable[Mapping[str, Any]], counts: Any) -> None:
    """Adds the counter names of each sent event to `counts` (a Counter)."""
    shapes: collections.Counter[tuple] = collections.Counter(map(shape_of, events))
    for shape, number in shapes.items():
        for name in counter_names(shape):
            counts[name] += number


def coverage_by_type(counters: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """`sent.*` counters -> {type: {"events": n, <identifier>: {"count": c, "share": c / n}}}."""
    events = {name[len(SENT):]: value for name, value in counters.items()
              if name.startswith(SENT) and "." not in name[len(SENT):] and value}
    table: dict[str, dict[str, Any]] = {}
    for event_type, total in sorted(events.items()):
        row: dict[str, Any] = {"events": total}
        for identifier in IDENTIFIERS:
            count = counters.get(f"{SENT}{event_type}.{identifier}", 0)
            row[identifier] = {"count": count, "share": round(count / total, 4)}
        table[event_type] = row
    return table


def mapped_capi_fields(plan: Any) -> dict[str, tuple[str, ...]]:
    """The CAPI fields each mapped (non-constant) field of a MappingPlan fills:
    `{"event.oppref": ("oppref",), "user.fields.email": ("user.emails_sha256",), ...}`."""
    wire_keys: dict[str, list[str]] = {}
    for wire in PROFILES[plan.user_profile]:
        wire_keys.setdefault(wire.logical, []).append(f"user.{wire.key}")
    found: dict[str, tuple[str, ...]] = {}

    def add(location: str, source: Any, fields: Iterable[str]) -> None:
        if source is not None and not source.has_constant and source.refs:
            found[location] = tuple(fields)

    for name in ("custom_event_name", "oppref", "action_source", "source_url", "opt_out"):
        add(f"event.{name}", getattr(plan, name), (name,))
    for name in ("amount", "currency", "plan_id"):
        add(f"data.{name}", getattr(plan, name), (f"data.{name}",))
    for member, source in plan.custom_data:
        add(f"data.custom.{member}", source, (f"data.{member}",))
    if plan.contents is not None:
        found["data.contents.path"] = ("data.contents",)
    for logical, source in plan.user_fields:
        add(f"user.fields.{logical}", source, wire_keys.get(logical, ()))
    return found
