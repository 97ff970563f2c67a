"""One table of API cases (event in -> accepted, or the reason), written from the contract.

The contract's sections 2, 3, 6 and 7 say which events the Conversions API accepts. Each case
is one wire event and what the API does with it, with both sides of every boundary. Two test
modules run the whole table: tests/transforms/test_validate_api_cases.py against
`transforms.validate.validate_event` and tests/connectors/test_emulator_api_cases.py against the
emulator over HTTP. Neither implementation is used to build the table, so where the two
disagree, the contract decides which one is wrong.

`reason` is the emulator's reason (the contract's dead-letter code where it has one; the
emulator's own `invalid_event`, `invalid_oppref`, `invalid_opt_out` and `invalid_user`
otherwise); the validator test translates those to our codes.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

NOW_MS = 1_764_590_400_000            # 2025-12-01T12:00:00Z: both sides check at this moment
DAY_MS = 24 * 60 * 60 * 1000
SEVEN_DAYS_MS = 7 * DAY_MS
TEN_MINUTES_MS = 10 * 60 * 1000

SHA = "a" * 64                        # a well-formed SHA-256 hex digest
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"   # a Google Advertising ID, canonical form
DELETE = object()                     # a `changes` value: remove the field


@dataclasses.dataclass(frozen=True)
class ApiCase:
    name: str
    event: Any
    reason: str | None                # None: the API accepts the event

    @property
    def accepted(self) -> bool:
        return self.reason is None


def base_event(event_type: str = "order_created", **changes: Any) -> dict:
    """A valid event of `event_type`; `changes` set fields by dotted path ("data.currency")."""
    data_type = {"lead_created": "customer_action", "registration_completed": "customer_action",
                 "appointment_scheduled": "customer_action", "app_installed": "customer_action",
                 "app_opened": "customer_action", "subscription_created": "plan_enrollment",
                 "trial_started": "plan_enrollment", "custom": "custom"}.get(event_type,
                                                                             "contents")
    event: dict[str, Any] = {
        "id": "evt_1", "type": event_type, "timestamp_ms": NOW_MS - 60_000,
        "action_source": "web", "source_url": "https://shop.example.com/checkout",
        "data": {"type": data_type},
    }
    if event_type in ("app_installed", "app_opened"):
        event["action_source"] = "mobile_app"
        del event["source_url"]
    if event_type == "custom":
        event["custom_event_name"] = "promo_click"
    return changed(event, **changes)


def changed(event: dict, **changes: Any) -> dict:
    """A copy of `event` with dotted paths set (`data.contents`, `user.ip_address`) or DELETEd."""
    event = copy.deepcopy(event)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = event
        for parent in parents:
            target = target.setdefault(parent, {})
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return event


def with_items(*items: Any, **data: Any) -> dict:
    """An order_created event whose data carries `items` as contents, plus `data` members."""
    return changed(base_event(), **{"data.contents": list(items)},
                   **{f"data.{key}": value for key, value in data.items()})


def with_user(**user: Any) -> dict:
    return changed(base_event(), user=user)


STANDARD_TYPES = (
    "page_viewed", "contents_viewed", "items_added", "checkout_started", "order_created",
    "lead_created", "registration_completed", "appointment_scheduled", "app_installed",
    "app_opened", "subscription_created", "trial_started")

NAME_64_DIGIT = "a" * 63 + "1"
NAME_64_UNDERSCORE = "a" * 63 + "_"

CASES: tuple[ApiCase, ...] = (
    # every type, in its simplest valid shape
    *(ApiCase(f"accepted_{event_type}", base_event(event_type), None)
      for event_type in (*STANDARD_TYPES, "custom")),
    ApiCase("not_an_object", ["evt_1"], "invalid_event"),

    # id
    ApiCase("id_missing", changed(base_event(), id=DELETE), "missing_id"),
    ApiCase("id_empty", base_event(id=""), "missing_id"),
    ApiCase("id_not_a_string", base_event(id=7), "missing_id"),
    ApiCase("id_one_character", base_event(id="x"), None),

    # type
    ApiCase("type_missing", changed(base_event(), type=DELETE), "invalid_type"),
    ApiCase("type_source_name", base_event(type="purchase"), "invalid_type"),
    ApiCase("type_upper_case", base_event(type="Order_Created"), "invalid_type"),

    # timestamp_ms: an integer within [now - 7 days, now + 10 minutes]
    ApiCase("timestamp_missing", changed(base_event(), timestamp_ms=DELETE),
            "invalid_timestamp"),
    ApiCase("timestamp_float", base_event(timestamp_ms=float(NOW_MS)), "invalid_timestamp"),
    ApiCase("timestamp_string", base_event(timestamp_ms=str(NOW_MS)), "invalid_timestamp"),
    ApiCase("timestamp_boolean", base_event(timestamp_ms=True), "invalid_timestamp"),
    ApiCase("timestamp_exactly_7_days_old", base_event(timestamp_ms=NOW_MS - SEVEN_DAYS_MS), None),
    ApiCase("timestamp_7_days_and_1_ms_old",
            base_event(timestamp_ms=NOW_MS - SEVEN_DAYS_MS - 1), "stale_timestamp"),
    ApiCase("timestamp_exactly_10_minutes_ahead",
            base_event(timestamp_ms=NOW_MS + TEN_MINUTES_MS), None),
    ApiCase("timestamp_10_minutes_and_1_ms_ahead",
            base_event(timestamp_ms=NOW_MS + TEN_MINUTES_MS + 1), "future_timestamp"),

    # custom_event_name: 1-64 of [A-Za-z0-9_-], first and last a letter or digit, not a
    # standard type after lower-casing; the API lower-cases it
    ApiCase("custom_name_64_ending_in_digit", base_event("custom", custom_event_name=NAME_64_DIGIT),
            None),
    ApiCase("custom_name_64_ending_in_underscore",
            base_event("custom", custom_event_name=NAME_64_UNDERSCORE),
            "invalid_custom_event_name"),
    ApiCase("custom_name_65_characters", base_event("custom", custom_event_name="a" * 65),
            "invalid_custom_event_name"),
    ApiCase("custom_name_one_letter", base_event("custom", custom_event_name="a"), None),
    ApiCase("custom_name_one_digit", base_event("custom", custom_event_name="7"), None),
    ApiCase("custom_name_starting_with_digit", base_event("custom", custom_event_name="9lives"),
            None),
    ApiCase("custom_name_inner_dash_and_underscore",
            base_event("custom", custom_event_name="promo-click_2"), None),
    ApiCase("custom_name_leading_underscore", base_event("custom", custom_event_name="_promo"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_trailing_dash", base_event("custom", custom_event_name="promo-"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_only_a_dash", base_event("custom", custom_event_name="-"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_with_space", base_event("custom", custom_event_name="promo click"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_with_dot", base_event("custom", custom_event_name="promo.click"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_non_ascii_letter", base_event("custom", custom_event_name="café"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_missing", changed(base_event("custom"), custom_event_name=DELETE),
            "invalid_custom_event_name"),
    ApiCase("custom_name_empty", base_event("custom", custom_event_name=""),
            "invalid_custom_event_name"),
    ApiCase("custom_name_not_a_string", base_event("custom", custom_event_name=5),
            "invalid_custom_event_name"),
    ApiCase("custom_name_standard_type", base_event("custom", custom_event_name="order_created"),
            "invalid_custom_event_name"),
    ApiCase("custom_name_standard_type_other_case",
            base_event("custom", custom_event_name="Order_Created"), "invalid_custom_event_name"),
    ApiCase("custom_name_the_word_custom", base_event("custom", custom_event_name="custom"), None),
    # the API lower-cases the name (capi-sync sends it lower-cased): mixed case is accepted
    ApiCase("custom_name_mixed_case", base_event("custom", custom_event_name="Promo_Click"), None),

    # action_source
    *(ApiCase(f"action_source_{source}", base_event(action_source=source), None)
      for source in ("web", "mobile_app", "offline", "physical_store", "phone_call", "email",
                     "other")),
    ApiCase("action_source_missing", changed(base_event(), action_source=DELETE),
            "invalid_action_source"),
    ApiCase("action_source_unknown", base_event(action_source="app"), "invalid_action_source"),
    ApiCase("action_source_upper_case", base_event(action_source="WEB"), "invalid_action_source"),
    ApiCase("app_installed_from_web", base_event("app_installed", action_source="web",
                                                 source_url="https://shop.example.com/app"),
            "invalid_action_source"),
    ApiCase("app_opened_offline", base_event("app_opened", action_source="offline"),
            "invalid_action_source"),

    # source_url: required for web; when sent, absolute with a scheme and a host
    ApiCase("web_without_source_url", changed(base_event(), source_url=DELETE),
            "missing_source_url"),
    ApiCase("offline_without_source_url",
            changed(base_event(action_source="offline"), source_url=DELETE), None),
    ApiCase("source_url_relative_path", base_event(source_url="/checkout/thanks"),
            "invalid_source_url"),
    ApiCase("source_url_bare_host", base_event(source_url="shop.example.com/p/9"),
            "invalid_source_url"),
    ApiCase("source_url_scheme_relative", base_event(source_url="//shop.example.com/p/9"),
            "invalid_source_url"),
    ApiCase("source_url_scheme_without_host", base_event(source_url="https://"),
            "invalid_source_url"),
    ApiCase("source_url_relative_on_offline_event",
            base_event(action_source="offline", source_url="/checkout/thanks"),
            "invalid_source_url"),
    ApiCase("source_url_scheme_but_no_authority", base_event(source_url="mailto:shop@example.com"),
            "invalid_source_url"),
    ApiCase("source_url_broken_ipv6_host", base_event(source_url="http://[::1/p"),
            "invalid_source_url"),
    ApiCase("source_url_ipv6_host", base_event(source_url="http://[2001:db8::1]:8080/p"), None),
    ApiCase("source_url_other_scheme", base_event(source_url="ftp://files.example.com/p"), None),
    ApiCase("source_url_origin_only", base_event(source_url="https://shop.example.com"), None),
    ApiCase("source_url_http_with_port", base_event(source_url="http://shop.example.com:8080/p"),
            None),
    ApiCase("source_url_with_query_and_fragment",
            base_event(source_url="https://shop.example.com/p/9?ref=ad#reviews"), None),
    # sent but no absolute URL text, on any action source: invalid, not missing (a web event
    # without source_url is the one missing_source_url)
    ApiCase("source_url_not_a_string", base_event(source_url=42), "invalid_source_url"),
    ApiCase("source_url_empty", base_event(source_url=""), "invalid_source_url"),
    ApiCase("source_url_empty_on_offline_event",
            base_event(action_source="offline", source_url=""), "invalid_source_url"),
    ApiCase("source_url_not_a_string_on_offline_event",
            base_event(action_source="offline", source_url=["https://shop.example.com/p"]),
            "invalid_source_url"),

    # oppref, opt_out
    ApiCase("oppref_string", base_event(oppref="oppref_abc"), None),
    ApiCase("oppref_not_a_string", base_event(oppref=123), "invalid_oppref"),
    ApiCase("opt_out_true", base_event(opt_out=True), None),
    ApiCase("opt_out_false", base_event(opt_out=False), None),
    ApiCase("opt_out_string", base_event(opt_out="yes"), "invalid_opt_out"),

    # user: the wire keys of profile openai
    ApiCase("user_every_field", with_user(
        emails_sha256=[SHA], phone_numbers_sha256=[SHA], external_ids_sha256=[SHA],
        first_names_sha256=[SHA], last_names_sha256=[SHA], countries=["US"],
        cities=["san francisco"], regions=["ca"], postal_codes=["94105-1234"], obref="ob_1",
        android_advertising_id=GAID, ip_address="203.0.113.7", user_agent="Mozilla/5.0"), None),
    ApiCase("user_empty_object", with_user(), None),
    ApiCase("user_not_an_object", base_event(user="someone@example.com"), "invalid_user"),
    ApiCase("user_ipv6_address", with_user(ip_address="2001:db8::1"), None),
    ApiCase("user_android_id_canonical", with_user(android_advertising_id=GAID), None),
    # the API uses the first three valid, unique values of a list and ignores the rest
    ApiCase("user_list_of_four", with_user(emails_sha256=[SHA, "b" * 64, "c" * 64, "d" * 64]),
            None),
    ApiCase("user_list_with_a_value_that_is_no_hash",
            with_user(emails_sha256=["someone@example.com", SHA]), None),
    ApiCase("user_list_empty", with_user(emails_sha256=[]), None),
    ApiCase("user_list_holding_a_number", with_user(emails_sha256=[5]), "invalid_user"),
    ApiCase("user_list_holding_null", with_user(countries=["US", None]), "invalid_user"),
    ApiCase("user_hashed_list_given_as_a_string", with_user(emails_sha256=SHA), "invalid_user"),
    ApiCase("user_raw_list_given_as_a_string", with_user(countries="US"), "invalid_user"),
    ApiCase("user_list_given_as_an_object", with_user(postal_codes={"zip": "94105"}),
            "invalid_user"),
    # scalars: a wrong value fails the batch
    ApiCase("user_ip_address_not_an_address", with_user(ip_address="999.1.1.1"), "invalid_user"),
    ApiCase("user_ip_address_a_number", with_user(ip_address=3405803783), "invalid_user"),
    ApiCase("user_ipv6_address_upper_case", with_user(ip_address="2001:DB8::1"), None),
    ApiCase("user_android_id_upper_case", with_user(android_advertising_id=GAID.upper()),
            "invalid_user"),
    ApiCase("user_android_id_all_zero",
            with_user(android_advertising_id="00000000-0000-0000-0000-000000000000"),
            "invalid_user"),
    ApiCase("user_android_id_without_dashes",
            with_user(android_advertising_id=GAID.replace("-", "")), "invalid_user"),
    ApiCase("user_android_id_malformed", with_user(android_advertising_id="not-a-uuid"),
            "invalid_user"),
    ApiCase("user_android_id_in_a_list", with_user(android_advertising_id=[GAID]),
            "invalid_user"),
    ApiCase("user_agent_empty", with_user(user_agent=""), "invalid_user"),
    ApiCase("user_agent_one_character", with_user(user_agent="x"), None),
    ApiCase("user_obref_a_number", with_user(obref=7), "invalid_user"),
    ApiCase("user_unknown_key_ignored", with_user(favourite_colour=7), None),

    # data: the shape chosen by type
    ApiCase("data_missing", changed(base_event(), data=DELETE), "invalid_contents"),
    ApiCase("data_not_an_object", base_event(data=[]), "invalid_contents"),
    ApiCase("data_type_missing", base_event(data={}), "invalid_contents"),
    ApiCase("data_type_of_another_event", base_event(data={"type": "customer_action"}),
            "invalid_contents"),
    ApiCase("customer_action_with_contents",
            base_event("lead_created", **{"data.contents": [{"id": "sku_1"}]}),
            "invalid_contents"),
    ApiCase("contents_with_plan_id", base_event(**{"data.plan_id": "gold"}), "invalid_contents"),
    ApiCase("contents_with_unknown_member", base_event(**{"data.coupon": "X"}),
            "invalid_contents"),
    ApiCase("plan_enrollment_with_plan_id", base_event("trial_started", **{"data.plan_id": "gold"}),
            None),
    ApiCase("plan_enrollment_with_empty_plan_id",
            base_event("trial_started", **{"data.plan_id": ""}), "invalid_contents"),
    ApiCase("plan_enrollment_with_contents",
            base_event("subscription_created", **{"data.contents": [{"id": "plan_gold"}]}), None),
    ApiCase("custom_with_contents", base_event("custom", **{"data.contents": [{"id": "sku_1"}]}),
            None),
    ApiCase("custom_with_plan_id_and_own_members",
            base_event("custom", **{"data.plan_id": "gold", "data.campaign": "winter"}), None),

    # money: integer minor units, ISO 4217 upper-case currency required with an amount
    ApiCase("amount_with_currency", base_event(**{"data.amount": 1999, "data.currency": "USD"}),
            None),
    ApiCase("amount_zero", base_event(**{"data.amount": 0, "data.currency": "USD"}), None),
    ApiCase("amount_float", base_event(**{"data.amount": 19.99, "data.currency": "USD"}),
            "invalid_amount"),
    ApiCase("amount_string", base_event(**{"data.amount": "1999", "data.currency": "USD"}),
            "invalid_amount"),
    ApiCase("amount_boolean", base_event(**{"data.amount": True, "data.currency": "USD"}),
            "invalid_amount"),
    ApiCase("amount_negative", base_event(**{"data.amount": -1, "data.currency": "USD"}),
            "invalid_amount"),
    ApiCase("custom_amount_without_currency", base_event("custom", **{"data.amount": 5}),
            "missing_currency"),
    ApiCase("amount_without_currency", base_event(**{"data.amount": 1999}), "missing_currency"),
    ApiCase("customer_action_amount_without_currency",
            base_event("lead_created", **{"data.amount": 500}), "missing_currency"),
    ApiCase("currency_without_amount", base_event(**{"data.currency": "EUR"}), None),
    ApiCase("currency_lower_case", base_event(**{"data.amount": 1999, "data.currency": "usd"}),
            "invalid_currency"),
    ApiCase("currency_not_iso_4217", base_event(**{"data.amount": 1999, "data.currency": "XYZ"}),
            "invalid_currency"),
    ApiCase("currency_zero_exponent", base_event(**{"data.amount": 500, "data.currency": "JPY"}),
            None),

    # contents items
    ApiCase("item_full", with_items({"id": "sku_1", "group_id": "g_1", "name": "Mug",
                                     "content_type": "product", "amount": 1250, "quantity": 2,
                                     "currency": "EUR", "variant_dict": {"size": "M"}}), None),
    ApiCase("item_without_content_type", with_items({"id": "sku_1"}), None),
    ApiCase("item_content_type_empty", with_items({"id": "sku_1", "content_type": ""}),
            "invalid_contents"),
    ApiCase("item_content_type_not_a_string", with_items({"id": "sku_1", "content_type": 3}),
            "invalid_contents"),
    ApiCase("item_quantity_integer", with_items({"id": "sku_1", "quantity": 3}), None),
    ApiCase("item_quantity_float", with_items({"id": "sku_1", "quantity": 1.5}),
            "invalid_contents"),
    ApiCase("item_quantity_string", with_items({"id": "sku_1", "quantity": "2"}),
            "invalid_contents"),
    ApiCase("item_id_not_a_string", with_items({"id": 7}), "invalid_contents"),
    ApiCase("item_group_id_not_a_string", with_items({"id": "sku_1", "group_id": 1}),
            "invalid_contents"),
    ApiCase("item_name_not_a_string", with_items({"id": "sku_1", "name": 1}), "invalid_contents"),
    ApiCase("item_not_an_object", with_items("sku_1"), "invalid_contents"),
    ApiCase("contents_not_a_list", base_event(**{"data.contents": {"id": "sku_1"}}),
            "invalid_contents"),
    ApiCase("item_variant_dict_of_strings", with_items({"id": "sku_1",
                                                        "variant_dict": {"size": "M"}}), None),
    ApiCase("item_variant_dict_with_number", with_items({"id": "sku_1",
                                                         "variant_dict": {"size": 1}}),
            "invalid_contents"),
    ApiCase("item_variant_dict_a_list", with_items({"id": "sku_1", "variant_dict": ["M"]}),
            "invalid_contents"),
    ApiCase("item_amount_with_data_currency", with_items({"id": "sku_1", "amount": 1250},
                                                         currency="USD"), None),
    ApiCase("item_amount_with_item_currency", with_items({"id": "sku_1", "amount": 1250,
                                                          "currency": "USD"}), None),
    ApiCase("item_amount_without_any_currency", with_items({"id": "sku_1", "amount": 1250}),
            "missing_currency"),
    ApiCase("item_amount_float", with_items({"id": "sku_1", "amount": 12.5, "currency": "USD"}),
            "invalid_amount"),
    ApiCase("item_currency_without_amount_lower_case",
            with_items({"id": "sku_1", "currency": "usd"}), "invalid_currency"),
    ApiCase("item_currency_lower_case", with_items({"id": "sku_1", "amount": 1250,
                                                    "currency": "eur"}), "invalid_currency"),
)


def _unique_names(cases: tuple[ApiCase, ...]) -> None:
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate case names: {duplicates}")


_unique_names(CASES)
