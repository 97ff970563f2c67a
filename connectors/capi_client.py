"""The CAPI client: delivers lists of events and answers with one outcome per event.

The delivery policy (contract section 2) is the table `DELIVERY_POLICY` below and nowhere else;
each HTTP status maps to one `Action`:
- ACCEPT (2xx): every event in the request is accepted. The success body is undocumented, so
  its fields are not read; a non-empty body that is not JSON (an HTML page from a captive portal
  or proxy, a truncated answer) still counts as accepted, but is counted
  (`suspicious_2xx_bodies`) and logged as a warning: something other than the API may have
  answered.
- SPLIT (400, 422, 413): the batch was not recorded; split it in halves and resend until each
  bad event is alone, then hand that one back as `rejected_by_api` with the API's message. Only
  the status class is trusted (the real API's error body is undocumented).
- STOP_AUTH (401, 403): raise `AuthenticationError`; this client never sends again (the latch).
- STOP_ENDPOINT (3xx, 404, 405): the endpoint is wrong, not the events (redirects are never
  followed: the key would go along). Raise `WrongEndpointError`, latched like a refused key: the
  run stops, and no event is counted as rejected. A TLS certificate that fails verification
  (no status: label CERTIFICATE_ERROR) is answered the same way: every request would fail alike.
- RETRY (408, 429, 5xx, and attempts with no answer: timeouts, dropped connections): retry with
  exponential backoff and full jitter, honouring `Retry-After`, within a `RetryPolicy` budget;
  afterwards the events come back as `retries_exhausted` outcomes (replayable dead letters).
  Every wait is bounded by the request's remaining budget: a Retry-After past it (100000, inf)
  ends the request as `retries_exhausted` at once, and each attempt has a total deadline within
  the budget (connectors/deadline.py), so a server trickling its answer cannot hold it open.
- REJECT (any other status): every event of the request is `rejected_by_api` (no split helps).
Before each request the 7-day / 10-minute window is checked again; events that aged out while
waiting come back as `stale_timestamp` / `future_timestamp` and are never restamped.

The client is shared by the sink's worker threads: counters, the 429 limiter and the stop latch
are guarded by locks. The API key lives only in the session's auth (the Authorization header of
each request); every message the client makes is masked (transforms/masking.py), so the key
never appears in a log record, an exception, a dead letter's detail or `repr(client)`.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import json
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, NamedTuple

import orjson
import requests
from requests.auth import AuthBase

from connectors.backoff import (
    DEFAULT_RETRY_POLICY,
    AdaptiveLimiter,
    RetryPolicy,
    parse_retry_after,
)
from connectors.deadline import DeadlineAdapter, attempt_deadline
from connectors.endpoint import Endpoint, InsecureEndpointError, parse_endpoint
from transforms import reasons
from transforms.errors import CapiSyncError, ConfigError
from transforms.events import DEFAULT_ENDPOINT, INTEGRATION_SOURCE, MAX_EVENTS_PER_REQUEST
from transforms.masking import mask_secrets
from transforms.validate import check_timestamp_window, timestamp_window

_LOG = logging.getLogger(__name__)

CONVERSIONS_KEY_PREFIX = "sk-svcacct-"
REQUIRED_SCOPE = "ads.third_party_events.write"
_MAX_MESSAGE_CHARS = 500
_SHORTEST_ATTEMPT_S = 0.01     # less time left in the budget than this: not worth a request
# The strict encoder, for the rare event orjson would change: orjson writes NaN/Infinity as null.
_EVENT_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_INT_ONLY = frozenset({int})
CERTIFICATE_ERROR = "certificate_error"    # a status label: the server's TLS certificate failed

__all__ = [
    "DEFAULT_RETRY_POLICY", "Action", "AuthenticationError", "CapiClient", "DeliveryOutcome",
    "DeliveryResult", "DeliveryStopped", "Endpoint", "InsecureEndpointError", "RetryPolicy",
    "WrongEndpointError", "delivery_action", "parse_endpoint",
    "parse_retry_after",
]


class Action(enum.Enum):
    """What one HTTP answer means for the events of the request (see the module docstring)."""

    ACCEPT = "accept"
    SPLIT = "split"
    REJECT = "reject"
    RETRY = "retry"
    STOP_AUTH = "stop_auth"
    STOP_ENDPOINT = "stop_endpoint"


# The delivery policy: the first row whose statuses hold the answer's status decides.
DELIVERY_POLICY: tuple[tuple[range | frozenset[int], Action], ...] = (
    (range(200, 300), Action.ACCEPT),
    (range(300, 400), Action.STOP_ENDPOINT),        # redirects are not followed
    (frozenset({400, 413, 422}), Action.SPLIT),
    (frozenset({401, 403}), Action.STOP_AUTH),
    (frozenset({404, 405}), Action.STOP_ENDPOINT),
    (frozenset({408, 429}), Action.RETRY),
    (range(500, 600), Action.RETRY),
)
NO_ANSWER_ACTION = Action.RETRY     # a timeout or dropped connection: no status at all
OTHER_STATUS_ACTION = Action.REJECT


def delivery_action(status: int | None) -> Action:
    """The policy's action for an HTTP status (None: the attempt got no answer)."""
    if status is None:
        return NO_ANSWER_ACTION
    for statuses, action in DELIVERY_POLICY:
        if status in statuses:
            return action
    return OTHER_STATUS_ACTION


def encode_event(event: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of one event; ValueError/TypeError when it has no faithful JSON form.

    orjson is ~5x faster than json on 1,000-event bodies. Mapped events never hold null, so a
    `null` in orjson's output is checked with the strict encoder (a NaN would have become null).
    """
    encoded = orjson.dumps(event)
    if b"null" in encoded:
        return _EVENT_ENCODER.encode(event).encode("utf-8")
    return encoded


class DeliveryStopped(CapiSyncError):
    """The API's answer means no further request can succeed: the run stops, nothing more is
    sent. Subclasses say why; their messages start with a fixed phrase (pipeline/logs.py)."""


class AuthenticationError(DeliveryStopped):
    """The API refused the key (401/403). Fatal: the run stops and nothing more is sent."""


class WrongEndpointError(DeliveryStopped):
    """The endpoint answered 3xx, 404 or 405: it is not the events API. Fatal like a refused key."""


class DeliveryOutcome(NamedTuple):
    """What became of one event: accepted, or not with a reason code and a readable detail.

    A NamedTuple, not a frozen dataclass: one is made per delivered event, and an accepted
    request's outcomes are made in C (`_accepted_outcomes`)."""

    event: dict[str, Any]
    accepted: bool
    reason: str | None = None
    detail: str | None = None


_new_outcome = functools.partial(tuple.__new__, DeliveryOutcome)   # no Python frame per event


def _accepted_outcomes(events: Sequence[dict[str, Any]]) -> list[DeliveryOutcome]:
    """`DeliveryOutcome(event, True)` for each event, without a Python call per event."""
    return list(map(_new_outcome, zip(events, itertools.repeat(True), itertools.repeat(None),
                                      itertools.repeat(None))))


@dataclasses.dataclass(frozen=True)
class DeliveryResult:
    """The outcomes of one `deliver_batch` call (input order) and what it cost on the wire.

    `statuses` counts responses by label: "200", "429", ... and "timeout" / "connection_error"
    for attempts that got no HTTP response. `suspicious_2xx_bodies` counts 2xx answers whose
    body was not JSON (their events are accepted; see the module docstring).
    """

    outcomes: list[DeliveryOutcome]
    requests: int = 0
    retries: int = 0
    statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    suspicious_2xx_bodies: int = 0
    rejected: int | None = None   # outcomes not accepted; None: count them (accepted_count)

    @property
    def accepted_count(self) -> int:
        if self.rejected is not None:
            return len(self.outcomes) - self.rejected
        return sum(1 for outcome in self.outcomes if outcome.accepted)

    @property
    def all_accepted(self) -> bool:
        """Every event accepted (the common case: the sink then needs no per-event look)."""
        return self.accepted_count == len(self.outcomes)


def client_version() -> str:
    try:
        return metadata.version("capi-sync")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def default_user_agent() -> str:
    return f"capi-sync/{client_version()} python-requests/{requests.__version__}"


@dataclasses.dataclass(frozen=True)
class _Reply:
    """One attempt's answer: an HTTP status, or None when no response arrived."""

    status: int | None
    label: str
    message: str
    retry_after_s: float | None = None
    location: str | None = None        # a 3xx's Location header, masked
    suspicious: bool = False           # a 2xx whose body is not JSON

    @property
    def action(self) -> Action:
        if self.label == CERTIFICATE_ERROR:    # every request would fail alike: no retry
            return Action.STOP_ENDPOINT
        return delivery_action(self.status)


class CapiClient:
    """Delivers events to one pixel (by default) over one pooled, thread-safe HTTP session.

    >>> client = CapiClient("https://bzr.openai.com/v1/events", "px_1", key)
    >>> [o.accepted for o in client.deliver([event_a, event_b])]
    [True, True]
    """

    def __init__(self, endpoint: Endpoint | str, pixel_id: str, api_key: str, *,
                 validate_only: bool = False, retry: RetryPolicy = DEFAULT_RETRY_POLICY,
                 connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0,
                 max_in_flight: int = 4, user_agent: str | None = None,
                 clock_ms: Callable[[], int] | None = None):
        parsed = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
        if not pixel_id:
            raise ConfigError("A pixel id is required for delivery (--pixel-id)")
        if not api_key or any(ch.isspace() or ord(ch) < 32 for ch in api_key):
            # Checked here because requests would echo the header value in its own error.
            raise ConfigError("The API key is empty or contains whitespace/control characters")
        self.endpoint = parsed.url
        self.pixel_id = pixel_id
        self.validate_only = validate_only
        self.retry = retry
        self.max_in_flight = max_in_flight
        self._api_key = api_key
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._limiter = AdaptiveLimiter(max_in_flight, max_hold_s=retry.max_elapsed_s / 2)
        self._stats: Counter[str] = Counter(requests=0, retries=0)
        self._stats_lock = threading.Lock()
        self._stop_error: DeliveryStopped | None = None
        self._closed = False
        self._session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max_in_flight, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        if parsed.plain_http:
            # Loopback only (the emulator). Without this, HTTP_PROXY would send the request,
            # key included, in clear text to the proxy; no proxy, netrc or CA bundle applies.
            self._session.trust_env = False
        self._session.auth = _BearerAuth(api_key)
        self._session.headers.update({
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent or default_user_agent(),
        })

    def __repr__(self) -> str:
        return (f"CapiClient(endpoint={self.endpoint!r}, pixel_id={self.pixel_id!r}, "
                f"validate_only={self.validate_only}, max_in_flight={self.max_in_flight})")

    def __getstate__(self) -> None:
        raise TypeError("CapiClient holds a live session and a key; create it in DoFn.setup()")

    @property
    def stats(self) -> dict[str, int]:
        """Snapshot: requests, retries, status_<label> (e.g. status_200, status_timeout),
        suspicious_2xx_bodies, and concurrency_limit (the current AIMD limit)."""
        with self._stats_lock:
            snapshot = dict(self._stats)
        snapshot["concurrency_limit"] = self._limiter.limit
        return snapshot

    def deliver(self, events: Sequence[dict[str, Any]], pixel_id: str | None = None
                ) -> list[DeliveryOutcome]:
        """One outcome per event, in input order. Raises only DeliveryStopped (fatal)."""
        return self.deliver_batch(events, pixel_id).outcomes

    def deliver_batch(self, events: Sequence[dict[str, Any]], pixel_id: str | None = None
                      ) -> DeliveryResult:
        """Like `deliver`, plus what this call cost (requests, retries, statuses)."""
        return self._deliver(events, pixel_id or self.pixel_id, self.validate_only, self.retry)

    def preflight(self) -> None:
        """One validate_only request with a harmless event: checks key, pixel and endpoint.

        Raises AuthenticationError on 401/403, WrongEndpointError on 3xx/404/405 and
        CapiSyncError on any other failure.
        """
        now_ms = self._clock_ms()
        event = {"id": f"capi-sync-preflight-{now_ms}", "type": "page_viewed",
                 "timestamp_ms": now_ms, "action_source": "web",
                 "source_url": "https://capi-sync.invalid/preflight", "data": {"type": "contents"}}
        # A short budget: a preflight that cannot get through should say so within seconds.
        policy = dataclasses.replace(self.retry, max_attempts=min(self.retry.max_attempts, 3),
                                     max_elapsed_s=min(self.retry.max_elapsed_s, 30.0))
        outcome = self._deliver([event], self.pixel_id, True, policy).outcomes[0]
        if not outcome.accepted:
            raise CapiSyncError(
                f"Preflight (a validate_only request) to {self.endpoint} for pixel "
                f"{self.pixel_id!r} failed: {outcome.reason}: {outcome.detail}. Check --endpoint, "
                "--pixel-id and network access before running the sync.")

    def close(self) -> None:
        self._closed = True
        self._session.close()

    # -- one call ---------------------------------------------------------------------------

    def _deliver(self, events: Sequence[dict[str, Any]], pixel_id: str, validate_only: bool,
                 policy: RetryPolicy) -> DeliveryResult:
        if self._closed:
            raise CapiSyncError("CapiClient is closed")
        self._raise_if_stopped()
        call = _Call(self, events, pixel_id, validate_only, policy)
        pending = call.encode_events()
        for start in range(0, len(pending), MAX_EVENTS_PER_REQUEST):
            call.send_group(pending[start:start + MAX_EVENTS_PER_REQUEST])
        return call.result()

    # -- shared state, used by _Call from many threads ---------------------------------------

    def _raise_if_stopped(self) -> None:
        if self._stop_error is not None:
            raise self._stop_error

    def _count(self, key: str, amount: int = 1) -> None:
        with self._stats_lock:
            self._stats[key] += amount

    def _backoff_s(self, policy: RetryPolicy, retry_number: int) -> float:
        with self._rng_lock:
            return policy.backoff_s(retry_number, self._rng)

    def _mask(self, text: str) -> str:
        return mask_secrets(text, (self._api_key,))

    def _post(self, body: bytes, pixel_id: str, deadline: float) -> _Reply | None:
        """One attempt; None when it could not start before `deadline` (Retry-After held
        every request back past it, or no slot freed up)."""
        if not self._limiter.acquire(deadline):
            return None
        reply: _Reply | None = None
        try:
            self._raise_if_stopped()   # another thread may have been stopped while we waited
            reply = self._send(body, pixel_id, deadline - time.monotonic())
            return reply
        finally:
            if reply is None:
                self._limiter.release(None, None)
            else:
                self._limiter.release(reply.status, reply.retry_after_s)
                self._count_reply(reply)

    def _count_reply(self, reply: _Reply) -> None:
        with self._stats_lock:
            self._stats["requests"] += 1
            self._stats[f"status_{reply.label}"] += 1
            if not reply.suspicious:
                return
            self._stats["suspicious_2xx_bodies"] += 1
            suspicious = self._stats["suspicious_2xx_bodies"]
        if suspicious == 1 or suspicious % 1000 == 0:     # the first, then a reminder
            _LOG.warning("%s (%d such answers so far)", reply.message, suspicious)

    def _send(self, body: bytes, pixel_id: str, budget_left_s: float) -> _Reply:
        """Sends once, under a total deadline: the budget left, at most connect + read timeout."""
        total_s = min(budget_left_s, self._connect_timeout_s + self._read_timeout_s)
        if total_s < _SHORTEST_ATTEMPT_S:
            return _Reply(None, "timeout", "timeout: no time left in the retry budget")
        timeout = (min(self._connect_timeout_s, total_s), min(self._read_timeout_s, total_s))
        with attempt_deadline(total_s) as attempt:
            try:
                response = self._session.post(self.endpoint, params={"pid": pixel_id},
                                              data=body, timeout=timeout, allow_redirects=False)
            except requests.RequestException as exc:
                return self._no_answer(exc, attempt.expired, total_s)
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if 200 <= status < 300:
            suspicious = _not_json(response.content)
            message = self._suspicious_message(response) if suspicious else ""
            return _Reply(status, str(status), message, retry_after, suspicious=suspicious)
        location = response.headers.get("Location") if 300 <= status < 400 else None
        return _Reply(status, str(status), self._mask(_api_message(response)), retry_after,
                      location=self._mask(location) if location else None)

    def _no_answer(self, exc: requests.RequestException, expired: bool, total_s: float) -> _Reply:
        refused = _certificate_error(exc)
        if refused is not None:
            return _Reply(None, CERTIFICATE_ERROR, self._mask(
                refused.verify_message or refused.reason or str(refused)))
        if expired:
            return _Reply(None, "timeout", f"timeout: no complete answer within the attempt's "
                                           f"deadline of {total_s:.1f}s")
        if isinstance(exc, requests.Timeout):
            return _Reply(None, "timeout", self._mask(f"timeout: {exc}"))
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return _Reply(None, "connection_error", self._mask(f"connection error: {exc}"))
        raise CapiSyncError(self._mask(f"Cannot send to {self.endpoint}: {exc}")) from None

    def _suspicious_message(self, response: requests.Response) -> str:
        kind = response.headers.get("Content-Type") or "no Content-Type"
        start = " ".join(response.text[:80].split())
        return self._mask(
            f"HTTP {response.status_code} from {self.endpoint} with a body that is not JSON "
            f"({kind}: {start!r}): its events count as accepted (the API's success body is "
            "undocumented), but a proxy, captive portal or load balancer may have answered "
            "instead of the API; check --endpoint and the network path, and replay the run if "
            "nothing arrived")

    def _latch_stop(self, reply: _Reply) -> DeliveryStopped:
        with self._stats_lock:
            if self._stop_error is None:
                if reply.action is Action.STOP_AUTH:
                    self._stop_error = AuthenticationError(self._auth_message(reply))
                else:
                    self._stop_error = WrongEndpointError(self._endpoint_message(reply))
                _LOG.error("%s", self._stop_error)
            return self._stop_error

    def _endpoint_message(self, reply: _Reply) -> str:
        if reply.label == CERTIFICATE_ERROR:
            return (f"Wrong endpoint (TLS certificate of {self.endpoint} not verified: "
                    f"{reply.message}): this is not a certificate this machine trusts for the "
                    "API. Behind a proxy that inspects TLS, give its CA bundle in "
                    "REQUESTS_CA_BUNDLE=/path/to/ca.pem; else check --endpoint "
                    f"(default {DEFAULT_ENDPOINT}). No event was rejected. No further requests "
                    "are sent.")
        if reply.status is not None and 300 <= reply.status < 400:
            cause = (f"it redirects to {reply.location or 'an unnamed location'}, and redirects "
                     "are not followed (the key would go along)")
        elif reply.status == 405:
            cause = "it does not take POST here, so this is not the events API"
        else:
            cause = "there is no events API at this URL"
        return (f"Wrong endpoint (HTTP {reply.status} from {self.endpoint}): {cause}. No event "
                f"was rejected; set --endpoint to the events API (default {DEFAULT_ENDPOINT}) "
                "and run again. API said: "
                f"{reply.message!r}. No further requests are sent.")

    def _auth_message(self, reply: _Reply) -> str:
        said = reply.message.lower()
        if reply.status == 403 or "scope" in said:
            cause = (f"the key lacks scope {REQUIRED_SCOPE} — this looks like an Advertiser API "
                     "key; create a Conversions API key (sk-svcacct-…) under Conversions and "
                     "use that instead")
        elif "revoked" in said:
            cause = ("the key was revoked (regenerating a key revokes the old one at once); "
                     "store the current Conversions API key (sk-svcacct-…) where the run reads it")
        else:
            cause = ("the key is invalid or revoked; check that the run reads the current "
                     "Conversions API key (sk-svcacct-…)")
        if not self._api_key.startswith(CONVERSIONS_KEY_PREFIX):
            cause += "; note the configured key does not start with sk-svcacct-"
        return (f"Authentication failed ({reply.status}): {cause}. API said: {reply.message!r}."
                " No further requests are sent.")


class _BearerAuth(AuthBase):
    """`Authorization: Bearer <key>` on each request. Being the session's auth, it also stops
    requests from reading ~/.netrc before every request, whose entry for the API's host would
    replace this header with the netrc login."""

    def __init__(self, api_key: str):
        self._header = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<key>)"


class _Call:
    """The state of one deliver call: events, their encodings and outcomes. One thread only."""

    def __init__(self, client: CapiClient, events: Sequence[dict[str, Any]], pixel_id: str,
                 validate_only: bool, policy: RetryPolicy):
        self.client = client
        self.policy = policy
        self.events = list(events)
        self.pixel_id = pixel_id
        self.outcomes: list[DeliveryOutcome | None] = [None] * len(self.events)
        self.encoded: list[bytes] | None = [b""] * len(self.events)
        self.whole: bytes | None = None       # all events as one JSON list (encode_events)
        self.head = json.dumps({"validate_only": validate_only,
                                "integration_source": INTEGRATION_SOURCE},
                               separators=(",", ":")).encode("utf-8")[:-1] + b',"events":['
        self.requests = 0
        self.retries = 0
        self.suspicious = 0
        self.rejected = 0
        self.statuses: Counter[str] = Counter()

    def result(self) -> DeliveryResult:
        assert None not in self.outcomes, "every event must have an outcome"
        return DeliveryResult(self.outcomes, self.requests, self.retries, dict(self.statuses),
                              self.suspicious, self.rejected)

    def encode_events(self) -> list[int]:
        """Encodes the events (compact UTF-8 JSON); requests are joined from these bytes.

        The common case is one orjson call for the whole list (~3x cheaper than one per event):
        its body serves a request carrying every event. Per-event encodings are made only when
        a request carries a subset (a split, an event dropped for its timestamp).
        """
        if len(self.events) <= MAX_EVENTS_PER_REQUEST:
            try:
                whole = orjson.dumps(self.events)
            except (TypeError, ValueError):
                whole = b"null"        # some event has no JSON form: find it event by event
            if b"null" not in whole:
                self.whole = whole
                self.encoded = None
                return list(range(len(self.events)))
        pending = []
        for index, event in enumerate(self.events):
            try:
                self.encoded[index] = encode_event(event)
            except (TypeError, ValueError) as exc:
                self._settle([index], reasons.MAPPING_ERROR, f"event is not valid JSON: {exc}")
                continue
            pending.append(index)
        return pending

    def send_group(self, indices: list[int]) -> None:
        """Sends these events in one request and acts on the answer as DELIVERY_POLICY says."""
        reply, indices = self._post_with_retries(indices)
        if reply is None:
            return
        action = reply.action
        if action is Action.ACCEPT:
            if len(indices) == len(self.events):    # the whole call in one request
                self.outcomes = _accepted_outcomes(self.events)
                return
            for index in indices:
                self.outcomes[index] = _new_outcome((self.events[index], True, None, None))
        elif action in (Action.STOP_AUTH, Action.STOP_ENDPOINT):
            raise self.client._latch_stop(reply)
        elif action is Action.SPLIT and len(indices) > 1:
            middle = len(indices) // 2
            self.send_group(indices[:middle])
            self.send_group(indices[middle:])
        elif action is Action.SPLIT and reply.status == 413:
            self._settle(indices, reasons.REJECTED_BY_API,
                         f"HTTP 413: the event alone is too large for a request: {reply.message}")
        elif action is Action.SPLIT:
            self._settle(indices, reasons.REJECTED_BY_API, reply.message or f"HTTP {reply.status}")
        else:   # Action.REJECT: not one event's problem, so splitting would not help
            self._settle(indices, reasons.REJECTED_BY_API,
                         f"HTTP {reply.status} from {self.client.endpoint} (check --endpoint and "
                         f"--pixel-id): {reply.message}")

    def _post_with_retries(self, indices: list[int]) -> tuple[_Reply | None, list[int]]:
        """The final answer that is not RETRY and the events it covers; None once all are
        settled. Every wait is bounded by what is left of the request's time budget."""
        policy = self.policy
        started = time.monotonic()
        deadline = started + policy.max_elapsed_s
        attempt = 0
        while True:
            indices = self._drop_outside_window(indices)
            if not indices:
                return None, []
            body = self._body(indices)
            reply = self.client._post(body, self.pixel_id, deadline)
            if reply is None:
                self._settle(indices, reasons.RETRIES_EXHAUSTED, self.client._mask(
                    f"gave up after {attempt} attempts in {time.monotonic() - started:.1f}s: "
                    "the API asked every request to wait (Retry-After) past this request's "
                    f"retry budget of {policy.max_elapsed_s:g}s"))
                return None, []
            self.requests += 1
            self.statuses[reply.label] += 1
            self.suspicious += reply.suspicious
            if reply.action is not Action.RETRY:
                return reply, indices
            attempt += 1
            delay = self.client._backoff_s(policy, attempt)
            if reply.retry_after_s is not None:
                delay = max(delay, reply.retry_after_s)
            elapsed = time.monotonic() - started
            if attempt >= policy.max_attempts or delay > deadline - time.monotonic():
                waited = (f"; Retry-After {reply.retry_after_s:g}s is past the budget left"
                          if reply.retry_after_s is not None and
                          reply.retry_after_s > deadline - time.monotonic() else "")
                self._settle(indices, reasons.RETRIES_EXHAUSTED, self.client._mask(
                    f"gave up after {attempt} attempts in {elapsed:.1f}s{waited}; "
                    f"last error: {reply.label} {reply.message}".rstrip()))
                return None, []
            self.retries += 1
            self.client._count("retries")
            _LOG.warning("CAPI request for pixel %s (%d events) got %s; retry %d of %d in %.2fs",
                         self.pixel_id, len(indices), reply.label, attempt,
                         policy.max_attempts - 1, delay)
            time.sleep(delay)

    def _body(self, indices: list[int]) -> bytes:
        if self.whole is not None and len(indices) == len(self.events):
            # One copy of the ~1 MB list (`head + whole[1:] + b"}"` made three).
            return b"".join((self.head, memoryview(self.whole)[1:], b"}"))
        if self.encoded is None:     # a subset of a batch encoded whole: encode one by one
            self.encoded = [encode_event(event) for event in self.events]
        return self.head + b",".join(self.encoded[i] for i in indices) + b"]}"

    def _drop_outside_window(self, indices: list[int]) -> list[int]:
        """Re-checks the timestamp window right before sending; never restamps."""
        now_ms = self.client._clock_ms()
        oldest, newest = timestamp_window(now_ms)
        events = self.events
        if indices and len(indices) == len(events):   # the common case: all inside
            stamps = [event.get("timestamp_ms") for event in events]
            if _INT_ONLY.issuperset(map(type, stamps)) and \
                    oldest <= min(stamps) and max(stamps) <= newest:
                return indices
        kept = []
        for index in indices:
            timestamp_ms = events[index].get("timestamp_ms")
            if type(timestamp_ms) is int and oldest <= timestamp_ms <= newest:
                kept.append(index)     # the common case, without a call per event
                continue
            violation = None
            if isinstance(timestamp_ms, int) and not isinstance(timestamp_ms, bool):
                violation = check_timestamp_window(timestamp_ms, now_ms)
            if violation is None:
                kept.append(index)
            else:
                self._settle([index], violation.reason, violation.detail)
        return kept

    def _settle(self, indices: list[int], reason: str, detail: str) -> None:
        for index in indices:
            if self.outcomes[index] is None:
                self.rejected += 1
            self.outcomes[index] = DeliveryOutcome(self.events[index], False, reason, detail)


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a requests error, if that is what it is
    (requests -> urllib3 -> ssl, through causes, contexts, `reason` and args)."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ssl.SSLCertVerificationError):
            return error
        pending.extend((error.__cause__, error.__context__, getattr(error, "reason", None),
                        *error.args))
    return None


def _not_json(body: bytes) -> bool:
    """A non-empty body that does not parse as JSON (an empty 2xx body is not suspicious)."""
    if not body.strip():
        return False
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return False


def _api_message(response: requests.Response) -> str:
    """The API's error text for a dead letter: error.message / message / the raw body."""
    message = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
        elif isinstance(body.get("message"), str):
            message = body["message"]
    if message is None:
        message = response.text
    message = " ".join(message.split())[:_MAX_MESSAGE_CHARS]
    return message or f"HTTP {response.status_code} {response.reason or ''}".strip()
