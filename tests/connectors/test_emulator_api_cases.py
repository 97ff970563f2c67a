"""The shared API case table (tests/api_cases.py) against the emulator over loopback HTTP.

The validator runs the same table (tests/transforms/test_validate_api_cases.py); the table is
written from the contract, so a case failing here means the emulator is wrong.
"""
from __future__ import annotations

import pytest
import requests

from connectors.emulator import Emulator
from tests.api_cases import CASES, NOW_MS, ApiCase

API_KEY, PIXEL_ID = "sk-svcacct-cases", "px_cases"
TIMEOUT = (2, 5)


@pytest.fixture(scope="module")
def api():
    with Emulator(api_key=API_KEY, pixel_id=PIXEL_ID, clock_ms=lambda: NOW_MS) as emulator:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        yield emulator, session
        session.close()


def send(api, events: list, validate_only: bool) -> requests.Response:
    emulator, session = api
    return session.post(emulator.url, params={"pid": PIXEL_ID}, timeout=TIMEOUT,
                        json={"validate_only": validate_only, "events": events})


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_emulator_follows_the_api_case_table(api, case: ApiCase):
    response = send(api, [case.event], validate_only=True)

    if case.accepted:
        assert (response.status_code, response.json()) == (
            200, {"events_received": 1, "validate_only": True})
    else:
        error = response.json()["error"]
        assert (response.status_code, error["index"], error["reason"]) == (400, 0, case.reason)
        assert error["message"].startswith(f"events[0]: {case.reason}: ")


def test_one_bad_case_fails_a_batch_of_good_ones(api):
    # All or nothing: every accepted case, then one bad one; nothing is recorded.
    emulator, _ = api
    good = [dict(case.event, id=f"good_{i}") for i, case in enumerate(CASES) if case.accepted]
    bad = next(case for case in CASES if case.name == "source_url_bare_host")

    refused = send(api, [*good, bad.event], validate_only=False)
    accepted = send(api, good, validate_only=False)

    assert refused.json()["error"]["index"] == len(good)
    assert accepted.status_code == 200
    assert len(emulator.recorded_events(PIXEL_ID)) == len(good)


def test_every_rule_of_the_emulator_is_exercised_by_a_case():
    # A rule of connectors.emulator.rules that no case breaks is a rule nobody checks.
    from connectors.emulator.rules import EVENT_RULES

    broken = {case.reason for case in CASES if not case.accepted}

    assert {rule.reason for rule in EVENT_RULES} | {"invalid_event"} == broken
