"""The shared API case table (tests/api_cases.py) against the validator.

The emulator runs the same table over HTTP (tests/connectors/test_emulator_api_cases.py); the
table is written from the contract, so a case failing here means the validator is wrong.
"""
from __future__ import annotations

import pytest

from tests.api_cases import CASES, NOW_MS, ApiCase, base_event
from transforms import reasons
from transforms.validate import Violation, validate_event

# The emulator's own reasons for rules our section 7 codes have no name for.
OUR_REASON = {
    "invalid_event": reasons.MAPPING_ERROR,
    "invalid_oppref": reasons.MAPPING_ERROR,
    "invalid_opt_out": reasons.MAPPING_ERROR,
    "invalid_user": reasons.MAPPING_ERROR,
}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_validator_follows_the_api_case_table(case: ApiCase):
    violation = validate_event(case.event, NOW_MS)

    expected = None if case.accepted else OUR_REASON.get(case.reason, case.reason)
    assert (violation.reason if violation else None) == expected, violation


def test_every_expected_reason_is_one_of_ours():
    expected = {OUR_REASON.get(case.reason, case.reason) for case in CASES if not case.accepted}

    assert expected <= set(reasons.DEAD_LETTER_REASONS)


# The scalar profile's wire keys (contract section 6), which the emulator (profile openai only)
# ignores as unknown keys: the validator checks them on its own.
SHA = "a" * 64
SCALAR_PROFILE_CASES = [
    ("scalar_profile_every_field", {
        "email_sha256": SHA, "phone_number_sha256": SHA, "external_id_sha256": SHA,
        "external_id": "crm_7", "first_name_sha256": SHA, "last_name_sha256": SHA,
        "country_sha256": SHA, "city_sha256": SHA, "state_sha256": SHA, "zip_code_sha256": SHA,
        "ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0"}, None),
    ("scalar_hash_given_as_a_list", {"email_sha256": [SHA]}, "user.email_sha256 must be 64"
     " lower-case hex characters (a SHA-256 hash)"),
    ("scalar_hash_upper_case", {"zip_code_sha256": "A" * 64},
     "user.zip_code_sha256 must be 64 lower-case hex characters (a SHA-256 hash)"),
    ("scalar_hash_63_characters", {"state_sha256": "a" * 63},
     "user.state_sha256 must be 64 lower-case hex characters (a SHA-256 hash)"),
    ("scalar_hash_not_hex", {"city_sha256": "g" * 64},
     "user.city_sha256 must be 64 lower-case hex characters (a SHA-256 hash)"),
    ("scalar_raw_external_id_a_number", {"external_id": 7}, "user.external_id must be a string"),
]


@pytest.mark.parametrize(("user", "detail"), [case[1:] for case in SCALAR_PROFILE_CASES],
                         ids=[case[0] for case in SCALAR_PROFILE_CASES])
def test_validator_checks_the_scalar_profiles_wire_keys(user, detail):
    event = dict(base_event(), user=user)

    violation = validate_event(event, NOW_MS)

    assert violation == (None if detail is None else Violation(reasons.MAPPING_ERROR, detail))


@pytest.mark.parametrize(("user", "detail"), [
    ({"emails_sha256": "someone@example.com"}, "user.emails_sha256 must be a list of strings"),
    ({"countries": ["US", 1]}, "user.countries must be a list of strings"),
    ({"ip_address": "999.1.1.1"}, "user.ip_address must be an IPv4 or IPv6 address"),
    ({"android_advertising_id": "NOT-A-UUID"}, "user.android_advertising_id must be a lower-case"
     " canonical UUID (8-4-4-4-12), not all zeros"),
    ({"user_agent": ""}, "user.user_agent must be a non-empty string"),
    # the first key off its shape is named
    ({"user_agent": "x", "obref": 5, "ip_address": "bad"}, "user.obref must be a non-empty string"),
])
def test_user_detail_names_the_field_and_its_wire_shape_never_the_value(user, detail):
    violation = validate_event(dict(base_event(), user=user), NOW_MS)

    assert violation == Violation(reasons.MAPPING_ERROR, detail)
