"""The published Conversions API rules, encoded again for the emulator (contract 2, 3, 6, 7).

The emulator is the test oracle of `transforms.validate`, so it must not share its code: this
module is written from the contract alone and imports nothing from `transforms/` (a test greps
for that). Where both say the same thing, it is said twice on purpose; the shared case table
(tests/api_cases.py) runs against both, and a disagreement shows that one of them is wrong.

The rules are tables: the event types and their data shapes, the action sources, the members
each data shape may carry, the user fields' wire keys and shapes, and `EVENT_RULES`, the
ordered list of per-event rules, each a reason, what it checks and a check. A check returns
None for a good event or a PII-free detail naming the field ("source_url must be an absolute
URL with a scheme and a host"), never the value. The reasons are the contract's dead-letter
codes (section 7) where it has one, and the emulator's own otherwise (`invalid_event`,
`invalid_oppref`, `invalid_opt_out`, `invalid_user`).

Choices where the contract is silent (written in the README too):
- `action_source` is required ("depends" upstream; the contract says always send it).
- `custom_event_name` in upper case is accepted: the API lower-cases it, and dedup uses the
  lower-cased name. A name on a standard-type event is ignored.
- User lists: any number of strings; the API uses the first three valid, unique values and
  ignores the rest without rejecting the event, so an invalid list value is not an error. A
  scalar user field that is wrong fails the event. Unknown user keys are ignored.
- Money amounts are non-negative integers (minor units).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pycountry

# ----- section 2: the wire -------------------------------------------------------------------
MAX_EVENTS_PER_REQUEST = 1000
SERVICE_ACCOUNT_KEY_PREFIX = "sk-svcacct-"
REQUIRED_SCOPE = "ads.third_party_events.write"
INTEGRATION_SOURCE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_INTEGRATION_SOURCE = re.compile(INTEGRATION_SOURCE_PATTERN)

# Events older than 7 days or more than 10 minutes ahead are rejected (both bounds included).
OLDEST_MS = 7 * 24 * 60 * 60 * 1000
NEWEST_MS = 10 * 60 * 1000

# ----- section 3: the event ------------------------------------------------------------------
CUSTOM = "custom"
CONTENTS_DATA, CUSTOMER_ACTION_DATA, PLAN_ENROLLMENT_DATA, CUSTOM_DATA = (
    "contents", "customer_action", "plan_enrollment", "custom")

STANDARD_EVENT_TYPES = {          # type -> data.type
    "page_viewed": CONTENTS_DATA,
    "contents_viewed": CONTENTS_DATA,
    "items_added": CONTENTS_DATA,
    "checkout_started": CONTENTS_DATA,
    "order_created": CONTENTS_DATA,
    "lead_created": CUSTOMER_ACTION_DATA,
    "registration_completed": CUSTOMER_ACTION_DATA,
    "appointment_scheduled": CUSTOMER_ACTION_DATA,
    "app_installed": CUSTOMER_ACTION_DATA,
    "app_opened": CUSTOMER_ACTION_DATA,
    "subscription_created": PLAN_ENROLLMENT_DATA,
    "trial_started": PLAN_ENROLLMENT_DATA,
}
DATA_TYPE_BY_EVENT_TYPE = {**STANDARD_EVENT_TYPES, CUSTOM: CUSTOM_DATA}
APP_EVENT_TYPES = frozenset({"app_installed", "app_opened"})   # action_source must be mobile_app
ACTION_SOURCES = ("web", "mobile_app", "offline", "physical_store", "phone_call", "email",
                  "other")

# 1-64 letters, digits, '_' or '-', starting and ending with a letter or digit.
_CUSTOM_EVENT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?")

# Members each data.type may carry; None: any (custom data carries members of the user's choice).
DATA_MEMBERS: dict[str, frozenset[str] | None] = {
    CONTENTS_DATA: frozenset({"type", "amount", "currency", "contents"}),
    CUSTOMER_ACTION_DATA: frozenset({"type", "amount", "currency"}),
    PLAN_ENROLLMENT_DATA: frozenset({"type", "amount", "currency", "contents", "plan_id"}),
    CUSTOM_DATA: None,
}
ITEM_STRING_MEMBERS = ("id", "group_id", "name")   # strings when sent
CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)

# ----- section 6: user fields on the wire (profile openai) ------------------------------------
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ANDROID_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ALL_ZERO_ANDROID_ID = "00000000-0000-0000-0000-000000000000"
_POSTAL_CODE = re.compile(r"[A-Za-z0-9 -]{1,32}")
_COUNTRY_CODES = frozenset(country.alpha_2 for country in pycountry.countries)


def _is_sha256(value: str) -> bool:
    return _SHA256_HEX.fullmatch(value) is not None


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class UserField:
    """One wire key of `user`: a list (values beyond the first three valid ones are ignored)
    or a scalar (a wrong value fails the event); `valid` says what a good value is."""

    key: str
    is_list: bool
    valid: Callable[[str], bool]
    rule: str


USER_FIELDS = {field.key: field for field in (
    UserField("emails_sha256", True, _is_sha256, "64 lower-case hex characters"),
    UserField("phone_numbers_sha256", True, _is_sha256, "64 lower-case hex characters"),
    UserField("external_ids_sha256", True, _is_sha256, "64 lower-case hex characters"),
    UserField("first_names_sha256", True, _is_sha256, "64 lower-case hex characters"),
    UserField("last_names_sha256", True, _is_sha256, "64 lower-case hex characters"),
    UserField("countries", True, lambda v: v in _COUNTRY_CODES, "ISO 3166-1 alpha-2, upper case"),
    UserField("cities", True, lambda v: 0 < len(v) <= 128, "1 to 128 characters"),
    UserField("regions", True, lambda v: 0 < len(v) <= 128, "1 to 128 characters"),
    UserField("postal_codes", True, lambda v: _POSTAL_CODE.fullmatch(v) is not None,
              "1 to 32 ASCII letters, digits, spaces or hyphens"),
    UserField("obref", False, lambda v: True, "a string"),
    UserField("android_advertising_id", False,
              lambda v: _ANDROID_ID.fullmatch(v) is not None and v != _ALL_ZERO_ANDROID_ID,
              "a lower-case canonical UUID (8-4-4-4-12), not all zeros"),
    UserField("ip_address", False, _is_ip_address, "an IPv4 or IPv6 address"),
    UserField("user_agent", False, lambda v: v != "", "a non-empty string"),
)}
MAX_USED_LIST_VALUES = 3   # the API uses the first three valid, unique values of a list


# ----- the per-event rules --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """Why the API refuses an event: a reason and a PII-free detail."""

    reason: str
    detail: str


@dataclasses.dataclass(frozen=True)
class EventRule:
    reason: str
    checks: str
    check: Callable[[dict, int], str | None]   # (event, now_ms) -> detail, or None when good


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)   # JSON true is no number


def _id(event: dict, now_ms: int) -> str | None:
    value = event.get("id")
    return None if isinstance(value, str) and value else "id must be a non-empty string"


def _type(event: dict, now_ms: int) -> str | None:
    if event.get("type") in DATA_TYPE_BY_EVENT_TYPE:
        return None
    return "type must be one of: " + ", ".join(sorted(DATA_TYPE_BY_EVENT_TYPE))


def _timestamp_is_integer(event: dict, now_ms: int) -> str | None:
    if _is_integer(event.get("timestamp_ms")):
        return None
    return "timestamp_ms must be an integer (epoch milliseconds)"


def _not_stale(event: dict, now_ms: int) -> str | None:
    if event["timestamp_ms"] >= now_ms - OLDEST_MS:
        return None
    return "timestamp_ms is more than 7 days in the past"


def _not_future(event: dict, now_ms: int) -> str | None:
    if event["timestamp_ms"] <= now_ms + NEWEST_MS:
        return None
    return "timestamp_ms is more than 10 minutes in the future"


def _custom_event_name(event: dict, now_ms: int) -> str | None:
    if event["type"] != CUSTOM:
        return None
    name = event.get("custom_event_name")
    if not isinstance(name, str) or not name:
        return "custom_event_name is required when type is custom"
    if _CUSTOM_EVENT_NAME.fullmatch(name) is None:
        return ("custom_event_name must be 1-64 letters, digits, '_' or '-', starting and "
                "ending with a letter or digit")
    if name.lower() in STANDARD_EVENT_TYPES:
        return "custom_event_name must not be a standard event name"
    return None


def _action_source(event: dict, now_ms: int) -> str | None:
    value = event.get("action_source")
    if value not in ACTION_SOURCES:
        return "action_source must be one of: " + ", ".join(sorted(ACTION_SOURCES))
    if event["type"] in APP_EVENT_TYPES and value != "mobile_app":
        return f"{event['type']} requires action_source mobile_app"
    return None


def _source_url_present(event: dict, now_ms: int) -> str | None:
    if event["action_source"] == "web" and event.get("source_url") is None:
        return "source_url is required when action_source is web"
    return None


def _source_url_absolute(event: dict, now_ms: int) -> str | None:
    value = event.get("source_url")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            if parts.scheme and parts.hostname:
                return None
        except ValueError:   # e.g. an invalid IPv6 host
            pass
    return "source_url must be an absolute URL with a scheme and a host"


def _oppref(event: dict, now_ms: int) -> str | None:
    value = event.get("oppref")
    return None if value is None or isinstance(value, str) else "oppref must be a string"


def _opt_out(event: dict, now_ms: int) -> str | None:
    value = event.get("opt_out")
    return None if value is None or isinstance(value, bool) else "opt_out must be a boolean"


def _user(event: dict, now_ms: int) -> str | None:
    user = event.get("user")
    if user is None:
        return None
    if not isinstance(user, dict):
        return "user must be an object"
    for key, value in user.items():
        field = USER_FIELDS.get(key)
        if field is None:
            continue
        if field.is_list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return f"user.{key} must be a list of strings"
        elif not isinstance(value, str) or not field.valid(value):
            return f"user.{key} must be {field.rule}"
    return None


def _data_shape(event: dict, now_ms: int) -> str | None:
    data = event.get("data")
    data_type = DATA_TYPE_BY_EVENT_TYPE[event["type"]]
    if not isinstance(data, dict):
        return "data is required and must be an object"
    if data.get("type") != data_type:
        return f"data.type must be {data_type!r} for {event['type']} events"
    allowed = DATA_MEMBERS[data_type]
    for key in data:
        if allowed is not None and key not in allowed:
            return f"data.{key} is not a member of {data_type} data"
    plan_id = data.get("plan_id")
    if plan_id is not None and not (isinstance(plan_id, str) and plan_id):
        return "data.plan_id must be a non-empty string"
    contents = data.get("contents")
    if contents is not None and not isinstance(contents, list):
        return "data.contents must be a list"
    for index, item in enumerate(contents or ()):
        detail = _item_shape(item, f"data.contents[{index}]")
        if detail is not None:
            return detail
    return None


def _item_shape(item: Any, where: str) -> str | None:
    if not isinstance(item, dict):
        return f"{where} must be an object"
    for key in ITEM_STRING_MEMBERS:
        if item.get(key) is not None and not isinstance(item[key], str):
            return f"{where}.{key} must be a string"
    content_type = item.get("content_type")
    if content_type is not None and not (isinstance(content_type, str) and content_type):
        return f"{where}.content_type must be a non-empty string when sent"
    quantity = item.get("quantity")
    if quantity is not None and not _is_integer(quantity):
        return f"{where}.quantity must be an integer"
    variants = item.get("variant_dict")
    if variants is not None and not (isinstance(variants, dict) and all(
            isinstance(value, str) for value in variants.values())):
        return f"{where}.variant_dict must be an object of strings"
    return None


def _amounts(event: dict, now_ms: int) -> str | None:
    data = event["data"]
    for where, amount in [("data", data.get("amount"))] + [
            (f"data.contents[{i}]", item.get("amount"))
            for i, item in enumerate(data.get("contents") or ())]:
        if amount is not None and not (_is_integer(amount) and amount >= 0):
            return f"{where}.amount must be a non-negative integer of minor units (cents)"
    return None


def _currency_codes(event: dict, now_ms: int) -> str | None:
    data = event["data"]
    for where, currency in [("data", data.get("currency"))] + [
            (f"data.contents[{i}]", item.get("currency"))
            for i, item in enumerate(data.get("contents") or ())]:
        if currency is not None and (not isinstance(currency, str)
                                     or currency not in CURRENCY_CODES):
            return f"{where}.currency must be an upper-case ISO 4217 code"
    return None


def _currency_with_amount(event: dict, now_ms: int) -> str | None:
    data = event["data"]
    if data.get("amount") is not None and data.get("currency") is None:
        return "data.currency is required when data.amount is set"
    if data.get("currency") is None:
        for index, item in enumerate(data.get("contents") or ()):
            if item.get("amount") is not None and item.get("currency") is None:
                return (f"data.contents[{index}].currency is required when the item has an "
                        "amount and data.currency is absent")
    return None


# In order: each rule may rely on the ones before it (a type is known, data is an object, ...).
EVENT_RULES = (
    EventRule("missing_id", "id is a non-empty string", _id),
    EventRule("invalid_type", "type is a standard event type or custom", _type),
    EventRule("invalid_timestamp", "timestamp_ms is an integer", _timestamp_is_integer),
    EventRule("stale_timestamp", "timestamp_ms is at most 7 days old", _not_stale),
    EventRule("future_timestamp", "timestamp_ms is at most 10 minutes ahead", _not_future),
    EventRule("invalid_custom_event_name", "custom events carry a well-formed name",
              _custom_event_name),
    EventRule("invalid_action_source", "action_source is known; mobile_app for app events",
              _action_source),
    EventRule("missing_source_url", "web events carry source_url", _source_url_present),
    EventRule("invalid_source_url", "source_url, when sent, is absolute", _source_url_absolute),
    EventRule("invalid_oppref", "oppref is a string", _oppref),
    EventRule("invalid_opt_out", "opt_out is a boolean", _opt_out),
    EventRule("invalid_user", "user fields have their wire shapes", _user),
    EventRule("invalid_contents", "data has the shape of its type", _data_shape),
    EventRule("invalid_amount", "amounts are non-negative integers", _amounts),
    EventRule("invalid_currency", "currencies are ISO 4217 codes", _currency_codes),
    EventRule("missing_currency", "an amount has a currency", _currency_with_amount),
)


def check_event(event: Any, now_ms: int) -> Problem | None:
    """The first published rule `event` breaks at `now_ms`, or None when the API accepts it."""
    if not isinstance(event, dict):
        return Problem("invalid_event", "event must be a JSON object")
    for rule in EVENT_RULES:
        detail = rule.check(event, now_ms)
        if detail is not None:
            return Problem(rule.reason, detail)
    return None


# ----- the request ----------------------------------------------------------------------------
def parse_json(body: bytes) -> Any:
    """The body as JSON; ValueError when it is not JSON."""
    return json.loads(body)


def check_auth(authorization: str | None, api_key: str, revoked_keys: frozenset[str]
               ) -> str | None:
    """The 401 message for this Authorization header, or None when the key is good."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return "Missing API key: send Authorization: Bearer <API key>"
    if key in revoked_keys:
        return "API key revoked"
    if key == api_key:
        return None
    if key.startswith("sk-") and not key.startswith(SERVICE_ACCOUNT_KEY_PREFIX):
        return f"Missing scopes: {REQUIRED_SCOPE}"
    return "Invalid API key"


def check_envelope(payload: dict) -> str | None:
    """The 400 message for a body that is not `{events: [1..1000], validate_only?, ...}`."""
    if "events" not in payload:
        return "Missing required field: events"
    events = payload["events"]
    if not isinstance(events, list):
        return "Field events must be an array"
    if not events:
        return f"Field events must hold 1 to {MAX_EVENTS_PER_REQUEST} events"
    if len(events) > MAX_EVENTS_PER_REQUEST:
        return f"Too many events: {len(events)} (max {MAX_EVENTS_PER_REQUEST})"
    if not isinstance(payload.get("validate_only", False), bool):
        return "Field validate_only must be a boolean"
    source = payload.get("integration_source")
    if source is not None and (not isinstance(source, str)   # the API trims it first
                               or _INTEGRATION_SOURCE.fullmatch(source.strip()) is None):
        return f"Field integration_source must match {INTEGRATION_SOURCE_PATTERN}"
    return None


def dedup_key(pixel_id: str, event_type: Any, custom_event_name: Any, event_id: Any
              ) -> tuple[str, Any, Any, Any]:
    """The API's dedup key (pixel, event name, id) as a tuple: the event name is the type, and
    for custom events also the lower-cased custom_event_name (as the API stores it), so two
    custom events sharing an id but not a name are two events. Standard types and custom names
    never collide (a custom name may not be a standard type)."""
    if event_type == CUSTOM and isinstance(custom_event_name, str):
        return (pixel_id, event_type, custom_event_name.lower(), event_id)
    return (pixel_id, event_type, None, event_id)
