"""Every documented event rule (contract sections 3 and 5), both sides of each boundary."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms import reasons
from transforms.events import DATA_TYPE_BY_EVENT_TYPE, MAX_AGE_MS, MAX_FUTURE_MS
from transforms.validate import Violation, check_timestamp_window, validate_event

NOW_MS = 1_790_000_000_000
DELETE = object()  # a path set to DELETE is removed from the event


def make_event(event_type: str = "order_created", **fields: Any) -> dict:
    """A valid event of `event_type`; `fields` replace top-level members."""
    data_type = DATA_TYPE_BY_EVENT_TYPE[event_type]
    data: dict[str, Any] = {"type": data_type}
    if data_type == "contents":
        data.update(amount=2599, currency="USD", contents=[
            {"id": "sku_1", "name": "Starter bundle", "content_type": "product", "quantity": 1}])
    elif data_type == "plan_enrollment":
        data.update(amount=999, currency="EUR", plan_id="pro_monthly")
    event = {
        # "SECRET" marks values standing in for user data: no detail may repeat them.
        "id": "order_SECRET_1",
        "type": event_type,
        "timestamp_ms": NOW_MS - 60_000,
        "action_source": "mobile_app" if event_type in ("app_installed", "app_opened") else "web",
        "source_url": "https://shop.example.com/SECRET/confirmation",
        "oppref": "oppref_SECRET",
        "user": {"emails_sha256": ["SECRET" + "0" * 58]},
        "data": data,
    }
    if event_type == "custom":
        event["custom_event_name"] = "quiz_completed"
    event.update(fields)
    return event


def with_changes(event: dict, changes: dict[str, Any]) -> dict:
    """A copy of `event` with dotted paths set (list indexes allowed) or DELETEd."""
    event = copy.deepcopy(event)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target: Any = event
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return event


def validate(changes: dict[str, Any], event_type: str = "order_created") -> Violation | None:
    return validate_event(with_changes(make_event(event_type), changes), NOW_MS)


@pytest.mark.parametrize("event_type", sorted(DATA_TYPE_BY_EVENT_TYPE))
def test_valid_event_of_every_type_passes(event_type):
    assert validate_event(make_event(event_type), NOW_MS) is None


# (test id, event type, changes, expected reason or None for "valid")
CASES = [
    # id: non-empty string
    ("id-missing", "order_created", {"id": DELETE}, reasons.MISSING_ID),
    ("id-empty", "order_created", {"id": ""}, reasons.MISSING_ID),
    ("id-none", "order_created", {"id": None}, reasons.MISSING_ID),
    ("id-int", "order_created", {"id": 12345}, reasons.MISSING_ID),
    ("id-one-char", "order_created", {"id": "a"}, None),
    # type: one of the 13 names, exact spelling
    ("type-missing", "order_created", {"type": DELETE}, reasons.INVALID_TYPE),
    ("type-source-name", "order_created", {"type": "purchase"}, reasons.INVALID_TYPE),
    ("type-upper-case", "order_created", {"type": "ORDER_CREATED"}, reasons.INVALID_TYPE),
    ("type-not-string", "order_created", {"type": 3}, reasons.INVALID_TYPE),
    # timestamp_ms: integer epoch milliseconds
    ("ts-missing", "order_created", {"timestamp_ms": DELETE}, reasons.INVALID_TIMESTAMP),
    ("ts-string", "order_created", {"timestamp_ms": str(NOW_MS)}, reasons.INVALID_TIMESTAMP),
    ("ts-float", "order_created", {"timestamp_ms": float(NOW_MS)}, reasons.INVALID_TIMESTAMP),
    ("ts-bool", "order_created", {"timestamp_ms": True}, reasons.INVALID_TIMESTAMP),
    ("ts-none", "order_created", {"timestamp_ms": None}, reasons.INVALID_TIMESTAMP),
    # timestamp window: exactly 7 days old / 10 minutes ahead are inside
    ("ts-exactly-7-days", "order_created", {"timestamp_ms": NOW_MS - MAX_AGE_MS}, None),
    ("ts-7-days-plus-1ms", "order_created", {"timestamp_ms": NOW_MS - MAX_AGE_MS - 1},
     reasons.STALE_TIMESTAMP),
    ("ts-exactly-10-min-ahead", "order_created", {"timestamp_ms": NOW_MS + MAX_FUTURE_MS}, None),
    ("ts-10-min-plus-1ms-ahead", "order_created", {"timestamp_ms": NOW_MS + MAX_FUTURE_MS + 1},
     reasons.FUTURE_TIMESTAMP),
    ("ts-seconds-not-ms", "order_created", {"timestamp_ms": NOW_MS // 1000},
     reasons.STALE_TIMESTAMP),
    # custom_event_name: 1-64 of [A-Za-z0-9_-], first and last a letter or digit, and not one
    # of the 12 standard names after lower-casing (the API lower-cases the name)
    ("custom-name-missing", "custom", {"custom_event_name": DELETE},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-empty", "custom", {"custom_event_name": ""}, reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-64-chars-ending-in-digit", "custom", {"custom_event_name": "a" * 63 + "7"},
     None),
    ("custom-name-64-chars-ending-in-underscore", "custom",
     {"custom_event_name": "a" * 63 + "_"}, reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-65-chars", "custom", {"custom_event_name": "a" * 65},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-1-char", "custom", {"custom_event_name": "x"}, None),
    ("custom-name-1-digit", "custom", {"custom_event_name": "7"}, None),
    ("custom-name-all-classes", "custom", {"custom_event_name": "quiz-step_2"}, None),
    ("custom-name-leading-underscore", "custom", {"custom_event_name": "_promo"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-trailing-dash", "custom", {"custom_event_name": "promo-"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-leading-dash", "custom", {"custom_event_name": "-promo"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-dash-alone", "custom", {"custom_event_name": "-"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-underscore-alone", "custom", {"custom_event_name": "_"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-upper-case", "custom", {"custom_event_name": "Promo_Click"}, None),
    ("custom-name-space", "custom", {"custom_event_name": "quiz completed"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-dot", "custom", {"custom_event_name": "quiz.completed"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-trailing-newline", "custom", {"custom_event_name": "quiz\n"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-non-ascii", "custom", {"custom_event_name": "caf\u00e9"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-not-string", "custom", {"custom_event_name": 7},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-built-in-order", "custom", {"custom_event_name": "order_created"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-built-in-upper-case", "custom", {"custom_event_name": "Order_Created"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-built-in-app", "custom", {"custom_event_name": "app_opened"},
     reasons.INVALID_CUSTOM_EVENT_NAME),
    ("custom-name-custom-itself", "custom", {"custom_event_name": "custom"}, None),
    ("custom-name-ignored-for-standard", "order_created", {"custom_event_name": "Bad Name"}, None),
    # action_source: required, one of 7 values; app_* need mobile_app
    ("action-source-missing", "order_created", {"action_source": DELETE},
     reasons.INVALID_ACTION_SOURCE),
    ("action-source-unknown", "order_created", {"action_source": "app"},
     reasons.INVALID_ACTION_SOURCE),
    ("action-source-upper-case", "order_created", {"action_source": "WEB"},
     reasons.INVALID_ACTION_SOURCE),
    ("action-source-not-string", "order_created", {"action_source": 1},
     reasons.INVALID_ACTION_SOURCE),
    ("app-installed-web", "app_installed", {"action_source": "web"},
     reasons.INVALID_ACTION_SOURCE),
    ("app-opened-offline", "app_opened", {"action_source": "offline"},
     reasons.INVALID_ACTION_SOURCE),
    ("app-opened-mobile-app", "app_opened", {"action_source": "mobile_app"}, None),
    # source_url: required for web
    ("source-url-missing-web", "order_created", {"source_url": DELETE},
     reasons.MISSING_SOURCE_URL),
    # sent but no absolute URL text: invalid, not missing (contract section 3, "whenever sent")
    ("source-url-empty-web", "order_created", {"source_url": ""}, reasons.INVALID_SOURCE_URL),
    ("source-url-not-string", "order_created", {"source_url": 5}, reasons.INVALID_SOURCE_URL),
    ("source-url-missing-offline", "order_created",
     {"source_url": DELETE, "action_source": "offline"}, None),
    # source_url: whenever sent, an absolute URL with a scheme and a host
    ("source-url-relative-path", "order_created", {"source_url": "/checkout/thanks"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-bare-host", "order_created", {"source_url": "shop.example.com/p/9"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-host-and-port-without-scheme", "order_created",
     {"source_url": "shop.example.com:8080/p"}, reasons.INVALID_SOURCE_URL),
    ("source-url-scheme-without-host", "order_created", {"source_url": "https:///p"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-scheme-only", "order_created", {"source_url": "https://"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-scheme-relative", "order_created", {"source_url": "//shop.example.com/p"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-mailto", "order_created", {"source_url": "mailto:SECRET@example.com"},
     reasons.INVALID_SOURCE_URL),
    ("source-url-relative-offline", "order_created",
     {"source_url": "/checkout", "action_source": "offline"}, reasons.INVALID_SOURCE_URL),
    ("source-url-origin-only", "order_created", {"source_url": "https://shop.example.com"},
     None),
    ("source-url-with-query-and-fragment", "order_created",
     {"source_url": "https://shop.example.com/p?a=1#top"}, None),
    ("source-url-port-and-ipv6", "order_created", {"source_url": "http://[::1]:8080/p"}, None),
    ("source-url-app-scheme", "order_created",
     {"source_url": "android-app://com.example.shop/checkout"}, None),
    # optional top-level members: JSON types
    ("oppref-not-string", "order_created", {"oppref": 5}, reasons.MAPPING_ERROR),
    ("user-not-object", "order_created", {"user": ["x"]}, reasons.MAPPING_ERROR),
    ("opt-out-string", "order_created", {"opt_out": "true"}, reasons.MAPPING_ERROR),
    ("opt-out-true", "order_created", {"opt_out": True}, None),
    ("optional-members-absent", "order_created",
     {"oppref": DELETE, "user": DELETE, "opt_out": DELETE}, None),
    # data: an object whose type matches the event type
    ("data-missing", "order_created", {"data": DELETE}, reasons.INVALID_CONTENTS),
    ("data-list", "order_created", {"data": []}, reasons.INVALID_CONTENTS),
    ("data-type-missing", "order_created", {"data.type": DELETE}, reasons.INVALID_CONTENTS),
    ("data-type-mismatch", "order_created", {"data.type": "customer_action"},
     reasons.INVALID_CONTENTS),
    ("data-type-mismatch-app", "app_installed", {"data.type": "contents"},
     reasons.INVALID_CONTENTS),
    ("data-unknown-member", "order_created", {"data.value": 3}, reasons.INVALID_CONTENTS),
    ("custom-data-extra-member", "custom", {"data.quiz_score": 7}, None),
    # amount: integer minor units, not bool, not negative
    ("amount-float", "order_created", {"data.amount": 19.99}, reasons.INVALID_AMOUNT),
    ("amount-integral-float", "order_created", {"data.amount": 1999.0}, reasons.INVALID_AMOUNT),
    ("amount-string", "order_created", {"data.amount": "1999"}, reasons.INVALID_AMOUNT),
    ("amount-bool", "order_created", {"data.amount": True}, reasons.INVALID_AMOUNT),
    ("amount-negative", "order_created", {"data.amount": -1}, reasons.INVALID_AMOUNT),
    ("amount-zero", "order_created", {"data.amount": 0}, None),
    ("amount-on-customer-action", "lead_created",
     {"data.amount": 5000, "data.currency": "USD"}, None),
    # currency: required with amount, upper-case ISO 4217
    ("currency-missing-with-amount", "order_created", {"data.currency": DELETE},
     reasons.MISSING_CURRENCY),
    ("currency-lower-case", "order_created", {"data.currency": "usd"}, reasons.INVALID_CURRENCY),
    ("currency-unknown", "order_created", {"data.currency": "XYZ"}, reasons.INVALID_CURRENCY),
    ("currency-numeric", "order_created", {"data.currency": 840}, reasons.INVALID_CURRENCY),
    ("currency-jpy", "order_created", {"data.currency": "JPY"}, None),
    ("currency-kwd", "order_created", {"data.currency": "KWD"}, None),
    ("currency-without-amount", "order_created", {"data.amount": DELETE}, None),
    ("currency-invalid-without-amount", "order_created",
     {"data.amount": DELETE, "data.currency": "dollars"}, reasons.INVALID_CURRENCY),
    ("no-money-at-all", "order_created", {"data.amount": DELETE, "data.currency": DELETE}, None),
    # contents: list of item objects
    ("contents-not-list", "order_created", {"data.contents": {"id": "sku_1"}},
     reasons.INVALID_CONTENTS),
    ("contents-item-not-object", "order_created", {"data.contents.0": "sku_1"},
     reasons.INVALID_CONTENTS),
    ("contents-empty-list", "order_created", {"data.contents": []}, None),
    ("contents-item-id-int", "order_created", {"data.contents.0.id": 1}, reasons.INVALID_CONTENTS),
    ("contents-item-name-list", "order_created", {"data.contents.0.name": ["a"]},
     reasons.INVALID_CONTENTS),
    ("contents-group-id-string", "order_created", {"data.contents.0.group_id": "grp"}, None),
    ("contents-content-type-empty", "order_created", {"data.contents.0.content_type": ""},
     reasons.INVALID_CONTENTS),
    ("contents-content-type-absent", "order_created", {"data.contents.0.content_type": DELETE},
     None),
    ("quantity-float", "order_created", {"data.contents.0.quantity": 1.0},
     reasons.INVALID_CONTENTS),
    ("quantity-string", "order_created", {"data.contents.0.quantity": "2"},
     reasons.INVALID_CONTENTS),
    ("quantity-bool", "order_created", {"data.contents.0.quantity": True},
     reasons.INVALID_CONTENTS),
    ("quantity-large-int", "order_created", {"data.contents.0.quantity": 10_000}, None),
    ("variant-dict-strings", "order_created",
     {"data.contents.0.variant_dict": {"size": "M", "color": "red"}}, None),
    ("variant-dict-int-value", "order_created", {"data.contents.0.variant_dict": {"size": 10}},
     reasons.INVALID_CONTENTS),
    ("variant-dict-list", "order_created", {"data.contents.0.variant_dict": ["M"]},
     reasons.INVALID_CONTENTS),
    ("variant-dict-nested", "order_created",
     {"data.contents.0.variant_dict": {"size": {"eu": "40"}}}, reasons.INVALID_CONTENTS),
    # item money: amount integer; item currency needed only when data.currency is absent
    ("item-amount-float", "order_created", {"data.contents.0.amount": 9.99},
     reasons.INVALID_AMOUNT),
    ("item-amount-negative", "order_created", {"data.contents.0.amount": -5},
     reasons.INVALID_AMOUNT),
    ("item-amount-data-currency", "order_created", {"data.contents.0.amount": 999}, None),
    ("item-amount-no-currency-anywhere", "order_created",
     {"data.contents.0.amount": 999, "data.amount": DELETE, "data.currency": DELETE},
     reasons.MISSING_CURRENCY),
    ("item-amount-item-currency", "order_created",
     {"data.contents.0.amount": 999, "data.contents.0.currency": "GBP",
      "data.amount": DELETE, "data.currency": DELETE}, None),
    ("item-currency-lower-case", "order_created", {"data.contents.0.currency": "gbp"},
     reasons.INVALID_CURRENCY),
    # contents allowed for contents, plan_enrollment and custom; never customer_action
    ("contents-on-customer-action", "lead_created", {"data.contents": [{"id": "a"}]},
     reasons.INVALID_CONTENTS),
    ("contents-on-plan-enrollment", "subscription_created", {"data.contents": [{"id": "a"}]},
     None),
    ("contents-on-custom", "custom", {"data.contents": [{"id": "a", "quantity": 2}]}, None),
    ("contents-on-custom-bad-quantity", "custom", {"data.contents": [{"quantity": 2.5}]},
     reasons.INVALID_CONTENTS),
    # plan_id only for plan_enrollment and custom
    ("plan-id-on-plan-enrollment", "trial_started", {"data.plan_id": "basic"}, None),
    ("plan-id-on-custom", "custom", {"data.plan_id": "basic"}, None),
    ("plan-id-on-contents", "order_created", {"data.plan_id": "basic"}, reasons.INVALID_CONTENTS),
    ("plan-id-on-customer-action", "registration_completed", {"data.plan_id": "basic"},
     reasons.INVALID_CONTENTS),
    ("plan-id-not-string", "subscription_created", {"data.plan_id": 42},
     reasons.INVALID_CONTENTS),
]


@pytest.mark.parametrize(("event_type", "changes", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_rule(event_type, changes, expected):
    violation = validate(changes, event_type)

    assert (violation.reason if violation else None) == expected


@pytest.mark.parametrize(("event_type", "changes"),
                         [case[1:3] for case in CASES if case[3] is not None],
                         ids=[case[0] for case in CASES if case[3] is not None])
def test_detail_is_readable_and_never_repeats_user_values(event_type, changes):
    violation = validate(changes, event_type)

    assert violation.detail and "SECRET" not in violation.detail


@pytest.mark.parametrize(("changes", "expected_detail"), [
    ({"id": ""}, "id must be a non-empty string"),
    ({"timestamp_ms": NOW_MS - MAX_AGE_MS - 1}, "timestamp_ms is more than 7 days in the past"),
    ({"source_url": DELETE}, "source_url is required when action_source is web"),
    ({"data.currency": DELETE}, "data.currency is required when data.amount is set"),
    ({"data.contents.0.quantity": 1.5}, "data.contents[0].quantity must be an integer"),
    ({"data.plan_id": "p"}, "data.plan_id is only allowed for plan_enrollment and custom"),
    ({"data.contents.0.amount": 5, "data.amount": DELETE, "data.currency": DELETE},
     "data.contents[0].currency is required when the item has an amount and data.currency is"
     " absent"),
])
def test_detail_names_the_field_and_the_rule(changes, expected_detail):
    assert validate(changes).detail == expected_detail


def test_built_in_name_detail_names_the_reused_name():
    violation = validate({"custom_event_name": "page_viewed"}, "custom")

    assert violation == Violation(reasons.INVALID_CUSTOM_EVENT_NAME,
                                  "custom_event_name must not reuse the standard event name "
                                  "'page_viewed'")


def test_first_violation_wins_in_field_order():
    violation = validate({"id": "", "type": "nope", "data": DELETE})

    assert violation.reason == reasons.MISSING_ID


@pytest.mark.parametrize("event", [None, [], "order_created", 5])
def test_event_that_is_not_an_object(event):
    assert validate_event(event, NOW_MS) == Violation(reasons.MAPPING_ERROR,
                                                      "event must be a JSON object")


def test_validate_event_does_not_modify_the_event():
    event = make_event("custom")
    snapshot = copy.deepcopy(event)

    validate_event(event, NOW_MS)

    assert event == snapshot


@pytest.mark.parametrize(("offset_ms", "expected"), [
    (0, None),
    (-MAX_AGE_MS, None),
    (-MAX_AGE_MS - 1, reasons.STALE_TIMESTAMP),
    (MAX_FUTURE_MS, None),
    (MAX_FUTURE_MS + 1, reasons.FUTURE_TIMESTAMP),
])
def test_check_timestamp_window_boundaries(offset_ms, expected):
    violation = check_timestamp_window(NOW_MS + offset_ms, NOW_MS)

    assert (violation.reason if violation else None) == expected


@given(st.integers(min_value=-2 * MAX_AGE_MS, max_value=2 * MAX_AGE_MS))
def test_check_timestamp_window_agrees_with_the_rule(offset_ms):
    violation = check_timestamp_window(NOW_MS + offset_ms, NOW_MS)

    inside = -MAX_AGE_MS <= offset_ms <= MAX_FUTURE_MS
    assert (violation is None) == inside
