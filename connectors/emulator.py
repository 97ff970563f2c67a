"""A local Conversions API emulator: a real HTTP server on loopback (contract section 9).

It answers like the API for every documented rule (auth and key type, `pid`, the `{events: [...]}`
envelope, 1 to 1,000 events, the per-event rules of `transforms.validate`, all-or-nothing
batches), records accepted events with dedup on `(pixel, type, id)`, honours `validate_only`,
and injects faults on request. Tests use it as a context manager on port 0::

    with Emulator(api_key="sk-svcacct-test", pixel_id="px_1") as emulator:
        requests.post(emulator.url, params={"pid": "px_1"}, json={"events": [...]},
                      headers={"Authorization": "Bearer sk-svcacct-test"})
        assert emulator.recorded_events("px_1") == [...]

Users check a mapping offline with the command line (prints the endpoint, then serves)::

    python -m connectors.emulator --port 8080 --api-key sk-svcacct-local --pixel-id px_1

Admin endpoints (no auth; loopback only): GET /_emulator/events[?pid=..], GET /_emulator/stats,
GET /_emulator/requests, POST /_emulator/faults {"kind", "count", "rate", "retry_after",
"latency_s", "seed"}, POST /_emulator/reject {"ids": [...], "message": ..},
POST /_emulator/latency {"seconds": ..}, POST /_emulator/reset.

Faults apply to POST /v1/events only and are decided before auth, like a proxy in front of the
API would behave: 429/5xx and "drop" record nothing; "lost_response" processes the request
normally (so a valid batch IS recorded) and then closes the connection without answering.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from transforms.events import MAX_EVENTS_PER_REQUEST
from transforms.validate import validate_event

logger = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"
ADMIN_PREFIX = "/_emulator/"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
SERVICE_ACCOUNT_KEY_PREFIX = "sk-svcacct-"
REQUIRED_SCOPE = "ads.third_party_events.write"
FAULT_KINDS = frozenset({"429", "500", "502", "503", "504", "drop", "lost_response", "latency"})
DEFAULT_LATENCY_FAULT_S = 1.0
NO_RESPONSE = 0  # request_log / by_status status for a connection closed without an answer

_INTEGRATION_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FAULT_MESSAGES = {
    "429": "Rate limit exceeded (injected fault)",
    "500": "Internal server error (injected fault)",
    "502": "Bad gateway (injected fault)",
    "503": "Service unavailable (injected fault)",
    "504": "Gateway timeout (injected fault)",
}


@dataclasses.dataclass
class _Fault:
    kind: str
    count: int
    rate: float
    retry_after: str | None
    latency_s: float
    rng: random.Random

    def fires(self) -> bool:
        if self.count > 0:
            self.count -= 1
            return True
        return self.rate > 0 and self.rng.random() < self.rate

    @property
    def exhausted(self) -> bool:
        return self.count <= 0 and self.rate <= 0


@dataclasses.dataclass(frozen=True)
class _Response:
    status: int
    payload: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    send: bool = True  # False: close the connection without answering


def _error(status: int, message: str, **extra: Any) -> _Response:
    return _Response(status, {"error": {"message": message, **extra}})


class Emulator:
    """The CAPI emulator: a ThreadingHTTPServer on 127.0.0.1 served from a background thread."""

    def __init__(self, api_key: str = "sk-svcacct-test",
                 pixel_id: str | Iterable[str] = "px_test", port: int = 0, *,
                 latency_s: float = 0.0, fast: bool = False, revoked_keys: Iterable[str] = (),
                 clock_ms: Callable[[], int] | None = None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._api_key = api_key
        self._pixel_ids = frozenset([pixel_id] if isinstance(pixel_id, str) else pixel_id)
        self._requested_port = port
        self._latency_s = latency_s
        self.fast = fast
        self._revoked_keys = frozenset(revoked_keys)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._reset_state()

    def __repr__(self) -> str:  # never shows the key
        state = self.url if self._server else "stopped"
        return f"Emulator({state}, pixels={sorted(self._pixel_ids)}, fast={self.fast})"

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", self._requested_port), _Handler)
        server.daemon_threads = True
        server.emulator = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"capi-emulator-{self.port}", daemon=True)
        self._thread.start()
        logger.info("CAPI emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # idle keep-alive connections would otherwise linger
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The events endpoint, without `?pid=`: http://127.0.0.1:<port>/v1/events."""
        return self.base_url + EVENTS_PATH

    # ----- test / admin API ----------------------------------------------------------------
    def recorded_events(self, pixel_id: str | None = None) -> list[dict]:
        """Accepted events, deduplicated on (pixel, type, id), in arrival order.

        In fast mode only the dedup key is kept: each event is {"type": .., "id": ..}.
        """
        with self._lock:
            items = list(self._recorded.items())
        return [event if event is not None else {"type": key[1], "id": key[2]}
                for key, event in items if pixel_id is None or key[0] == pixel_id]

    def inject(self, kind: str, *, rate: float = 0.0, count: int = 0,
               retry_after: str | int | float | None = None, seed: int | None = None,
               latency_s: float | None = None) -> None:
        """Make the next `count` requests, or each request with probability `rate`, fail.

        kind: "429", "500", "502", "503", "504", "drop" (close without answering),
        "lost_response" (process and record, then close without answering) or "latency"
        (answer normally after `latency_s`, default 1 s). With neither count nor rate, the next
        request gets the fault. 429 always carries Retry-After (`retry_after`, seconds or an
        HTTP date; default "0"); 5xx carry it when `retry_after` is given.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0 or count < 0:
            raise ValueError("rate must be within [0, 1] and count must not be negative")
        if count == 0 and rate == 0.0:
            count = 1
        fault = _Fault(kind=kind, count=count, rate=rate,
                       retry_after=None if retry_after is None else str(retry_after),
                       latency_s=DEFAULT_LATENCY_FAULT_S if latency_s is None else latency_s,
                       rng=random.Random(seed))
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Stop injecting faults and rejecting event ids (recorded events are kept)."""
        with self._lock:
            self._faults.clear()
            self._rejected_ids = frozenset()

    def reject_event_ids(self, ids: Iterable[str],
                         message: str = "Event rejected by the API") -> None:
        """Refuse batches holding these event ids (400) although the events pass local checks."""
        with self._lock:
            self._rejected_ids = frozenset(ids) | self._rejected_ids
            self._reject_message = message

    def set_latency(self, seconds: float) -> None:
        """Delay every answer to POST /v1/events by `seconds`."""
        self._latency_s = seconds

    def reset(self) -> None:
        """Forget recorded events, faults, rejected ids and counters (latency is kept)."""
        with self._lock:
            self._reset_state()

    @property
    def stats(self) -> dict:
        """Counters (a copy). events_received counts events in recorded (not validate_only)
        batches, duplicates included; events_validated counts validate_only ones."""
        with self._lock:
            stats = dict(self._stats)
            stats["by_status"] = dict(self._by_status)
            stats["recorded"] = len(self._recorded)
        return stats

    @property
    def request_log(self) -> list[tuple[int, int, bool]]:
        """(status, n_events, validate_only) per POST /v1/events; status 0 = no answer sent."""
        with self._lock:
            return list(self._request_log)

    def _reset_state(self) -> None:
        self._recorded: dict[tuple[str, str, str], dict | None] = {}
        self._faults: list[_Fault] = []
        self._rejected_ids: frozenset[str] = frozenset()
        self._reject_message = ""
        self._stats: Counter[str] = Counter(
            requests=0, events_received=0, events_validated=0, duplicates=0, dropped=0,
            lost_responses=0, max_concurrent_requests=0)
        self._in_flight = 0
        self._by_status: Counter[int] = Counter()
        self._request_log: list[tuple[int, int, bool]] = []

    # ----- request processing (called from handler threads) ----------------------------------
    def _next_fault(self) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.fires():
                    if fault.exhausted:
                        self._faults.remove(fault)
                    return fault
        return None

    def _handle_events(self, authorization: str | None, query: str, body: bytes | None
                       ) -> _Response:
        with self._lock:   # how many requests overlap: shows a client's concurrency
            self._in_flight += 1
            self._stats["max_concurrent_requests"] = max(
                self._stats["max_concurrent_requests"], self._in_flight)
        try:
            return self._answer_events(authorization, query, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer_events(self, authorization: str | None, query: str, body: bytes | None
                       ) -> _Response:
        fault = self._next_fault()
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.latency_s)
        if fault is not None and fault.kind == "drop":
            response, n_events, validate_only = _Response(NO_RESPONSE, send=False), 0, False
        elif fault is not None and fault.kind in _FAULT_MESSAGES:
            headers = ()
            if fault.kind == "429" or fault.retry_after is not None:
                headers = (("Retry-After", fault.retry_after or "0"),)
            response = _Response(int(fault.kind), {"error": {"message": _FAULT_MESSAGES[
                fault.kind]}}, headers)
            n_events, validate_only = 0, False
        else:
            response, n_events, validate_only = self._process(authorization, query, body)
            if fault is not None and fault.kind == "lost_response":
                response = _Response(NO_RESPONSE, send=False)
        with self._lock:
            self._stats["requests"] += 1
            self._by_status[response.status] += 1
            self._request_log.append((response.status, n_events, validate_only))
            if fault is not None and fault.kind == "drop":
                self._stats["dropped"] += 1
            if fault is not None and fault.kind == "lost_response":
                self._stats["lost_responses"] += 1
        return response

    def _process(self, authorization: str | None, query: str, body: bytes | None
                 ) -> tuple[_Response, int, bool]:
        """Answer one POST /v1/events: (response, number of events in the body, validate_only)."""
        auth_error = self._check_auth(authorization)
        if auth_error is not None:
            return auth_error, 0, False
        pixel_ids = parse_qs(query).get("pid")
        if not pixel_ids:
            return _error(400, "Missing required parameter: pid"), 0, False
        pixel_id = pixel_ids[0]
        if pixel_id not in self._pixel_ids:
            return _error(400, f"Unknown pixel id: {pixel_id}"), 0, False
        if body is None:
            too_large = f"Request body too large (max {self.max_body_bytes} bytes)"
            return _error(413, too_large), 0, False

        try:
            payload = _decode_keys_only(body) if self.fast else json.loads(body)
        except msgspec.ValidationError as error:       # fast mode: the decoder names the spot
            return _error(400, f"Request body does not fit the envelope: {error}"), 0, False
        except ValueError:
            return _error(400, "Request body is not valid JSON"), 0, False
        if not isinstance(payload, dict):
            return _error(400, "Request body must be a JSON object"), 0, False
        envelope_error = _check_envelope(payload)
        events = payload.get("events")
        n_events = len(events) if isinstance(events, list) else 0
        validate_only = payload.get("validate_only") is True
        if envelope_error is not None:
            return envelope_error, n_events, validate_only

        event_error = self._check_events(events)
        if event_error is not None:
            return event_error, n_events, validate_only
        if not validate_only:
            self._record(pixel_id, events)
        else:
            with self._lock:
                self._stats["events_validated"] += n_events
        return (_Response(200, {"events_received": n_events, "validate_only": validate_only}),
                n_events, validate_only)

    def _check_auth(self, authorization: str | None) -> _Response | None:
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return _error(401, "Missing API key: send Authorization: Bearer <API key>")
        if key in self._revoked_keys:
            return _error(401, "API key revoked")
        if key == self._api_key:
            return None
        if key.startswith("sk-") and not key.startswith(SERVICE_ACCOUNT_KEY_PREFIX):
            return _error(401, f"Missing scopes: {REQUIRED_SCOPE}")
        return _error(401, "Invalid API key")

    def _check_events(self, events: list) -> _Response | None:
        """The first bad event fails the whole batch (all-or-nothing), naming its index."""
        rejected = self._rejected_ids
        if self.fast:  # benchmark mode: events are _EventKey, objects by construction
            for index, event in enumerate(events):
                if rejected and event.id in rejected:
                    return self._rejection(index)
            return None
        now_ms = self._clock_ms()
        for index, event in enumerate(events):
            violation = validate_event(event, now_ms)
            if violation is not None:
                return _error(400, f"events[{index}]: {violation.reason}: {violation.detail}",
                              index=index, reason=violation.reason)
            if rejected and event["id"] in rejected:
                return self._rejection(index)
        return None

    def _rejection(self, index: int) -> _Response:
        return _error(400, f"events[{index}]: rejected: {self._reject_message}",
                      index=index, reason="rejected")

    def _record(self, pixel_id: str, events: list) -> None:
        with self._lock:
            recorded = self._recorded
            before = len(recorded)
            for event in events:
                if self.fast:       # an _EventKey: only the dedup key is kept
                    key, event = (pixel_id, event.type, event.id), None
                else:
                    key = (pixel_id, event.get("type"), event.get("id"))
                if key not in recorded:
                    recorded[key] = event
            self._stats["events_received"] += len(events)
            self._stats["duplicates"] += len(events) - (len(recorded) - before)

    # ----- admin endpoints ------------------------------------------------------------------
    def _handle_admin(self, method: str, path: str, query: str, body: bytes | None) -> _Response:
        action = path[len(ADMIN_PREFIX):]
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "Request body is not valid JSON")
        if not isinstance(params, dict):
            return _error(400, "Request body must be a JSON object")
        try:
            if method == "GET" and action == "events":
                pixel_ids = parse_qs(query).get("pid")
                return _Response(200, self.recorded_events(pixel_ids[0] if pixel_ids else None))
            if method == "GET" and action == "stats":
                stats = self.stats
                stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
                return _Response(200, stats)
            if method == "GET" and action == "requests":
                return _Response(200, [list(entry) for entry in self.request_log])
            if method == "GET" and action == "health":
                return _Response(200, {"ok": True})
            if method == "POST" and action == "faults":
                self.inject(str(params.get("kind")), rate=float(params.get("rate", 0.0)),
                            count=int(params.get("count", 0)),
                            retry_after=params.get("retry_after"), seed=params.get("seed"),
                            latency_s=params.get("latency_s"))
                return _Response(200, {"ok": True})
            if method == "POST" and action == "reject":
                self.reject_event_ids([str(i) for i in params.get("ids", [])],
                                      **({"message": params["message"]}
                                         if "message" in params else {}))
                return _Response(200, {"ok": True})
            if method == "POST" and action == "latency":
                self.set_latency(float(params.get("seconds", 0.0)))
                return _Response(200, {"ok": True})
            if method == "POST" and action == "reset":
                self.reset()
                return _Response(200, {"ok": True})
        except (TypeError, ValueError) as error:
            return _error(400, str(error))
        return _error(404, f"No admin endpoint {method} {path}")


class _EventKey(msgspec.Struct):
    """What fast mode reads of an event; the decoder skips every other field unbuilt."""

    type: str | None = None
    id: str | None = None


class _KeysOnlyEnvelope(msgspec.Struct):
    events: list[_EventKey] | msgspec.UnsetType = msgspec.UNSET
    validate_only: Any = msgspec.UNSET
    integration_source: Any = msgspec.UNSET


_KEYS_ONLY_DECODER = msgspec.json.Decoder(_KeysOnlyEnvelope)


def _decode_keys_only(body: bytes) -> dict[str, Any]:
    """Fast mode's parse: the envelope with each event reduced to its (type, id).

    A full parse of a 1,000-event body builds ~30,000 Python objects (6 ms, then as long to
    free them); the emulator shares the benchmark machine's cores with the client it measures,
    so fast mode builds only what recording needs (0.7 ms). The result is a dict shaped like the
    body, so the envelope rules are checked by the same `_check_envelope`.
    """
    envelope = _KEYS_ONLY_DECODER.decode(body)
    return {name: value for name in _KeysOnlyEnvelope.__struct_fields__
            if (value := getattr(envelope, name)) is not msgspec.UNSET}


def _check_envelope(payload: dict) -> _Response | None:
    if "events" not in payload:
        return _error(400, "Missing required field: events")
    events = payload["events"]
    if not isinstance(events, list):
        return _error(400, "Field events must be an array")
    if not events:
        return _error(400, f"Field events must hold 1 to {MAX_EVENTS_PER_REQUEST} events")
    if len(events) > MAX_EVENTS_PER_REQUEST:
        return _error(400, f"Too many events: {len(events)} (max {MAX_EVENTS_PER_REQUEST})")
    validate_only = payload.get("validate_only", False)
    if not isinstance(validate_only, bool):
        return _error(400, "Field validate_only must be a boolean")
    source = payload.get("integration_source")
    if source is not None and (not isinstance(source, str)
                               or _INTEGRATION_SOURCE.fullmatch(source) is None):
        return _error(400, "Field integration_source must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"        # keep-alive, so clients' connection pools are exercised
    disable_nagle_algorithm = True       # headers and body go out as separate writes

    def version_string(self) -> str:
        return "capi-emulator"

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.emulator._lock:
            self.emulator._connections.add(self.connection)

    def finish(self) -> None:
        with self.emulator._lock:
            self.emulator._connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        try:
            self._dispatch_unguarded(method)
        except Exception:  # answer like a server would, and keep the traceback in the log
            logger.exception("emulator failed on %s %s", method, self.path)
            self._respond(_error(500, "Internal emulator error"), close=True)

    def _dispatch_unguarded(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if body is _UNREADABLE:
            return
        if url.path.startswith(ADMIN_PREFIX):
            response = self.emulator._handle_admin(method, url.path, url.query, body)
        elif url.path == EVENTS_PATH and method == "POST":
            response = self.emulator._handle_events(self.headers.get("Authorization"),
                                                    url.query, body)
        elif url.path == EVENTS_PATH:
            response = _error(405, f"Method {method} not allowed; use POST")
        else:
            response = _error(404, f"No endpoint {url.path}")
        self._respond(response)

    def _read_body(self) -> bytes | None | object:
        """The body; None when it is larger than the emulator's limit (read and discarded)."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.headers.get("Transfer-Encoding"):
                self._respond(_error(411, "Content-Length required"), close=True)
                return _UNREADABLE
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._respond(_error(400, "Invalid Content-Length"), close=True)
            return _UNREADABLE
        if length > self.emulator.max_body_bytes:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            return None
        return self.rfile.read(length)

    def _respond(self, response: _Response, close: bool = False) -> None:
        if not response.send:
            self.close_connection = True   # socketserver closes the socket: no status line
            return
        body = json.dumps(response.payload, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.debug("%s - " + format, self.address_string(), *args)


_UNREADABLE = object()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.emulator",
        description="Local OpenAI Conversions API emulator on 127.0.0.1 (for tests and for "
                    "checking a mapping offline). Admin: GET /_emulator/events, /_emulator/stats.")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--api-key", default="sk-svcacct-test",
                        help="the Conversions API key the emulator accepts")
    parser.add_argument("--pixel-id", action="append", dest="pixel_ids",
                        help="a pixel id the emulator knows (repeatable; default px_test)")
    parser.add_argument("--revoked-key", action="append", default=[],
                        help="a key answered with 401 API key revoked (repeatable)")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every answer by this many milliseconds")
    parser.add_argument("--fast", action="store_true",
                        help="benchmark mode: read only each event's type and id (no per-event"
                             " validation), keep only dedup keys")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    args = parser.parse_args(argv)

    emulator = Emulator(args.api_key, args.pixel_ids or ["px_test"], args.port,
                        latency_s=args.latency_ms / 1000.0, fast=args.fast,
                        revoked_keys=args.revoked_key, max_body_bytes=args.max_body_bytes)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with emulator:
        print(f"listening on {emulator.url}", flush=True)
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    print(json.dumps(emulator.stats, default=str), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
