"""CapiClient against the local emulator over real loopback HTTP (no request mocking)."""
from __future__ import annotations

import email.utils
import http.server
import json
import logging
import math
import pickle
import socket
import threading
import time

import pytest

from connectors.backoff import AdaptiveLimiter
from connectors.capi_client import (
    AuthenticationError,
    CapiClient,
    InsecureEndpointError,
    RetryPolicy,
    default_user_agent,
    parse_retry_after,
)
from connectors.emulator import Emulator
from connectors.endpoint import parse_endpoint
from transforms import reasons
from transforms.errors import CapiSyncError, ConfigError
from transforms.events import MAX_AGE_MS

KEY = "sk-svcacct-test-SECRET-0123456789"
PIXEL = "px_test"
FAST_RETRY = RetryPolicy(max_attempts=5, max_elapsed_s=10.0, initial_backoff_s=0.01,
                         max_backoff_s=0.05)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_event(n: int, **overrides) -> dict:
    event = {"id": f"evt-{n}", "type": "order_created", "timestamp_ms": now_ms(),
             "action_source": "web", "source_url": "https://shop.example/checkout",
             "data": {"type": "contents", "amount": 1999, "currency": "USD"}}
    event.update(overrides)
    return event


def make_events(count: int) -> list[dict]:
    return [make_event(n) for n in range(count)]


def make_client(emulator: Emulator, api_key: str = KEY, **options) -> CapiClient:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("read_timeout_s", 5.0)
    return CapiClient(emulator.url, PIXEL, api_key, **options)


def recorded_ids(emulator: Emulator) -> list[str]:
    return [event["id"] for event in emulator.recorded_events(PIXEL)]


@pytest.fixture
def emulator():
    with Emulator(api_key=KEY, pixel_id=PIXEL, revoked_keys=["sk-svcacct-old-SECRET"]) as emu:
        yield emu


@pytest.fixture
def client(emulator):
    client = make_client(emulator)
    yield client
    client.close()


# -- the happy path ------------------------------------------------------------------------

def test_delivers_a_batch_in_one_request(emulator, client):
    events = make_events(3)

    outcomes = client.deliver(events)

    assert [(o.event["id"], o.accepted, o.reason) for o in outcomes] == [
        ("evt-0", True, None), ("evt-1", True, None), ("evt-2", True, None)]
    assert emulator.recorded_events(PIXEL) == events
    assert emulator.request_log == [(200, 3, False)]
    assert client.stats["requests"] == 1
    assert client.stats["retries"] == 0
    assert client.stats["status_200"] == 1


def test_deliver_batch_reports_what_the_call_cost(client):
    result = client.deliver_batch(make_events(2))

    assert (result.accepted_count, result.requests, result.retries, result.statuses) == (
        2, 1, 0, {"200": 1})


def test_non_ascii_values_arrive_unchanged(emulator, client):
    event = make_event(1, source_url="https://shop.example/straße/café?q=日本")

    assert client.deliver([event])[0].accepted
    assert emulator.recorded_events(PIXEL) == [event]


def test_validate_only_sends_but_records_nothing(emulator):
    client = make_client(emulator, validate_only=True)

    outcomes = client.deliver(make_events(2))

    assert [o.accepted for o in outcomes] == [True, True]
    assert emulator.request_log == [(200, 2, True)]
    assert emulator.recorded_events() == []


def test_pixel_override_per_call():
    with Emulator(api_key=KEY, pixel_id=["px_a", "px_b"]) as emu:
        client = CapiClient(emu.url, "px_a", KEY, retry=FAST_RETRY)
        client.deliver([make_event(1)], pixel_id="px_b")
        assert [e["id"] for e in emu.recorded_events("px_b")] == ["evt-1"]
        assert emu.recorded_events("px_a") == []


def test_user_agent_names_project_and_version():
    assert default_user_agent().startswith("capi-sync/0.1.0 ")


def test_event_that_is_not_json_is_a_mapping_error_and_the_rest_is_sent(emulator, client):
    events = [make_event(1), make_event(2, oppref=float("nan")), make_event(3, user=object())]

    outcomes = client.deliver(events)

    assert [(o.accepted, o.reason) for o in outcomes] == [
        (True, None), (False, reasons.MAPPING_ERROR), (False, reasons.MAPPING_ERROR)]
    assert recorded_ids(emulator) == ["evt-1"]


# -- transient failures --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504", "drop", "lost_response"])
def test_transient_faults_are_retried_without_loss_or_duplicates(emulator, client, kind):
    events = make_events(5)
    emulator.inject(kind, count=2)

    outcomes = client.deliver(events)

    assert all(o.accepted for o in outcomes)
    ids = recorded_ids(emulator)
    assert sorted(ids) == sorted(e["id"] for e in events)
    assert len(ids) == len(set(ids))
    assert client.stats["requests"] == 3
    assert client.stats["retries"] == 2
    expected_label = "connection_error" if kind in ("drop", "lost_response") else kind
    assert client.stats[f"status_{expected_label}"] == 2
    if kind == "lost_response":   # recorded twice upstream, once in the deduped view
        assert emulator.stats["duplicates"] == 10


def test_read_timeout_is_retried_and_the_late_batch_dedups(emulator):
    client = make_client(emulator, read_timeout_s=0.2)
    emulator.inject("latency", count=1, latency_s=0.5)
    events = make_events(4)

    outcomes = client.deliver(events)

    assert all(o.accepted for o in outcomes)
    assert client.stats["status_timeout"] == 1
    time.sleep(0.4)   # let the slow first request finish recording
    assert sorted(recorded_ids(emulator)) == sorted(e["id"] for e in events)


def test_retry_after_seconds_is_honoured(emulator, client):
    emulator.inject("429", count=1, retry_after="1")

    started = time.monotonic()
    outcomes = client.deliver(make_events(1))
    elapsed = time.monotonic() - started

    assert outcomes[0].accepted
    assert elapsed >= 1.0
    assert client.stats["status_429"] == 1


def test_budget_of_attempts_ends_in_retries_exhausted_outcomes(emulator):
    client = make_client(emulator, retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01,
                                                     max_backoff_s=0.02))
    emulator.inject("503", count=10)

    outcomes = client.deliver(make_events(3))

    assert [(o.accepted, o.reason) for o in outcomes] == [
        (False, reasons.RETRIES_EXHAUSTED)] * 3
    assert "3 attempts" in outcomes[0].detail and "503" in outcomes[0].detail
    assert emulator.stats["requests"] == 3
    assert client.stats["retries"] == 2
    assert emulator.recorded_events() == []


def test_retry_after_beyond_the_time_budget_gives_up_at_once(emulator):
    client = make_client(emulator, retry=RetryPolicy(max_elapsed_s=1.0, initial_backoff_s=0.01))
    emulator.inject("429", count=1, retry_after="30")

    started = time.monotonic()
    outcomes = client.deliver(make_events(2))

    assert time.monotonic() - started < 1.0
    assert [o.reason for o in outcomes] == [reasons.RETRIES_EXHAUSTED] * 2
    assert emulator.stats["requests"] == 1


def test_unreachable_endpoint_ends_in_retries_exhausted():
    with socket.socket() as sock:   # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CapiClient(f"http://127.0.0.1:{port}/v1/events", PIXEL, KEY,
                        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01))

    outcomes = client.deliver(make_events(1))

    assert outcomes[0].reason == reasons.RETRIES_EXHAUSTED
    assert client.stats["status_connection_error"] == 2


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("0", 0.0), ("1", 1.0), ("2.5", 2.5), ("-3", 0.0), ("soon", None),
    (email.utils.formatdate(1_000_030, usegmt=True), 30.0),
    (email.utils.formatdate(999_000, usegmt=True), 0.0),
])
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header, now_s=1_000_000) == expected


def test_concurrent_deliveries_under_429s_lose_nothing(emulator):
    client = make_client(emulator, max_in_flight=4,
                         retry=RetryPolicy(max_attempts=20, initial_backoff_s=0.005,
                                           max_backoff_s=0.02))
    emulator.inject("429", rate=0.3, seed=7)
    batches = [[make_event(b * 100 + n) for n in range(20)] for b in range(8)]
    results = [None] * len(batches)

    def send(index):
        results[index] = client.deliver(batches[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(o.accepted for outcomes in results for o in outcomes)
    assert sorted(recorded_ids(emulator)) == sorted(e["id"] for b in batches for e in b)
    stats = client.stats
    assert stats["status_429"] >= 1
    assert stats["retries"] == stats["status_429"]
    assert stats["requests"] == len(batches) + stats["retries"]
    assert 1 <= stats["concurrency_limit"] <= 4


def test_limiter_halves_on_429_and_grows_back_on_success():
    limiter = AdaptiveLimiter(8)
    for _ in range(2):
        limiter.acquire()
        limiter.release(429, None)
    assert limiter.limit == 2
    for _ in range(6):
        limiter.acquire()
        limiter.release(200, None)
    assert limiter.limit == 4


def test_limiter_holds_every_thread_back_for_retry_after():
    limiter = AdaptiveLimiter(4)
    limiter.acquire()
    limiter.release(429, 0.3)

    started = time.monotonic()
    limiter.acquire()

    assert time.monotonic() - started >= 0.29


# -- 400 and 413: split ----------------------------------------------------------------------

@pytest.mark.parametrize("poison_count", [1, 4])
def test_poison_events_are_isolated_within_the_request_bound(emulator, client, poison_count):
    events = make_events(1000)
    poison = {f"evt-{n}" for n in (7, 500, 501, 998)[:poison_count]}
    emulator.reject_event_ids(poison, message="blocked by policy")

    outcomes = client.deliver(events)

    rejected = {o.event["id"]: o for o in outcomes if not o.accepted}
    assert set(rejected) == poison
    assert {o.reason for o in rejected.values()} == {reasons.REJECTED_BY_API}
    assert all(o.detail == "events[0]: rejected: blocked by policy" for o in rejected.values())
    assert sorted(recorded_ids(emulator)) == sorted(e["id"] for e in events
                                                    if e["id"] not in poison)
    extra_requests = emulator.stats["requests"] - 1
    assert extra_requests <= 2 * poison_count * math.ceil(math.log2(1000))


def test_a_result_counts_what_was_not_accepted(emulator, client):
    events = make_events(10)
    emulator.reject_event_ids({"evt-3", "evt-8"}, message="blocked by policy")

    mixed = client.deliver_batch(events)
    clean = client.deliver_batch([make_event(n) for n in range(20, 25)])

    assert [o.accepted for o in mixed.outcomes] == [n not in (3, 8) for n in range(10)]
    assert (mixed.rejected, mixed.accepted_count, mixed.all_accepted) == (2, 8, False)
    assert (clean.rejected, clean.accepted_count, clean.all_accepted) == (0, 5, True)
    assert [o.event["id"] for o in clean.outcomes] == [f"evt-{n}" for n in range(20, 25)]


@pytest.mark.parametrize("status", [400, 422])
def test_422_is_split_like_400(emulator, client, status):
    events = make_events(8)
    emulator.reject_event_ids({"evt-5"}, message="unprocessable", status=status)

    outcomes = client.deliver(events)

    assert [(o.event["id"], o.reason) for o in outcomes if not o.accepted] == [
        ("evt-5", reasons.REJECTED_BY_API)]
    assert sorted(recorded_ids(emulator)) == sorted(f"evt-{n}" for n in range(8) if n != 5)
    assert emulator.stats["by_status"][status] >= 2   # the batch, then the half holding evt-5


def test_event_the_api_finds_invalid_carries_the_api_message(emulator, client):
    events = [make_event(1), make_event(2, data={"type": "contents", "amount": 5})]

    outcomes = client.deliver(events)

    assert outcomes[0].accepted
    assert (outcomes[1].reason, outcomes[1].detail) == (
        reasons.REJECTED_BY_API,
        "events[0]: missing_currency: data.currency is required when data.amount is set")


class _Unprocessable422Handler(http.server.BaseHTTPRequestHandler):
    """Answers 422 to a request carrying an event whose id starts with 'bad', else 200; keeps
    the ids of every request it recorded (a 422 records nothing, like a 400)."""

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = [event["id"] for event in body["events"]]
        bad = [index for index, event_id in enumerate(ids) if event_id.startswith("bad")]
        if bad:
            status, answer = 422, {"error": {"message": f"events[{bad[0]}]: unprocessable"}}
        else:
            status, answer = 200, {}
            self.server.recorded.extend(ids)
        self.server.statuses.append(status)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):  # noqa: A002 - base signature
        pass


@pytest.fixture
def unprocessable_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unprocessable422Handler)
    server.timeout = 5
    server.recorded, server.statuses = [], []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_422_is_treated_like_400_split_until_the_bad_event_is_alone(unprocessable_server):
    endpoint = f"http://127.0.0.1:{unprocessable_server.server_address[1]}/v1/events"
    client = CapiClient(endpoint, PIXEL, KEY, retry=FAST_RETRY, read_timeout_s=5.0)
    events = make_events(8)
    events[5]["id"] = "bad-5"
    try:
        outcomes = client.deliver(events)
    finally:
        client.close()

    assert [(o.event["id"], o.accepted, o.reason) for o in outcomes if not o.accepted] == [
        ("bad-5", False, reasons.REJECTED_BY_API)]
    assert [o.detail for o in outcomes if not o.accepted] == ["events[0]: unprocessable"]
    assert sorted(unprocessable_server.recorded) == sorted(
        e["id"] for e in events if e["id"] != "bad-5")
    # 8 -> 4+4 -> the bad half 2+2 -> the bad pair 1+1: four 422s, never retried as transient
    assert unprocessable_server.statuses.count(422) == 4
    assert (client.stats["retries"], client.stats["status_422"]) == (0, 4)


def test_body_too_large_is_split_until_it_fits():
    with Emulator(api_key=KEY, pixel_id=PIXEL, max_body_bytes=6_000) as emu:
        client = make_client(emu)
        events = make_events(100)   # ~200 bytes each: ~20 kB, so at least 4 requests

        outcomes = client.deliver(events)

        assert all(o.accepted for o in outcomes)
        assert sorted(recorded_ids(emu)) == sorted(e["id"] for e in events)
        statuses = [status for status, _, _ in emu.request_log]
        assert statuses.count(413) >= 1 and statuses.count(200) >= 4


def test_single_event_too_large_is_rejected_by_api():
    with Emulator(api_key=KEY, pixel_id=PIXEL, max_body_bytes=600) as emu:
        client = make_client(emu)
        events = [make_event(1), make_event(2, source_url="https://shop.example/" + "x" * 700)]

        outcomes = client.deliver(events)

        assert outcomes[0].accepted
        assert outcomes[1].reason == reasons.REJECTED_BY_API
        assert outcomes[1].detail.startswith("HTTP 413")


# -- 401 / 403: stop at once -------------------------------------------------------------------

@pytest.mark.parametrize(("api_key", "expected"), [
    ("sk-svcacct-wrong-SECRET-abcdef", "the key is invalid or revoked"),
    ("sk-svcacct-old-SECRET", "the key was revoked"),
    ("sk-proj-advertiser-SECRET-xyz", "ads.third_party_events.write — this looks like an "
                                      "Advertiser API key; create a Conversions API key "
                                      "(sk-svcacct-…)"),
])
def test_authentication_failure_stops_after_one_request_without_leaking_the_key(
        emulator, caplog, api_key, expected):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "requests", "connectors"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    client = make_client(emulator, api_key=api_key)

    with pytest.raises(AuthenticationError) as raised:
        client.deliver(make_events(50))
    with pytest.raises(AuthenticationError):   # latched: nothing more goes out
        client.deliver(make_events(1))
    with pytest.raises(AuthenticationError):
        client.preflight()

    message = str(raised.value)
    assert message.startswith("Authentication failed (401): ")
    assert expected in message
    assert emulator.stats["requests"] == 1
    assert client.stats["requests"] == 1
    assert "POST /v1/events?pid=px_test" in caplog.text   # urllib3 debug logging was on
    for text in (message, repr(raised.value), repr(client), str(client), caplog.text):
        assert api_key not in text
        assert "SECRET" not in text


def test_advertiser_key_message_names_the_fix(emulator):
    client = make_client(emulator, api_key="sk-adv-key")

    with pytest.raises(AuthenticationError) as raised:
        client.deliver([make_event(1)])

    assert str(raised.value) == (
        "Authentication failed (401): the key lacks scope ads.third_party_events.write — this "
        "looks like an Advertiser API key; create a Conversions API key (sk-svcacct-…) under "
        "Conversions and use that instead; note the configured key does not start with "
        "sk-svcacct-. API said: 'Missing scopes: ads.third_party_events.write'. No further "
        "requests are sent.")


def test_a_netrc_entry_for_the_host_does_not_replace_the_key(emulator, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other-tools-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))    # where requests looks for it (else ~/.netrc)

    client = make_client(emulator)
    outcomes = client.deliver([make_event(1)])

    assert outcomes[0].accepted                 # sent with the key, not the netrc login
    assert KEY not in repr(client._session.auth)


def test_client_cannot_be_pickled_with_its_key(client):
    with pytest.raises(TypeError):
        pickle.dumps(client)


@pytest.mark.parametrize("bad_key", ["", "sk-svcacct-a b", "sk-svcacct-x\n"])
def test_key_with_whitespace_is_refused_without_echoing_it(emulator, bad_key):
    with pytest.raises(ConfigError) as raised:
        CapiClient(emulator.url, PIXEL, bad_key)
    assert "sk-svcacct" not in str(raised.value)


# -- endpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", [
    "https://bzr.openai.com/v1/events", "http://127.0.0.1:8080/v1/events",
    "http://127.9.9.9/v1/events", "http://localhost:8080/v1/events", "http://[::1]:9/v1/events",
])
def test_accepted_endpoints(endpoint):
    parse_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", [
    "http://bzr.openai.com/v1/events", "http://10.0.0.5/v1/events", "http://[2001:db8::1]/v1",
    "http://localhost.example.com/v1/events",
])
def test_plain_http_to_a_remote_host_is_refused(endpoint):
    with pytest.raises(InsecureEndpointError, match="Refusing plain http://"):
        CapiClient(endpoint, PIXEL, KEY)


@pytest.mark.parametrize("endpoint", ["ftp://bzr.openai.com/v1/events", "bzr.openai.com/v1",
                                      "https:///v1/events"])
def test_endpoint_that_is_not_a_url_is_refused(endpoint):
    with pytest.raises(ConfigError, match="is not an http"):
        parse_endpoint(endpoint)


# -- the timestamp window, re-checked before each request -------------------------------------

def test_stale_and_future_events_are_not_sent(emulator):
    sending_at = now_ms()
    client = make_client(emulator, clock_ms=lambda: sending_at)
    events = [make_event(1), make_event(2, timestamp_ms=sending_at - MAX_AGE_MS - 1),
              make_event(3, timestamp_ms=sending_at + 10 * 60 * 1000 + 1),
              make_event(4, timestamp_ms=sending_at + 10 * 60 * 1000),    # the edge is inside
              make_event(5, timestamp_ms=sending_at - MAX_AGE_MS + 60_000)]

    outcomes = client.deliver(events)

    assert [(o.accepted, o.reason) for o in outcomes] == [
        (True, None), (False, reasons.STALE_TIMESTAMP), (False, reasons.FUTURE_TIMESTAMP),
        (True, None), (True, None)]
    assert outcomes[1].event == events[1]   # never restamped
    assert emulator.request_log == [(200, 3, False)]


def test_event_that_ages_out_while_retrying_is_not_resent(emulator):
    real_now = now_ms()
    clock = iter([real_now, real_now + 120_000])
    client = make_client(emulator, clock_ms=lambda: next(clock))
    almost_stale = make_event(1, timestamp_ms=real_now - MAX_AGE_MS + 60_000)
    emulator.inject("503", count=1)

    outcomes = client.deliver([almost_stale])

    assert (outcomes[0].reason, outcomes[0].event["timestamp_ms"]) == (
        reasons.STALE_TIMESTAMP, real_now - MAX_AGE_MS + 60_000)
    assert emulator.request_log == [(503, 0, False)]
    assert emulator.recorded_events() == []


def test_all_stale_batch_sends_nothing(emulator, client):
    outcomes = client.deliver([make_event(1, timestamp_ms=now_ms() - MAX_AGE_MS - 60_000)])

    assert outcomes[0].reason == reasons.STALE_TIMESTAMP
    assert emulator.stats["requests"] == 0


# -- preflight ---------------------------------------------------------------------------------

def test_preflight_sends_one_validate_only_request(emulator, client):
    client.preflight()

    assert emulator.request_log == [(200, 1, True)]
    assert emulator.recorded_events() == []


def test_preflight_with_a_bad_key_raises_authentication_error(emulator):
    with pytest.raises(AuthenticationError):
        make_client(emulator, api_key="sk-svcacct-nope").preflight()
    assert emulator.stats["requests"] == 1


def test_preflight_to_an_unknown_pixel_explains_what_to_check(emulator):
    client = CapiClient(emulator.url, "px_unknown", KEY, retry=FAST_RETRY)

    with pytest.raises(CapiSyncError) as raised:
        client.preflight()

    assert not isinstance(raised.value, AuthenticationError)
    assert "Unknown pixel id: px_unknown" in str(raised.value)
    assert "Check --endpoint, --pixel-id" in str(raised.value)


def test_closed_client_refuses_to_send(emulator):
    client = make_client(emulator)
    client.close()
    with pytest.raises(CapiSyncError, match="closed"):
        client.deliver([make_event(1)])


def test_preflight_to_an_unreachable_endpoint_fails_quickly_and_clearly():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CapiClient(f"http://127.0.0.1:{port}/v1/events", PIXEL, KEY,
                        retry=RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.02))

    with pytest.raises(CapiSyncError, match="retries_exhausted: gave up after 3 attempts"):
        client.preflight()
    assert client.stats["requests"] == 3


def test_whole_batch_encoding_gives_the_same_body_as_event_by_event(client):
    from connectors.capi_client import _Call, encode_event
    events = make_events(5)
    call = _Call(client, events, "px", False, client.retry)
    assert call.encode_events() == [0, 1, 2, 3, 4] and call.whole is not None
    one_by_one = call.head + b",".join(encode_event(e) for e in events) + b"]}"
    assert call._body([0, 1, 2, 3, 4]) == one_by_one
    assert call._body([1, 3]) == call.head + encode_event(events[1]) + b"," \
        + encode_event(events[3]) + b"]}"
    nan = _Call(client, [*events, make_event(9, data={"type": "contents", "amount": math.nan})],
                "px", False, client.retry)
    assert nan.encode_events() == [0, 1, 2, 3, 4] and nan.whole is None   # NaN: strict encoder
