"""The CAPI emulator over real loopback HTTP (no mocking), through `requests`."""
from __future__ import annotations

import ast
import email.utils
import http.client
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from connectors.emulator import Emulator
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from transforms import reasons
from transforms.events import MAX_AGE_MS

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = (2, 5)


def make_event(event_id: str = "order_1", event_type: str = "order_created",
               timestamp_ms: int | None = None) -> dict:
    return {
        "id": event_id,
        "type": event_type,
        "timestamp_ms": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "action_source": "web",
        "source_url": "https://shop.example.com/checkout",
        "data": {"type": "contents", "amount": 2599, "currency": "USD",
                 "contents": [{"id": "sku_1", "quantity": 1}]},
    }


def make_custom_event(event_id: str, name: str, **fields) -> dict:
    return {"id": event_id, "type": "custom", "custom_event_name": name,
            "timestamp_ms": int(time.time() * 1000), "action_source": "offline",
            "data": {"type": "custom", **fields}}


def post(emulator: Emulator, body: object, *, key: str | None = EMULATOR_API_KEY,
         pid: str | None = EMULATOR_PIXEL_ID, session: requests.Session | None = None
         ) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    params = {"pid": pid} if pid is not None else {}
    return (session or requests).post(emulator.url, params=params, json=body, headers=headers,
                                      timeout=TIMEOUT)


def post_events(emulator: Emulator, events: list, **kwargs) -> requests.Response:
    return post(emulator, {"events": events}, **kwargs)


def error_message(response: requests.Response) -> str:
    return response.json()["error"]["message"]


# ----- accepted batches, dedup, validate_only ------------------------------------------------

def test_accepted_batch_is_recorded(emulator):
    events = [make_event("order_1"), make_event("order_2")]

    response = post(emulator, {"events": events, "integration_source": "capi-sync"})

    assert response.status_code == 200
    assert response.json() == {"events_received": 2, "validate_only": False}
    assert emulator.recorded_events() == events
    assert emulator.recorded_events(EMULATOR_PIXEL_ID) == events
    assert emulator.stats == {"requests": 1, "by_status": {200: 1}, "events_received": 2,
                              "events_validated": 0, "duplicates": 0, "dropped": 0,
                              "lost_responses": 0, "recorded": 2,
                              "max_concurrent_requests": 1}
    assert emulator.request_log == [(200, 2, False)]


def test_dedup_on_pixel_type_and_id():
    first = make_event("order_1")
    same_id_other_type = make_event("order_1", event_type="checkout_started")
    with Emulator(pixel_id=["px_a", "px_b"]) as emulator:
        assert post_events(emulator, [first], pid="px_a").status_code == 200
        assert post_events(emulator, [first, same_id_other_type], pid="px_a").status_code == 200
        assert post_events(emulator, [first], pid="px_b").status_code == 200

        assert emulator.recorded_events("px_a") == [first, same_id_other_type]
        assert emulator.recorded_events("px_b") == [first]
        assert len(emulator.recorded_events()) == 3
        assert emulator.stats["duplicates"] == 1
        assert emulator.stats["events_received"] == 4


def test_resent_event_keeps_the_first_accepted_version(emulator):
    original = make_event("order_1")
    changed = dict(original, source_url="https://shop.example.com/other")

    post_events(emulator, [original])
    post_events(emulator, [changed])

    assert emulator.recorded_events() == [original]


def test_custom_events_are_deduplicated_on_their_name_and_id(emulator):
    # The dedup key is (pixel, event name, id), the name being custom_event_name for custom
    # events; the API lower-cases the name, so a name differing only in case is the same key.
    promo, signup = make_custom_event("e1", "promo_click"), make_custom_event("e1", "signup")
    promo_again = make_custom_event("e1", "Promo_Click", note="resent")

    assert post_events(emulator, [promo, signup]).status_code == 200
    assert post_events(emulator, [promo_again]).status_code == 200

    assert emulator.recorded_events() == [promo, signup]
    assert (emulator.stats["recorded"], emulator.stats["duplicates"]) == (2, 1)


def test_first_event_of_a_key_wins_within_one_request(emulator):
    first = make_custom_event("e1", "promo", value="first")
    later = make_custom_event("e1", "promo", value="later")

    response = post_events(emulator, [first, later])

    assert response.json() == {"events_received": 2, "validate_only": False}
    assert emulator.recorded_events() == [first]
    assert emulator.stats["duplicates"] == 1


def test_fast_mode_keys_custom_events_by_name_too():
    with Emulator(fast=True) as emulator:
        post_events(emulator, [make_custom_event("e1", "promo"), make_custom_event("e1", "Signup"),
                               make_custom_event("e1", "PROMO"), make_event("e1")])

        assert emulator.recorded_events() == [
            {"type": "custom", "id": "e1", "custom_event_name": "promo"},
            {"type": "custom", "id": "e1", "custom_event_name": "signup"},
            {"type": "order_created", "id": "e1"}]
        assert emulator.stats["duplicates"] == 1


def test_validate_only_validates_but_records_nothing(emulator):
    response = post(emulator, {"validate_only": True, "events": [make_event()]})
    bad = post(emulator, {"validate_only": True, "events": [make_event(timestamp_ms=0)]})

    assert response.status_code == 200
    assert response.json() == {"events_received": 1, "validate_only": True}
    assert bad.status_code == 400
    assert emulator.recorded_events() == []
    assert emulator.stats["events_validated"] == 1
    assert emulator.request_log == [(200, 1, True), (400, 1, True)]


def test_clock_decides_the_timestamp_window():
    now_ms = 1_700_000_000_000
    with Emulator(clock_ms=lambda: now_ms) as emulator:
        fresh = post_events(emulator, [make_event("a", timestamp_ms=now_ms - MAX_AGE_MS)])
        stale = post_events(emulator, [make_event("b", timestamp_ms=now_ms - MAX_AGE_MS - 1)])

    assert fresh.status_code == 200
    assert stale.json()["error"]["reason"] == reasons.STALE_TIMESTAMP


# ----- auth and pid ----------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "message"), [
    (None, "Missing API key: send Authorization: Bearer <API key>"),
    ("sk-svcacct-wrong", "Invalid API key"),
    ("not-a-key", "Invalid API key"),
    ("sk-proj-advertiser", "Missing scopes: ads.third_party_events.write"),
    ("sk-svcacct-old", "API key revoked"),
])
def test_authentication_failures_are_401(key, message):
    with Emulator(api_key=EMULATOR_API_KEY, revoked_keys=["sk-svcacct-old"]) as emulator:
        response = post_events(emulator, [make_event()], key=key, pid="px_test")

        assert response.status_code == 401
        assert error_message(response) == message
        assert emulator.recorded_events() == []


@pytest.mark.parametrize(("pid", "message"), [
    (None, "Missing required parameter: pid"),
    ("px_other", "Unknown pixel id: px_other"),
])
def test_pixel_id_must_be_known(emulator, pid, message):
    response = post_events(emulator, [make_event()], pid=pid)

    assert (response.status_code, error_message(response)) == (400, message)


# ----- envelope --------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    (make_event(), "Missing required field: events"),
    ({"validate_only": True}, "Missing required field: events"),
    ({"events": make_event()}, "Field events must be an array"),
    ({"events": []}, "Field events must hold 1 to 1000 events"),
    ({"events": [make_event()], "validate_only": "yes"}, "Field validate_only must be a boolean"),
    ({"events": [make_event()], "integration_source": "-capi"},
     "Field integration_source must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    ({"events": [make_event()], "integration_source": "a" * 65},
     "Field integration_source must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    ([make_event()], "Request body must be a JSON object"),
])
def test_envelope_errors_are_400(emulator, body, message):
    response = post(emulator, body)

    assert (response.status_code, error_message(response)) == (400, message)
    assert emulator.recorded_events() == []


def test_integration_source_is_trimmed_before_its_pattern_is_checked(emulator):
    response = post(emulator, {"events": [make_event()], "integration_source": " capi-sync "})

    assert response.status_code == 200


def test_body_that_is_not_json_is_400(emulator):
    response = requests.post(emulator.url, params={"pid": EMULATOR_PIXEL_ID}, data=b"{nope",
                             headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"},
                             timeout=TIMEOUT)

    assert (response.status_code, error_message(response)) == (400, "Request body is not valid JSON")


def test_1000_events_accepted_1001_refused(emulator):
    events = [make_event(f"order_{i}") for i in range(1001)]

    too_many = post_events(emulator, events)
    exactly_max = post_events(emulator, events[:1000])

    assert (too_many.status_code, error_message(too_many)) == (400, "Too many events: 1001 (max 1000)")
    assert exactly_max.status_code == 200
    assert len(emulator.recorded_events()) == 1000


def test_body_over_the_size_limit_is_413():
    with Emulator(max_body_bytes=2000) as emulator:
        response = post_events(emulator, [make_event(f"order_{i}") for i in range(20)])
        follow_up = post_events(emulator, [make_event()])  # connection still usable

    assert response.status_code == 413
    assert follow_up.status_code == 200


# ----- per-event rules: all or nothing ---------------------------------------------------------

def test_first_bad_event_fails_the_whole_batch_with_its_index(emulator):
    events = [make_event(f"order_{i}") for i in range(5)]
    events[2]["timestamp_ms"] -= MAX_AGE_MS + 60_000
    events[3]["type"] = "purchase"

    response = post_events(emulator, events)

    assert response.status_code == 400
    assert response.json() == {"error": {
        "message": "events[2]: stale_timestamp: timestamp_ms is more than 7 days in the past",
        "index": 2, "reason": reasons.STALE_TIMESTAMP}}
    assert emulator.recorded_events() == []


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("id", "", reasons.MISSING_ID),
    ("source_url", None, reasons.MISSING_SOURCE_URL),
    ("action_source", "app", reasons.INVALID_ACTION_SOURCE),
    ("data", {"type": "contents", "amount": 19.99, "currency": "USD"}, reasons.INVALID_AMOUNT),
])
def test_each_event_rule_is_enforced(emulator, field, value, reason):
    event = make_event()
    if value is None:
        del event[field]
    else:
        event[field] = value

    response = post_events(emulator, [make_event("ok_1"), event])

    assert response.json()["error"]["index"] == 1
    assert response.json()["error"]["reason"] == reason


def test_rejected_event_ids_fail_the_batch_although_valid(emulator):
    emulator.reject_event_ids(["order_2"], message="Event blocked by policy")

    rejected = post_events(emulator, [make_event("order_1"), make_event("order_2")])
    accepted = post_events(emulator, [make_event("order_1"), make_event("order_3")])

    assert rejected.status_code == 400
    assert rejected.json() == {"error": {"message": "events[1]: rejected: Event blocked by policy",
                                         "index": 1, "reason": "rejected"}}
    assert accepted.status_code == 200
    assert [event["id"] for event in emulator.recorded_events()] == ["order_1", "order_3"]


def test_rejections_can_answer_422(emulator):
    emulator.reject_event_ids(["order_2"], message="Unprocessable", status=422)

    response = post_events(emulator, [make_event("order_1"), make_event("order_2")])

    assert (response.status_code, error_message(response)) == (
        422, "events[1]: rejected: Unprocessable")
    assert emulator.recorded_events() == []
    with pytest.raises(ValueError, match="rejection status must be one of"):
        emulator.reject_event_ids(["order_3"], status=500)


# ----- faults ----------------------------------------------------------------------------------

def test_429_carries_retry_after_and_records_nothing(emulator):
    emulator.inject("429", count=1)
    http_date = email.utils.formatdate(time.time() + 30, usegmt=True)

    first = post_events(emulator, [make_event()])
    emulator.inject("429", count=1, retry_after="7")
    second = post_events(emulator, [make_event()])
    emulator.inject("429", count=1, retry_after=http_date)
    third = post_events(emulator, [make_event()])
    after = post_events(emulator, [make_event()])

    assert [r.status_code for r in (first, second, third, after)] == [429, 429, 429, 200]
    assert [first.headers["Retry-After"], second.headers["Retry-After"],
            third.headers["Retry-After"]] == ["0", "7", http_date]
    assert emulator.stats["events_received"] == 1


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_5xx_for_the_next_count_requests(emulator, status):
    emulator.inject(status, count=2)

    statuses = [post_events(emulator, [make_event()]).status_code for _ in range(3)]

    assert statuses == [int(status), int(status), 200]
    assert emulator.stats["by_status"] == {int(status): 2, 200: 1}


def test_5xx_with_retry_after(emulator):
    emulator.inject("503", retry_after=2)

    response = post_events(emulator, [make_event()])

    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")


def test_drop_closes_the_connection_without_answer(emulator):
    emulator.inject("drop")

    with pytest.raises(requests.ConnectionError):
        post_events(emulator, [make_event()])

    assert emulator.recorded_events() == []
    assert emulator.request_log == [(0, 0, False)]
    assert post_events(emulator, [make_event()]).status_code == 200


def test_lost_response_records_the_batch_then_drops_the_connection(emulator):
    emulator.inject("lost_response")
    event = make_event()

    with pytest.raises(requests.ConnectionError):
        post_events(emulator, [event])
    retried = post_events(emulator, [event])

    assert retried.status_code == 200
    assert emulator.recorded_events() == [event]
    assert emulator.stats["lost_responses"] == 1
    assert emulator.stats["duplicates"] == 1


def test_faults_on_a_keep_alive_session(emulator):
    session = requests.Session()

    assert post_events(emulator, [make_event("a")], session=session).status_code == 200
    emulator.inject("drop")
    with pytest.raises(requests.ConnectionError):
        post_events(emulator, [make_event("b")], session=session)
    assert post_events(emulator, [make_event("c")], session=session).status_code == 200


def test_rate_faults_are_reproducible_with_a_seed():
    def statuses() -> list[int]:
        with Emulator() as emulator:
            emulator.inject("503", rate=0.5, seed=7)
            session = requests.Session()
            return [post_events(emulator, [make_event()], session=session).status_code
                    for _ in range(12)]

    first, second = statuses(), statuses()

    assert first == second
    assert set(first) == {200, 503}


def test_latency(emulator):
    emulator.set_latency(0.15)
    started = time.monotonic()
    post_events(emulator, [make_event()])
    constant = time.monotonic() - started

    emulator.set_latency(0.0)
    emulator.inject("latency", latency_s=0.15)
    started = time.monotonic()
    post_events(emulator, [make_event()])
    injected = time.monotonic() - started

    assert constant >= 0.15 and injected >= 0.15


def test_unknown_fault_kind_is_refused(emulator):
    with pytest.raises(ValueError, match="unknown fault kind '418'"):
        emulator.inject("418")


def test_reset_forgets_events_faults_and_counters(emulator):
    post_events(emulator, [make_event()])
    emulator.inject("503", rate=1.0)
    emulator.reject_event_ids(["order_9"])

    emulator.reset()

    assert emulator.recorded_events() == []
    assert emulator.stats["requests"] == 0
    assert post_events(emulator, [make_event("order_9")]).status_code == 200


# ----- fast mode -------------------------------------------------------------------------------

def test_fast_mode_records_keys_only_and_skips_event_rules():
    with Emulator(fast=True) as emulator:
        response = post_events(emulator, [{"id": "a", "type": "order_created"},
                                          {"id": "a", "type": "order_created"},
                                          {"id": "b", "type": "no_such_type"}])
        unauthorized = post_events(emulator, [make_event()], key="sk-svcacct-wrong")

        assert response.status_code == 200
        assert emulator.recorded_events() == [{"type": "order_created", "id": "a"},
                                              {"type": "no_such_type", "id": "b"}]
        assert emulator.stats["duplicates"] == 1
        assert unauthorized.status_code == 401


@pytest.mark.parametrize(("body", "message"), [
    ({"events": [{"id": "a"}, 7]},
     "Request body does not fit the envelope: Expected `object`, got `int` - at `$.events[1]`"),
    ({"events": [{"id": ["a"]}]},
     "Request body does not fit the envelope: Expected `str | null`, got `array` - at "
     "`$.events[0].id`"),
    ([{"id": "a"}], "Request body does not fit the envelope: Expected `object`, got `array`"),
    ({"event": [{"id": "a"}]}, "Missing required field: events"),
    ({"events": []}, "Field events must hold 1 to 1000 events"),
    ({"events": [{"id": "a"}], "validate_only": "yes"}, "Field validate_only must be a boolean"),
    ({"events": [{"id": "a"}], "integration_source": "bad source"},
     "Field integration_source must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
])
def test_fast_mode_still_answers_the_envelope_rules(body, message):
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID, fast=True) as emulator:
        response = post(emulator, body)
        assert (response.status_code, error_message(response)) == (400, message)
        assert emulator.recorded_events() == []


def test_fast_mode_reads_only_keys_but_honours_rejections_and_validate_only():
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID, fast=True) as emulator:
        emulator.reject_event_ids(["bad"])
        refused = post_events(emulator, [make_event("ok_1"), make_event("bad")])
        checked = post(emulator, {"events": [make_event("ok_2")], "validate_only": True})
        accepted = post_events(emulator, [make_event("ok_1"), {"id": "ok_3", "extra": {"x": [1]}}])

        assert (refused.status_code, refused.json()["error"]["index"]) == (400, 1)
        assert checked.json() == {"events_received": 1, "validate_only": True}
        assert accepted.json() == {"events_received": 2, "validate_only": False}
        assert emulator.recorded_events() == [{"type": "order_created", "id": "ok_1"},
                                              {"type": None, "id": "ok_3"}]


# ----- HTTP behaviour and thread safety --------------------------------------------------------

def test_keep_alive_serves_several_requests_on_one_connection(emulator):
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    headers = {"Authorization": f"Bearer {EMULATOR_API_KEY}", "Content-Type": "application/json"}
    body = b'{"events": [{"id": "x"}]}'
    statuses = []
    for _ in range(3):
        connection.request("POST", f"/v1/events?pid={EMULATOR_PIXEL_ID}", body=body,
                           headers=headers)
        response = connection.getresponse()
        assert response.getheader("Content-Length") == str(len(response.read()))
        statuses.append(response.status)
    connection.close()

    assert statuses == [400, 400, 400]
    assert emulator.stats["requests"] == 3


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/events", 405),
    ("POST", "/v2/events", 404),
    ("GET", "/_emulator/nothing", 404),
])
def test_unknown_routes(emulator, method, path, status):
    response = requests.request(method, emulator.base_url + path, timeout=TIMEOUT)

    assert response.status_code == status


def test_concurrent_requests_are_all_counted(emulator):
    def send(worker: int) -> None:
        session = requests.Session()
        for i in range(10):
            post_events(emulator, [make_event(f"w{worker}_{i}")], session=session)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(emulator.recorded_events()) == 60
    assert emulator.stats["requests"] == 60
    assert len(emulator.request_log) == 60


def test_stats_and_request_log_are_copies(emulator):
    post_events(emulator, [make_event()])

    emulator.stats["by_status"][200] = 99
    emulator.request_log.clear()

    assert emulator.stats["by_status"] == {200: 1}
    assert emulator.request_log == [(200, 1, False)]


def test_repr_never_shows_the_key(emulator):
    assert EMULATOR_API_KEY not in repr(emulator)
    assert emulator.url == f"http://127.0.0.1:{emulator.port}/v1/events"


# ----- admin endpoints -------------------------------------------------------------------------

def test_admin_endpoints(emulator):
    admin = emulator.base_url + "/_emulator/"
    event = make_event()
    post_events(emulator, [event])

    events = requests.get(admin + "events", timeout=TIMEOUT).json()
    by_pixel = requests.get(admin + "events", params={"pid": "px_none"}, timeout=TIMEOUT).json()
    stats = requests.get(admin + "stats", timeout=TIMEOUT).json()
    log = requests.get(admin + "requests", timeout=TIMEOUT).json()
    fault = requests.post(admin + "faults", json={"kind": "503", "count": 1}, timeout=TIMEOUT)
    faulted = post_events(emulator, [event])
    reject = requests.post(admin + "reject", json={"ids": ["order_1"], "message": "no"},
                           timeout=TIMEOUT)
    rejected = post_events(emulator, [event])
    bad_fault = requests.post(admin + "faults", json={"kind": "boom"}, timeout=TIMEOUT)
    reject_422 = requests.post(admin + "reject", json={"ids": ["order_1"], "status": 422},
                               timeout=TIMEOUT)
    rejected_422 = post_events(emulator, [event])
    reset = requests.post(admin + "reset", timeout=TIMEOUT)

    assert events == [event]
    assert by_pixel == []
    assert stats["by_status"] == {"200": 1} and stats["recorded"] == 1
    assert log == [[200, 1, False]]
    assert fault.status_code == 200 and faulted.status_code == 503
    assert reject.status_code == 200 and error_message(rejected) == "events[0]: rejected: no"
    assert bad_fault.status_code == 400
    assert reject_422.status_code == 200 and rejected_422.status_code == 422
    assert reset.status_code == 200 and emulator.recorded_events() == []


# ----- independence from the validator it checks ------------------------------------------

EMULATOR_PACKAGE = REPO_ROOT / "connectors" / "emulator"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(p.name for p in EMULATOR_PACKAGE.glob("*.py")))
def test_no_emulator_module_imports_transforms(module):
    imported = imported_modules(EMULATOR_PACKAGE / module)

    assert imported  # the parse found the imports
    assert [name for name in imported if name.split(".")[0] == "transforms"] == []


def test_importing_the_emulator_loads_nothing_from_transforms():
    code = ("import sys, connectors.emulator; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transforms'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60, check=True)

    assert result.stdout.strip() == "[]"


# ----- command line ----------------------------------------------------------------------------

def test_command_line_serves_on_a_free_port():
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.emulator", "--port", "0", "--api-key",
         "sk-svcacct-cli", "--pixel-id", "px_1", "--pixel-id", "px_2", "--fast"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith("/v1/events")
        url = line.removeprefix("listening on ")

        response = requests.post(url, params={"pid": "px_2"}, json={"events": [make_event()]},
                                 headers={"Authorization": "Bearer sk-svcacct-cli"},
                                 timeout=TIMEOUT)

        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_a_client_that_hangs_up_before_the_answer_prints_nothing_on_stderr(capfd):
    """A client gone mid-request (a deadline cut, a reset) left socketserver's traceback on
    stderr, inside whatever test ran next; the emulator logs it at debug level instead."""
    import socket
    import struct
    import time

    with Emulator(api_key="sk-svcacct-test", pixel_id="px_test") as api:
        api.inject("latency", count=5, latency_s=0.3)
        body = b'{"events": []}'
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", api.port), timeout=5) as client:
                client.sendall(b"POST /v1/events?pid=px_test HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.8)        # the answers are written to closed connections
    assert "Traceback" not in capfd.readouterr().err
