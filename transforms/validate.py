"""Check a mapped CAPI event against every documented rule (contract sections 3, 5 and 6).

`validate_event` is pure and fast: it runs on every event the mapper produces and on every event
replayed from a dead-letter file, before sending. (The emulator does not use it: it is the test
oracle and has its own encoding of the rules, connectors/emulator/rules.py.) It returns the
FIRST violation found, as a reason code from `transforms.reasons` plus a readable detail. The
detail names fields and rules, never user values (no PII):
`"data.contents[2].quantity must be an integer"`, not the value that was there.

Which reason a data-shape rule maps to (section 7 has a fixed list of codes):
- anything wrong with `data` itself, `data.type`, `data.plan_id` placement, `data.contents` and
  its items (other than money) -> `invalid_contents`;
- money amounts (event or item) that are not non-negative integers -> `invalid_amount`;
- amount without any applicable currency -> `missing_currency`; a currency that is not an
  upper-case ISO 4217 code -> `invalid_currency`;
- app_installed / app_opened without `action_source: mobile_app` -> `invalid_action_source`;
- a source_url that is sent (on any action source) but is not an absolute URL text (a relative
  path, a bare host, a number, "") -> `invalid_source_url`; a web event without one ->
  `missing_source_url`;
- top-level optional fields of the wrong JSON type (`oppref`, `user`, `opt_out`), and a `user`
  field off its wire shape (section 6: `user.ip_address must be an IPv4 or IPv6 address`) ->
  `mapping_error` (section 7 has no user reason; the detail names the field).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from iso4217 import Currency

from transforms import reasons
from transforms.events import (
    ACTION_SOURCES,
    CONTENTS,
    CUSTOM,
    CUSTOMER_ACTION,
    DATA_TYPE_BY_EVENT_TYPE,
    MAX_AGE_MS,
    MAX_FUTURE_MS,
    MOBILE_APP_ONLY_TYPES,
    PLAN_ENROLLMENT,
)
from transforms.normalize import (
    is_sha256_hex,
    normalize_android_advertising_id,
    normalize_ip_address,
)
from transforms.source_url import is_absolute_url
from transforms.user_fields import PROFILES

ISO_4217_CODES = frozenset(currency.code for currency in Currency)

# The published rule: 1-64 letters, digits, '_' or '-', starting and ending with a letter or a
# digit ('_promo', 'promo-' and '-' fail the whole batch). The API lower-cases the name, so
# upper case is accepted here; the mapper sends it lower-cased ('Promo_Click' -> 'promo_click').
_CUSTOM_EVENT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")
_BUILT_IN_NAMES = frozenset(name for name in DATA_TYPE_BY_EVENT_TYPE if name != CUSTOM)

# Members each data.type may carry. `custom` data may carry further members of the user's choosing.
_DATA_MEMBERS = {
    CONTENTS: frozenset({"type", "amount", "currency", "contents"}),
    CUSTOMER_ACTION: frozenset({"type", "amount", "currency"}),
    PLAN_ENROLLMENT: frozenset({"type", "amount", "currency", "contents", "plan_id"}),
}
_ITEM_STRING_FIELDS = ("id", "group_id", "name", "content_type")
INVALID_SOURCE_URL_DETAIL = ("source_url must be an absolute URL with a scheme and a host"
                             " (https://shop.example.com/checkout); a relative path or a bare host"
                             " is rejected by the API")


@dataclasses.dataclass(frozen=True)
class Violation:
    """The first rule an event breaks: a stable reason code and a PII-free explanation."""

    reason: str
    detail: str


def timestamp_window(now_ms: int) -> tuple[int, int]:
    """The oldest and newest timestamp_ms the API accepts at `now_ms`, both included."""
    return now_ms - MAX_AGE_MS, now_ms + MAX_FUTURE_MS


def check_timestamp_window(timestamp_ms: int, now_ms: int) -> Violation | None:
    """Check the API's window relative to `now_ms` (the moment of sending).

    Exactly 7 days old is accepted, 1 ms older is stale; exactly 10 minutes ahead is accepted,
    1 ms more is in the future.
    """
    oldest, newest = timestamp_window(now_ms)
    if timestamp_ms < oldest:
        return Violation(reasons.STALE_TIMESTAMP, "timestamp_ms is more than 7 days in the past")
    if timestamp_ms > newest:
        return Violation(reasons.FUTURE_TIMESTAMP,
                         "timestamp_ms is more than 10 minutes in the future")
    return None


def _is_int(value: Any) -> bool:
    # bool is a subclass of int in Python but `true` is not an amount on the wire.
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _is_object(value: Any) -> bool:
    # A JSON object; the exact-type test first spares mapped events the Mapping ABC check.
    return type(value) is dict or isinstance(value, Mapping)


def _is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def validate_event(event: Mapping[str, Any], now_ms: int, *, user_built: bool = False
                   ) -> Violation | None:
    """Return the first violated rule of `event`, or None when the API would accept it.

    `user_built`: the event's `user` object is UserBuilder's, which writes every key in its wire
    shape by construction (tests/transforms/test_user_wire_shape.py pins that on any input), so
    `check_user` is not run again; events from anywhere else (a replayed dead letter) get it.
    """
    if not _is_object(event):
        return Violation(reasons.MAPPING_ERROR, "event must be a JSON object")

    if not _is_nonempty_str(event.get("id")):
        return Violation(reasons.MISSING_ID, "id must be a non-empty string")

    event_type = event.get("type")
    if not isinstance(event_type, str) or event_type not in DATA_TYPE_BY_EVENT_TYPE:
        return Violation(reasons.INVALID_TYPE,
                         "type must be one of: " + ", ".join(sorted(DATA_TYPE_BY_EVENT_TYPE)))

    timestamp_ms = event.get("timestamp_ms")
    if not _is_int(timestamp_ms):
        return Violation(reasons.INVALID_TIMESTAMP,
                         "timestamp_ms must be an integer (epoch milliseconds)")
    violation = check_timestamp_window(timestamp_ms, now_ms)
    if violation is not None:
        return violation

    if event_type == CUSTOM:
        violation = check_custom_event_name(event.get("custom_event_name"))
        if violation is not None:
            return violation

    violation = _check_action_source(event, event_type)
    if violation is not None:
        return violation

    violation = _check_optional_fields(event, user_built)
    if violation is not None:
        return violation

    return _check_data(event.get("data"), DATA_TYPE_BY_EVENT_TYPE[event_type], event_type)


def check_custom_event_name(name: Any) -> Violation | None:
    """The custom_event_name rule (also used on a mapping's constant, before any row is read)."""
    if not isinstance(name, str) or not name:
        return Violation(reasons.INVALID_CUSTOM_EVENT_NAME,
                         "custom_event_name is required when type is custom")
    if _CUSTOM_EVENT_NAME.fullmatch(name) is None:
        return Violation(reasons.INVALID_CUSTOM_EVENT_NAME,
                         "custom_event_name must be 1-64 letters, digits, '_' or '-', starting"
                         " and ending with a letter or a digit")
    lowered = name.lower()
    if lowered in _BUILT_IN_NAMES:
        return Violation(reasons.INVALID_CUSTOM_EVENT_NAME,
                         f"custom_event_name must not reuse the standard event name {lowered!r}")
    return None


def _check_action_source(event: Mapping[str, Any], event_type: str) -> Violation | None:
    action_source = event.get("action_source")
    if action_source is None:
        return Violation(reasons.INVALID_ACTION_SOURCE, "action_source is required")
    if not isinstance(action_source, str) or action_source not in ACTION_SOURCES:
        return Violation(reasons.INVALID_ACTION_SOURCE,
                         "action_source must be one of: " + ", ".join(sorted(ACTION_SOURCES)))
    if event_type in MOBILE_APP_ONLY_TYPES and action_source != "mobile_app":
        return Violation(reasons.INVALID_ACTION_SOURCE,
                         f"{event_type} requires action_source mobile_app")
    source_url = event.get("source_url")
    if action_source == "web" and source_url is None:
        return Violation(reasons.MISSING_SOURCE_URL, "source_url is required when action_source"
                                                     " is web")
    # Sent means checked, whatever the action source: "" and 42 are no absolute URL either.
    if source_url is not None and (type(source_url) is not str or not is_absolute_url(source_url)):
        return Violation(reasons.INVALID_SOURCE_URL, INVALID_SOURCE_URL_DETAIL)
    return None


def _check_optional_fields(event: Mapping[str, Any], user_built: bool) -> Violation | None:
    oppref = event.get("oppref")
    if oppref is not None and not isinstance(oppref, str):
        return Violation(reasons.MAPPING_ERROR, "oppref must be a string")
    user = event.get("user")
    if user is not None:
        if not _is_object(user):
            return Violation(reasons.MAPPING_ERROR, "user must be an object")
        if not user_built:
            violation = check_user(user)
            if violation is not None:
                return violation
    opt_out = event.get("opt_out")
    if opt_out is not None and not isinstance(opt_out, bool):
        return Violation(reasons.MAPPING_ERROR, "opt_out must be a boolean")
    return None


def _is_str(value: Any) -> bool:
    return type(value) is str or isinstance(value, str)


def _is_str_list(value: Any) -> bool:
    # The exact-type test first: the mapper's lists are lists of str.
    return ((type(value) is list and _ONLY_STR.issuperset(map(type, value)))
            or (isinstance(value, list) and all(isinstance(item, str) for item in value)))


_ONLY_STR = frozenset({str})


def _is_ip_address(value: Any) -> bool:
    # The mapper writes addresses canonically, so that (a regex for IPv4) is tried first; the
    # API takes any address that parses (2001:DB8::1 too).
    if not _is_str(value):
        return False
    if normalize_ip_address(value) == value:
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# What a scalar user value must be on the wire, by the profile row's normalization (section 6).
# A normalization not named here (external_id, scalar profile) asks for a string only.
_SCALAR_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "android_advertising_id": (
        lambda value: _is_str(value) and normalize_android_advertising_id(value) == value,
        "a lower-case canonical UUID (8-4-4-4-12), not all zeros"),
    "ip_address": (_is_ip_address, "an IPv4 or IPv6 address"),
    "opaque": (lambda value: _is_str(value) and value != "", "a non-empty string"),
}
_HASH_RULE = (lambda value: _is_str(value) and is_sha256_hex(value) and value == value.lower(),
              "64 lower-case hex characters (a SHA-256 hash)")
_LIST_RULE = (_is_str_list, "a list of strings")   # the API ignores the values it cannot use
_STRING_RULE = (_is_str, "a string")


def _user_wire_shapes() -> dict[str, tuple[Callable[[Any], bool], str]]:
    """Wire key -> (is its value good, the rule in words), for every key of every profile in
    transforms.user_fields.PROFILES: the profile tables are the one list of user wire keys."""
    shapes: dict[str, tuple[Callable[[Any], bool], str]] = {}
    for profile in PROFILES.values():
        for wire in profile:
            shape = (_LIST_RULE if wire.is_list else _HASH_RULE if wire.hashed
                     else _SCALAR_RULES.get(wire.normalization, _STRING_RULE))
            if shapes.setdefault(wire.key, shape) != shape:
                raise ValueError(f"user.{wire.key} has two wire shapes in the profile tables")
    return shapes


USER_WIRE_SHAPES = _user_wire_shapes()


def check_user(user: Mapping[str, Any]) -> Violation | None:
    """Each known `user` key in its wire shape (section 6); keys of no profile are ignored.

    Lists: the API uses the first three valid values and ignores the rest, so only their JSON
    shape (a list of strings) is checked. Scalars: a wrong value fails the batch at the API.
    """
    shapes, list_rule = USER_WIRE_SHAPES, _LIST_RULE
    for key, value in user.items():
        shape = shapes.get(key)
        if shape is None:
            continue
        if shape is list_rule:
            # The mapper's common case first, inline: a list of one str.
            if type(value) is list and len(value) == 1 and type(value[0]) is str:
                continue
            if _is_str_list(value):
                continue
        elif shape[0](value):
            continue
        return Violation(reasons.MAPPING_ERROR, f"user.{key} must be {shape[1]}")
    return None


def _check_data(data: Any, data_type: str, event_type: str) -> Violation | None:
    if not _is_object(data):
        return Violation(reasons.INVALID_CONTENTS, "data is required and must be an object")
    if data.get("type") != data_type:
        return Violation(reasons.INVALID_CONTENTS,
                         f"data.type must be {data_type!r} for {event_type} events")

    allowed = _DATA_MEMBERS.get(data_type)
    if allowed is not None:
        for key in data:
            if key not in allowed:
                if key == "plan_id":
                    return Violation(reasons.INVALID_CONTENTS,
                                     "data.plan_id is only allowed for plan_enrollment and custom")
                if key == "contents":
                    return Violation(reasons.INVALID_CONTENTS,
                                     "data.contents is not allowed for customer_action")
                return Violation(reasons.INVALID_CONTENTS,
                                 f"data.{key} is not a member of {data_type} data")

    plan_id = data.get("plan_id")
    if plan_id is not None and not _is_nonempty_str(plan_id):
        return Violation(reasons.INVALID_CONTENTS, "data.plan_id must be a non-empty string")

    currency = data.get("currency")
    violation = _check_money(data.get("amount"), currency, None, "data")
    if violation is not None:
        return violation

    contents = data.get("contents")
    if contents is not None:
        return _check_contents(contents, currency)
    return None


def _check_money(amount: Any, currency: Any, fallback_currency: Any, where: str
                 ) -> Violation | None:
    """amount: a non-negative integer of minor units; currency: upper-case ISO 4217 code.

    A currency is needed when amount is set; `fallback_currency` (data.currency, for items)
    satisfies that need.
    """
    if currency is not None and (not isinstance(currency, str) or currency not in ISO_4217_CODES):
        return Violation(reasons.INVALID_CURRENCY,
                         f"{where}.currency must be an upper-case ISO 4217 code")
    if amount is None:
        return None
    if not _is_int(amount):
        return Violation(reasons.INVALID_AMOUNT,
                         f"{where}.amount must be an integer of minor units (cents)")
    if amount < 0:
        return Violation(reasons.INVALID_AMOUNT, f"{where}.amount must not be negative")
    if currency is None and fallback_currency is None:
        if where == "data":
            return Violation(reasons.MISSING_CURRENCY,
                             "data.currency is required when data.amount is set")
        return Violation(reasons.MISSING_CURRENCY,
                         f"{where}.currency is required when the item has an amount and"
                         " data.currency is absent")
    return None


def _check_contents(contents: Any, data_currency: Any) -> Violation | None:
    if not isinstance(contents, list):
        return Violation(reasons.INVALID_CONTENTS, "data.contents must be a list")
    for index, item in enumerate(contents):
        violation = _check_item(item, data_currency)
        if violation is not None:   # name the item only now: most items are valid
            return Violation(violation.reason, name_item(violation.detail, index))
    return None


# Item checks word their details with this placeholder; the index is put in only on an error.
CONTENTS_ITEM = "data.contents[<item>]"


def name_item(detail: str, index: int) -> str:
    """'data.contents[<item>].quantity ...' -> 'data.contents[2].quantity ...'"""
    return detail.replace(CONTENTS_ITEM, f"data.contents[{index}]")


def _check_item(item: Any, data_currency: Any) -> Violation | None:
    """One item of data.contents; details name it CONTENTS_ITEM (see name_item)."""
    if not _is_object(item):
        return Violation(reasons.INVALID_CONTENTS, f"{CONTENTS_ITEM} must be an object")
    for field in _ITEM_STRING_FIELDS:
        value = item.get(field)
        if value is not None and not isinstance(value, str):
            return Violation(reasons.INVALID_CONTENTS, f"{CONTENTS_ITEM}.{field} must be a string")
    if item.get("content_type") == "":
        return Violation(reasons.INVALID_CONTENTS,
                         f"{CONTENTS_ITEM}.content_type must not be empty when it is sent")
    quantity = item.get("quantity")
    if quantity is not None and not _is_int(quantity):
        return Violation(reasons.INVALID_CONTENTS, f"{CONTENTS_ITEM}.quantity must be an integer")
    variant_dict = item.get("variant_dict")
    if variant_dict is not None:
        if not isinstance(variant_dict, Mapping):
            return Violation(reasons.INVALID_CONTENTS,
                             f"{CONTENTS_ITEM}.variant_dict must be an object of strings")
        for key, value in variant_dict.items():
            if not isinstance(key, str) or not isinstance(value, str):
                return Violation(reasons.INVALID_CONTENTS,
                                 f"{CONTENTS_ITEM}.variant_dict must be an object of strings")
    violation = _check_money(item.get("amount"), item.get("currency"), data_currency, CONTENTS_ITEM)
    if violation is not None:
        return violation
    return None
