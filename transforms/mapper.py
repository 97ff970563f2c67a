"""Row -> CAPI event, by a compiled MappingPlan. Pure Python; the Beam DoFn wraps RowMapper.

    mapper = RowMapper(load_mapping())
    result = mapper.map_row(row, source="export.parquet#row=17")
    result.event        # MappedEvent, validated, user fields hashed
    result.dead_letter  # DeadLetter with a reason code (and the mapped event when there is one)
    result.skipped      # "excluded_event", "no_consent" or "filtered_out"
    mapper.map_group(rows, sources)   # group_by: one event from rows sharing a key
    mapper.counters     # Counter: "timestamp_defaulted", "user.email.invalid", ...

Exactly one of the three is set. map_row never raises: an unexpected error becomes a
`mapping_error` dead letter that names the exception type and the part being mapped, with
quoted text and digit runs in the message masked (they could be personal data).
"""
from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from transforms import json_text, reasons
from transforms.deadletter import DeadLetter
from transforms.errors import InvalidValueError
from transforms.events import (
    CONTENTS,
    CUSTOM,
    DATA_TYPE_BY_EVENT_TYPE,
    PLAN_ENROLLMENT,
    MappedEvent,
)
from transforms.mapping import MappingPlan
from transforms.money import normalize_currency, to_minor_units
from transforms.normalize import as_text
from transforms.source_url import normalize_source_url
from transforms.timestamps import MILLISECONDS, to_epoch_ms
from transforms.user_fields import NOT_BUILT, UserBuilder
from transforms.validate import CONTENTS_ITEM, name_item, validate_event

_CONTENTS_ALLOWED = frozenset({CONTENTS, PLAN_ENROLLMENT, CUSTOM})
_PLAN_ID_ALLOWED = frozenset({PLAN_ENROLLMENT, CUSTOM})
_ITEM_TEXT_FIELDS = frozenset({"id", "group_id", "name", "content_type"})
_ITEM_FIELD_NAMES = {field: f"{CONTENTS_ITEM}.{field}" for field in (
    *_ITEM_TEXT_FIELDS, "amount", "currency", "quantity", "variant_dict")}
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})
# Epoch milliseconds below this (1973-03-03) are almost surely epoch seconds.
_LOOKS_LIKE_SECONDS = 100_000_000_000
_SECRET_LOOKING = re.compile(r"'[^']*'|\"[^\"]*\"|\S+@\S+|\d{4,}")


class MapResult(NamedTuple):
    """What became of one row: exactly one of event, dead_letter, skipped is set (a NamedTuple,
    as MappedEvent: one per row)."""

    event: MappedEvent | None = None
    dead_letter: DeadLetter | None = None
    skipped: str | None = None


# The per-row constructors without a Python frame (a NamedTuple's __new__ is Python code).
_event_result = functools.partial(tuple.__new__, MapResult)
_new_event = functools.partial(tuple.__new__, MappedEvent)
_SKIPPED_NO_CONSENT = MapResult(skipped=reasons.NO_CONSENT)
_SKIPPED_EXCLUDED = MapResult(skipped=reasons.EXCLUDED_EVENT)
_SKIPPED_FILTERED = MapResult(skipped=reasons.FILTERED_OUT)
LOG = logging.getLogger(__name__)
_logged_hints: set[str] = set()   # each unit hint is logged once per worker process


def _log_unit_hint_once(detail: str) -> None:
    """'... looks like epoch microseconds: declare unit: us' goes to the log once per run too,
    so a run whose every row is dead-lettered for it says why where the user looks first."""
    hint = detail.partition("; it looks like ")[2]
    if hint and hint not in _logged_hints:
        _logged_hints.add(hint)
        LOG.warning("event.timestamp_ms: epoch number out of range; it looks like %s for"
                    " event.timestamp_ms in the mapping (such rows are dead-lettered"
                    " invalid_timestamp)", hint)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _text(value: Any, field: str) -> str | None:
    """A scalar as stripped text ('  A1 ' -> 'A1', 12.0 -> '12'); lists/objects are an error."""
    if type(value) is str:
        value = value.strip()
        return value or None
    if value is None:
        return None
    text = as_text(value)
    if text is None:
        raise InvalidValueError(reasons.MAPPING_ERROR,
                                f"{field} resolved to a {_kind(value)} where one value is expected")
    return text.strip() or None


def _boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise InvalidValueError(reasons.MAPPING_ERROR,
                            f"{field} is not a boolean (true/false, 1/0, yes/no)")


def _integer(value: Any, field: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise InvalidValueError(reasons.INVALID_CONTENTS, f"{field} is a boolean, not an integer")
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, (float, Decimal)) and not (
                math.isfinite(value) and value == int(value)):
            raise InvalidValueError(reasons.INVALID_CONTENTS, f"{field} is not a whole number")
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise InvalidValueError(reasons.INVALID_CONTENTS, f"{field} is not an integer")


def _string_dict(value: Any, field: str) -> dict[str, str] | None:
    """variant_dict: an object (or Arrow map as (key, value) pairs) of strings."""
    if isinstance(value, (list, tuple)) and all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in value):
        value = dict(value)
    if not isinstance(value, Mapping):
        raise InvalidValueError(reasons.INVALID_CONTENTS, f"{field} is not an object")
    out = {}
    for key, item in value.items():
        text = _text(item, field)
        if text is not None:
            out[str(key)] = text
    return out or None


def _jsonable(value: Any) -> Any:
    """custom data members: what JSON can carry (Decimal -> text, datetime -> ISO text)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def describe_exception(exc: BaseException, stage: str) -> str:
    """'unexpected KeyError while mapping user fields: <value>' (quoted text and numbers masked)."""
    message = _SECRET_LOOKING.sub("<value>", str(exc))[:200]
    return f"unexpected {type(exc).__name__} while mapping {stage}: {message}"


class RowMapper:
    """Maps rows with one compiled plan. Picklable; keep one per worker (DoFn.setup)."""

    def __init__(self, plan: MappingPlan, clock_ms: Callable[[], int] | None = None, *,
                 positional: bool = False):
        self.plan = plan
        self.clock_ms = clock_ms
        # positional: rows are tuples and the plan's paths read positions (transforms.columnar)
        self.positional = positional
        self.counters: collections.Counter[str] = collections.Counter()
        self._prepare()

    def __getstate__(self) -> dict[str, Any]:
        return {"plan": self.plan, "clock_ms": self.clock_ms, "counters": self.counters,
                "positional": self.positional}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.plan = state["plan"]
        self.clock_ms = state["clock_ms"]
        self.counters = state["counters"]
        self.positional = state.get("positional", False)
        self._prepare()

    def _prepare(self) -> None:
        plan = self.plan
        self._event_names = dict(plan.event_names)
        self._exclude = frozenset(plan.exclude)
        self.user_builder: UserBuilder | None = (
            UserBuilder(plan.user_profile, plan.user_fields, plan.default_phone_region)
            if plan.user_enabled and plan.user_fields else None)
        self._stage = "the row"

    # -- public --------------------------------------------------------------------------------

    def map_row(self, row: Mapping[str, Any], source: str | None = None, *,
                built_user: Any = NOT_BUILT) -> MapResult:
        """Map one row; never raises. `built_user`: the row's BuiltUser when the caller built
        the user objects of many rows at once (UserBuilder.build_columns)."""
        return self._map_safely(row, source, built_user, None)

    def map_group(self, rows: Sequence[Mapping[str, Any]], sources: Sequence[str | None]
                  ) -> MapResult:
        """One event from the rows of a group (plan.group_by), in source order: event fields
        from the first row, data.contents from every row. Never raises."""
        return self._map_safely(rows[0], sources[0], NOT_BUILT, rows)

    def _map_safely(self, row: Any, source: str | None, built_user: Any,
                    group: Sequence[Any] | None) -> MapResult:
        try:
            return self._map(row, source, built_user, group)
        except InvalidValueError as exc:
            return MapResult(dead_letter=DeadLetter(
                reason=exc.reason, detail=exc.detail, event_id=self._safe_id(row),
                source=source, pixel_id=self._safe_pixel_id(row)))
        except Exception as exc:  # noqa: BLE001 - the contract: every row ends somewhere
            self.counters["mapping_error.unexpected"] += 1
            return MapResult(dead_letter=DeadLetter(
                reason=reasons.MAPPING_ERROR, detail=describe_exception(exc, self._stage),
                event_id=self._safe_id(row), source=source, pixel_id=self._safe_pixel_id(row)))

    # -- the mapping -----------------------------------------------------------------------------

    def _safe_id(self, row: Any) -> str | None:
        return self._safe_text(self.plan.id, row)

    def _safe_pixel_id(self, row: Any) -> str | None:
        return self._safe_text(self.plan.pixel_id, row) if self.plan.pixel_id else None

    @staticmethod
    def _safe_text(value_source: Any, row: Any) -> str | None:
        """Best effort, for a dead letter only: the row may be anything."""
        try:
            text = as_text(value_source.get(row))
            return text.strip() or None if text is not None else None
        except Exception:  # noqa: BLE001
            return None

    def _map(self, row: Mapping[str, Any], source: str | None, built_user: Any,
             group: Sequence[Any] | None) -> MapResult:
        plan = self.plan
        counters = self.counters
        if not (self.positional or isinstance(row, Mapping)):
            raise InvalidValueError(reasons.MAPPING_ERROR,
                                    f"the row is a {_kind(row)}, not a record of columns")

        if plan.filters:
            self._stage = "filter"
            for row_filter in plan.filters:
                if not row_filter.keeps(row):
                    counters[f"{row_filter.source.name}.filtered_out"] += 1
                    return _SKIPPED_FILTERED

        self._stage = "consent"
        if plan.consent is not None and not plan.consent.is_granted(row):
            return _SKIPPED_NO_CONSENT

        self._stage = "event.type"
        name = _text(plan.type.get(row, counters), "event.type")
        if name is None:
            raise InvalidValueError(reasons.INVALID_TYPE,
                                    "event.type: the event name is empty or missing")
        name = name.lower()
        event_type = self._event_names.get(name, CUSTOM)
        if name in self._exclude or event_type in self._exclude:
            return _SKIPPED_EXCLUDED

        now_ms = self.clock_ms() if self.clock_ms is not None else wall_clock_ms()
        event: dict[str, Any] = {}
        self._stage = "event.id"
        event_id = _text(plan.id.get(row, counters), "event.id")
        if event_id is not None:
            event["id"] = event_id
        event["type"] = event_type
        if event_type == CUSTOM and plan.custom_event_name is not None:
            self._stage = "event.custom_event_name"
            custom_name = _text(plan.custom_event_name.get(row, counters),
                                "event.custom_event_name")
            if custom_name is not None:
                event["custom_event_name"] = custom_name.lower()

        self._stage = "event.timestamp_ms"
        raw_timestamp = plan.timestamp_ms.get(row, counters) if plan.timestamp_ms else None
        if raw_timestamp is None:
            counters["timestamp_defaulted"] += 1
            event["timestamp_ms"] = now_ms
        else:
            try:
                event["timestamp_ms"] = to_epoch_ms(raw_timestamp, plan.timestamp_unit,
                                                    "event.timestamp_ms")
            except InvalidValueError as exc:
                _log_unit_hint_once(exc.detail)
                raise

        self._stage = "event fields"
        if plan.action_source is not None:
            action_source = _text(plan.action_source.get(row, counters), "event.action_source")
            if action_source is not None:
                event["action_source"] = action_source.lower()
        if plan.source_url is not None:
            url = _text(plan.source_url.get(row, counters), "event.source_url")
            if url is not None:   # origin and path; the validator checks it is absolute
                event["source_url"] = normalize_source_url(url, plan.source_url_keep_query)
        if plan.oppref is not None:
            oppref = _text(plan.oppref.get(row, counters), "event.oppref")
            if oppref is not None:
                event["oppref"] = oppref
        if plan.opt_out is not None:
            opt_out = plan.opt_out.get(row, counters)
            if opt_out is not None:
                event["opt_out"] = _boolean(opt_out, "event.opt_out")

        if self.user_builder is not None:
            self._stage = "user fields"
            if built_user is NOT_BUILT:
                user = self.user_builder.build(row, counters)
            else:
                user, counts = built_user
                if counts:
                    counters.update(counts)
            if user is not None:
                event["user"] = user

        self._stage = "data"
        event["data"] = self._data(row, event_type, counters, group)

        pixel_id = None
        if plan.pixel_id is not None:
            self._stage = "pixel_id"
            pixel_id = _text(plan.pixel_id.get(row, counters), "pixel_id")

        self._stage = "validation"
        violation = validate_event(event, now_ms, user_built=self.user_builder is not None)
        if violation is not None:
            detail = violation.detail
            if (violation.reason == reasons.STALE_TIMESTAMP
                    and plan.timestamp_unit == MILLISECONDS
                    and 0 < event["timestamp_ms"] < _LOOKS_LIKE_SECONDS):
                detail += ("; the value looks like epoch seconds: declare unit: s for"
                           " event.timestamp_ms in the mapping")
            return MapResult(dead_letter=DeadLetter(
                reason=violation.reason, detail=detail, event_id=event.get("id"),
                source=source, event=event, pixel_id=pixel_id))
        return _event_result((_new_event((pixel_id, event, source)), None, None))

    def _data(self, row: Any, event_type: str, counters: Any, group: Sequence[Any] | None
              ) -> dict[str, Any]:
        plan = self.plan
        data_type = DATA_TYPE_BY_EVENT_TYPE[event_type]
        data: dict[str, Any] = {"type": data_type}
        currency = None
        if plan.currency is not None:
            raw_currency = plan.currency.get(row, counters)
            if raw_currency is not None:
                currency = normalize_currency(raw_currency, "data.currency")
        if plan.amount is not None:
            raw_amount = plan.amount.get(row, counters)
            if raw_amount is not None:
                if currency is None:
                    raise InvalidValueError(reasons.MISSING_CURRENCY,
                                            "data.amount is set but data.currency is empty")
                data["amount"] = to_minor_units(raw_amount, currency, plan.amount_unit,
                                                "data.amount")
        if currency is not None:
            data["currency"] = currency

        if plan.plan_id is not None:
            plan_id = _text(plan.plan_id.get(row, counters), "data.plan_id")
            if plan_id is not None:
                if data_type in _PLAN_ID_ALLOWED:
                    data["plan_id"] = plan_id
                else:
                    counters["data.plan_id.not_allowed"] += 1

        if plan.contents is not None:
            self._stage = "data.contents"
            pairs = self._items(row, group)
            if pairs:
                if data_type not in _CONTENTS_ALLOWED:
                    counters["data.contents.not_allowed"] += 1
                else:
                    contents = self._contents(pairs, currency, counters)
                    if contents:
                        data["contents"] = contents

        if data_type == CUSTOM and plan.custom_data:
            self._stage = "data.custom"
            for member, member_source in plan.custom_data:
                value = _jsonable(member_source.get(row, counters))
                if value is not None:
                    data[member] = value
        return data

    @staticmethod
    def _json_list(text: str) -> Any:
        try:
            return json_text.loads(text)
        except ValueError:
            raise InvalidValueError(reasons.INVALID_CONTENTS,
                                    "data.contents: the source text is not a JSON list") from None

    def _items(self, row: Any, group: Sequence[Any] | None) -> list[tuple[Any, Any]]:
        """(item, the row it came from) for every item: the list at contents.path of the row,
        or of each row of the group; with no path, each row of the group is one item."""
        list_path = self.plan.contents.path
        if list_path is None:
            return [(member, member) for member in (group or (row,))]
        pairs = []
        for member in group or (row,):
            items = list_path.get(member)
            if isinstance(items, str) and items.lstrip().startswith("["):
                items = self._json_list(items)
            if items is None or (isinstance(items, (list, tuple)) and not items):
                continue
            if not isinstance(items, (list, tuple)):
                raise InvalidValueError(reasons.INVALID_CONTENTS,
                                        f"data.contents: {list_path.text} is a"
                                        f" {_kind(items)}, not a list")
            pairs.extend(zip(items, itertools.repeat(member)))
        return pairs

    def _contents(self, pairs: list[tuple[Any, Any]], data_currency: str | None, counters: Any
                  ) -> list[dict[str, Any]]:
        contents = []
        for index, (item, row) in enumerate(pairs):
            try:
                out = self._item(item, row, data_currency, counters)
            except InvalidValueError as exc:   # name the item only now: most items have no error
                raise InvalidValueError(exc.reason, name_item(exc.detail, index)) from None
            if out:
                contents.append(out)
            else:
                counters["data.contents.empty_item"] += 1
        return contents

    def _item(self, item: Any, row: Any, data_currency: str | None, counters: Any
              ) -> dict[str, Any]:
        """One item of data.contents; its errors name it CONTENTS_ITEM (see validate.name_item)."""
        contents_plan = self.plan.contents
        out: dict[str, Any] = {}
        raw_amount = None
        for field, field_source in contents_plan.fields:
            value = field_source.get(item, row, counters)
            if value is None:
                continue
            if field in _ITEM_TEXT_FIELDS:
                text = _text(value, _ITEM_FIELD_NAMES[field])
                if text is not None:
                    out[field] = text
            elif field == "amount":
                raw_amount = value
            elif field == "currency":
                out["currency"] = normalize_currency(value, _ITEM_FIELD_NAMES["currency"])
            elif field == "quantity":
                out["quantity"] = _integer(value, _ITEM_FIELD_NAMES["quantity"])
            elif field == "variant_dict":
                variants = _string_dict(value, _ITEM_FIELD_NAMES["variant_dict"])
                if variants:
                    out["variant_dict"] = variants
        if raw_amount is not None:
            currency = out.get("currency") or data_currency
            if currency is None:
                raise InvalidValueError(
                    reasons.MISSING_CURRENCY,
                    f"{CONTENTS_ITEM}.amount is set but neither the item nor data has a currency")
            out["amount"] = to_minor_units(raw_amount, currency, contents_plan.amount_unit,
                                           _ITEM_FIELD_NAMES["amount"])
        return out
