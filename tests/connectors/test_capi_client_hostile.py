"""CapiClient against hostile servers on loopback (tests/connectors/hostile.py): answers the
emulator never gives — a wrong endpoint mid-run, HTML with 200, absurd Retry-After values, a
body trickled a byte at a time, a proxy in the environment. Every call that could hang runs
under `finishes_within`, so a regression fails instead of hanging CI.
"""
from __future__ import annotations

import logging
import threading
import time

import pytest

from connectors.backoff import AdaptiveLimiter, parse_retry_after
from connectors.capi_client import (
    DELIVERY_POLICY,
    Action,
    AuthenticationError,
    CapiClient,
    RetryPolicy,
    WrongEndpointError,
    delivery_action,
)
from tests.connectors.hostile import HostileServer, answer, trickle
from transforms import reasons

KEY = "sk-svcacct-hostile-SECRET-0123456789"
PIXEL = "px_test"
FAST = RetryPolicy(max_attempts=4, max_elapsed_s=5.0, initial_backoff_s=0.01, max_backoff_s=0.02)


def make_event(n: int) -> dict:
    return {"id": f"evt-{n}", "type": "order_created", "timestamp_ms": time.time_ns() // 1_000_000,
            "action_source": "web", "source_url": "https://shop.example/checkout",
            "data": {"type": "contents", "amount": 1999, "currency": "USD"}}


def make_events(count: int, start: int = 0) -> list[dict]:
    return [make_event(n) for n in range(start, start + count)]


def finishes_within(seconds: float, function, *args):
    """function(*args) on a daemon thread; fails the test if it is still running after
    `seconds` (the thread is abandoned), re-raises what it raised, else returns its value."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} still running after {seconds}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# -- the policy table -------------------------------------------------------------------------

@pytest.mark.parametrize("status, action", [
    (200, Action.ACCEPT), (202, Action.ACCEPT), (204, Action.ACCEPT), (299, Action.ACCEPT),
    (301, Action.STOP_ENDPOINT), (302, Action.STOP_ENDPOINT), (307, Action.STOP_ENDPOINT),
    (308, Action.STOP_ENDPOINT), (404, Action.STOP_ENDPOINT), (405, Action.STOP_ENDPOINT),
    (400, Action.SPLIT), (413, Action.SPLIT), (422, Action.SPLIT),
    (401, Action.STOP_AUTH), (403, Action.STOP_AUTH),
    (408, Action.RETRY), (429, Action.RETRY), (500, Action.RETRY), (502, Action.RETRY),
    (503, Action.RETRY), (599, Action.RETRY), (None, Action.RETRY),
    (402, Action.REJECT), (409, Action.REJECT), (410, Action.REJECT), (451, Action.REJECT),
    (100, Action.REJECT), (600, Action.REJECT),
])
def test_delivery_policy(status, action):
    assert delivery_action(status) is action


def test_policy_rows_do_not_overlap():
    # First match wins; overlapping rows would make the table's order a hidden rule.
    seen: dict[int, Action] = {}
    for statuses, action in DELIVERY_POLICY:
        for status in statuses:
            assert status not in seen, f"{status} is in two rows"
            seen[status] = action


# -- point 4: an answer that says the endpoint is wrong stops delivery -------------------------

@pytest.mark.parametrize("wrong, said", [
    (answer(301, b"", headers={"Location": "https://elsewhere.example/v1/events"}),
     "Wrong endpoint (HTTP 301 from http://127.0.0.1:"),
    (answer(302, b"<html>moved</html>", headers={"Location": "/login"}, content_type="text/html"),
     "it redirects to /login"),
    (answer(404, b'{"error":{"message":"no such route"}}'), "there is no events API at this URL"),
    (answer(405, b"Method Not Allowed", content_type="text/plain"), "does not take POST"),
])
def test_a_wrong_endpoint_mid_run_stops_delivery_and_rejects_nothing(wrong, said):
    with HostileServer(answer(200), wrong) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=FAST)
        first = client.deliver(make_events(3))
        with pytest.raises(WrongEndpointError) as raised:
            client.deliver(make_events(3, start=3))
        with pytest.raises(WrongEndpointError):     # latched: nothing more is sent
            client.deliver(make_events(3, start=6))

        assert [o.accepted for o in first] == [True] * 3
        assert said in str(raised.value)
        assert "No event was rejected" in str(raised.value)
        assert not isinstance(raised.value, AuthenticationError)
        assert len(server.received) == 2


def test_a_wrong_endpoint_at_preflight_is_the_same_error():
    with HostileServer(answer(404, b"not found", content_type="text/plain")) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=FAST)
        with pytest.raises(WrongEndpointError, match=r"Wrong endpoint \(HTTP 404"):
            client.preflight()
        assert len(server.received) == 1


def test_a_certificate_this_machine_does_not_trust_stops_delivery_at_once(tls, monkeypatch):
    # A TLS-inspecting proxy, or a host that is not the API. Before: retried as a
    # connection_error until the budget ran out, then retries_exhausted dead letters.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    context, _ = tls
    with HostileServer(answer(200), tls=context) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=FAST)
        with pytest.raises(WrongEndpointError) as raised:
            finishes_within(10, client.deliver, make_events(3))
        with pytest.raises(WrongEndpointError):     # latched: nothing more is tried
            client.deliver(make_events(3, start=3))
        with pytest.raises(WrongEndpointError, match=r"Wrong endpoint \(TLS certificate"):
            client.preflight()
        received = len(server.received)
    assert str(raised.value) == (
        f"Wrong endpoint (TLS certificate of {server.url} not verified: self-signed "
        "certificate): this is not a certificate this machine trusts for the API. Behind a "
        "proxy that inspects TLS, give its CA bundle in REQUESTS_CA_BUNDLE=/path/to/ca.pem; "
        "else check --endpoint (default https://bzr.openai.com/v1/events). No event was "
        "rejected. No further requests are sent.")
    assert client.stats["requests"] == 1 and client.stats["retries"] == 0
    assert received == 0          # no request got past the handshake


def test_the_same_certificate_in_requests_ca_bundle_is_trusted(tls, monkeypatch):
    context, ca_file = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    with HostileServer(answer(200), tls=context) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=FAST)
        assert [o.accepted for o in client.deliver(make_events(2))] == [True, True]


# -- point 5: a 2xx whose body is not JSON is counted and warned about --------------------------

HTML = b"<html><body>Welcome to Airport WiFi. Please log in.</body></html>"


@pytest.mark.parametrize("body, content_type, suspicious", [
    (HTML, "text/html", 1),
    (b'{"events_received": 3, "ok": tr', "application/json", 1),   # truncated
    (b"OK", "text/plain", 1),
    (b"{}", "application/json", 0),
    (b'{"anything": [1, 2]}', "application/json", 0),
    (b"", "application/json", 0),                                   # e.g. 204-like: nothing to doubt
])
def test_a_2xx_body_that_is_not_json_is_counted_and_warned(body, content_type, suspicious, caplog):
    caplog.set_level(logging.WARNING, logger="connectors.capi_client")
    with HostileServer(answer(200, body, content_type=content_type)) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=FAST)
        result = client.deliver_batch(make_events(4))
        client.deliver_batch(make_events(4, start=4))

    assert [o.accepted for o in result.outcomes] == [True] * 4      # the success body is not read
    assert result.suspicious_2xx_bodies == suspicious
    assert client.stats.get("suspicious_2xx_bodies", 0) == 2 * suspicious
    warnings = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
    assert len(warnings) == suspicious                              # the first one, not each
    if suspicious:
        assert content_type in warnings[0] and "captive portal" in warnings[0]


# -- point 6: Retry-After values no wait may honour ---------------------------------------------

@pytest.mark.parametrize("header, expected", [
    ("100000", 100000.0), ("inf", float("inf")), ("1e400", float("inf")),
    ("Infinity", float("inf")), ("-inf", 0.0), ("nan", None), ("soon", None), ("", None),
    ("0x10", None),
])
def test_parse_retry_after_extremes(header, expected):
    assert parse_retry_after(header, now_s=1_000_000) == expected


@pytest.mark.parametrize("retry_after", ["100000", "inf", "1e400", "Infinity"])
def test_a_retry_after_past_the_budget_ends_the_request_at_once_and_holds_no_one(retry_after):
    budget = RetryPolicy(max_attempts=5, max_elapsed_s=1.5, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    with HostileServer(answer(429, b'{"error":"slow down"}', headers={"Retry-After": retry_after}),
                       answer(200)) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=budget)
        started = time.monotonic()
        first = finishes_within(10, client.deliver, make_events(3))
        assert time.monotonic() - started < 1.0          # at once, not after the budget

        # The shared "not before" instant is capped at half a budget: the next request waits
        # that long, then goes out with the other half and is accepted.
        second = finishes_within(10, client.deliver, make_events(3, start=3))

    assert [o.reason for o in first] == [reasons.RETRIES_EXHAUSTED] * 3
    assert "Retry-After" in first[0].detail and "past the budget left" in first[0].detail
    assert [o.accepted for o in second] == [True] * 3
    assert len(server.received) == 2


def test_limiter_caps_the_hold_and_refuses_a_wait_past_the_deadline():
    limiter = AdaptiveLimiter(2, max_hold_s=0.3)
    assert limiter.acquire()
    limiter.release(429, float("inf"))
    assert 0.2 < limiter.not_before_s <= 0.3

    started = time.monotonic()
    assert limiter.acquire(deadline=time.monotonic() + 0.1) is False     # would wait past it
    assert time.monotonic() - started < 0.05                            # and says so at once
    assert finishes_within(5, limiter.acquire, time.monotonic() + 5) is True


def test_concurrent_requests_under_an_infinite_retry_after_each_end_in_one_bucket():
    budget = RetryPolicy(max_attempts=3, max_elapsed_s=1.0, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    with HostileServer(answer(429, b"{}", headers={"Retry-After": "1e400"}), answer(200)) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=budget, max_in_flight=4)
        batches = [make_events(50, start=50 * b) for b in range(8)]
        results: list = [None] * len(batches)

        def send(index):
            results[index] = client.deliver(batches[index])

        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads), "a delivery thread hangs"

    outcomes = [o for batch in results for o in batch]
    assert len(outcomes) == 400
    buckets = {o.event["id"]: (o.accepted, o.reason) for o in outcomes}
    assert len(buckets) == 400                               # each event once
    assert set(buckets.values()) <= {(True, None), (False, reasons.RETRIES_EXHAUSTED)}


# -- point 7: each attempt has a total deadline ------------------------------------------------

def test_a_body_trickled_byte_by_byte_cannot_hold_a_request_past_its_budget():
    budget = RetryPolicy(max_attempts=3, max_elapsed_s=1.5, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    with HostileServer(trickle(every_s=0.2, length=1000)) as server:   # 200 s to finish
        client = CapiClient(server.url, PIXEL, KEY, retry=budget, read_timeout_s=5.0)
        started = time.monotonic()
        outcomes = finishes_within(10, client.deliver, make_events(2))
        elapsed = time.monotonic() - started

    assert elapsed < 2.5
    assert [o.reason for o in outcomes] == [reasons.RETRIES_EXHAUSTED] * 2
    assert "deadline" in outcomes[0].detail
    assert client.stats["status_timeout"] >= 1


def test_each_attempt_ends_by_connect_plus_read_timeout_even_with_budget_left():
    budget = RetryPolicy(max_attempts=2, max_elapsed_s=30.0, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    with HostileServer(trickle(every_s=0.1, length=1000), answer(200)) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=budget, connect_timeout_s=0.2,
                            read_timeout_s=0.5)
        outcomes = finishes_within(10, client.deliver, make_events(2))
        arrivals = server.received_at

    assert [o.accepted for o in outcomes] == [True, True]   # the retry got the 200
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] < 1.2                   # first attempt cut at 0.7 s


# -- point 12: no plain-HTTP request goes through a proxy --------------------------------------

def test_http_proxy_in_the_environment_never_sees_a_plain_http_request(monkeypatch):
    with HostileServer(answer(200)) as target, HostileServer(answer(200)) as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        monkeypatch.setenv("http_proxy", proxy.origin)
        monkeypatch.setenv("ALL_PROXY", proxy.origin)
        client = CapiClient(target.url, PIXEL, KEY, retry=FAST)
        outcomes = client.deliver(make_events(2))

        assert [o.accepted for o in outcomes] == [True, True]
        assert proxy.received == []
        assert [r.path for r in target.received] == [f"/v1/events?pid={PIXEL}"]
