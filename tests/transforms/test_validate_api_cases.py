"""The shared API case table (tests/api_cases.py) against the validator.

The emulator runs the same table over HTTP (tests/connectors/test_emulator_api_cases.py); the
table is written from the contract, so a case failing here means the validator is wrong.
"""
from __future__ import annotations

import pytest

from tests.api_cases import CASES, NOW_MS, ApiCase
from transforms import reasons
from transforms.validate import validate_event

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
