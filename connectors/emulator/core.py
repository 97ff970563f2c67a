"""The Emulator: its state (recorded events, faults, counters), its lifecycle, and the answer to
POST /v1/events (auth, `pid`, body, the API's rules, all-or-nothing recording)."""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

from connectors.emulator import rules
from connectors.emulator.fast import DecodeError, decode_keys_only
from connectors.emulator.faults import ERROR_MESSAGES, Fault, make_fault, next_fault
from connectors.emulator.responses import Response, error
from connectors.emulator.server import EVENTS_PATH, Handler, Server

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
NO_RESPONSE = 0  # request_log / by_status status for a connection closed without an answer
REJECTION_STATUSES = frozenset({400, 422})

# The recorded events' key (rules.dedup_key): (pixel, type, lower-cased custom_event_name of a
# custom event or None, id), which is the API's (pixel, event name, id).
RecordKey = tuple[str, object, object, object]


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
        self._server: Server | None = None
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
        server = Server(("127.0.0.1", self._requested_port), Handler)
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

    def track_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def forget_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

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
        """Accepted events, one per (pixel, event name, id), the first received, in arrival
        order. The API keeps the first event of a key and ignores later ones, and so does this.

        In fast mode only the dedup key is kept: each event is {"type": .., "id": ..}, plus
        "custom_event_name" for custom events.
        """
        with self._lock:
            items = list(self._recorded.items())
        return [event if event is not None else _key_only_event(key)
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
        fault = make_fault(kind, rate=rate, count=count, retry_after=retry_after, seed=seed,
                           latency_s=latency_s)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Stop injecting faults and rejecting event ids (recorded events are kept)."""
        with self._lock:
            self._faults.clear()
            self._rejected_ids = frozenset()

    def reject_event_ids(self, ids: Iterable[str], message: str = "Event rejected by the API",
                         status: int = 400) -> None:
        """Refuse batches holding these event ids although the events pass the rules, with
        `status` 400 or 422 (an API may answer either for an invalid event)."""
        if status not in REJECTION_STATUSES:
            raise ValueError(f"rejection status must be one of {sorted(REJECTION_STATUSES)}")
        with self._lock:
            self._rejected_ids = frozenset(ids) | self._rejected_ids
            self._reject_message = message
            self._reject_status = status

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
        self._recorded: dict[RecordKey, dict | None] = {}
        self._faults: list[Fault] = []
        self._rejected_ids: frozenset[str] = frozenset()
        self._reject_message = ""
        self._reject_status = 400
        self._stats: Counter[str] = Counter(
            requests=0, events_received=0, events_validated=0, duplicates=0, dropped=0,
            lost_responses=0, max_concurrent_requests=0)
        self._in_flight = 0
        self._by_status: Counter[int] = Counter()
        self._request_log: list[tuple[int, int, bool]] = []

    # ----- POST /v1/events (called from handler threads) -------------------------------------
    def handle_events(self, authorization: str | None, query: str, body: bytes | None
                      ) -> Response:
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
                       ) -> Response:
        with self._lock:
            fault = next_fault(self._faults)
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.latency_s)
        if fault is not None and fault.kind == "drop":
            response, n_events, validate_only = Response(NO_RESPONSE, send=False), 0, False
        elif fault is not None and fault.kind in ERROR_MESSAGES:
            response = error(int(fault.kind), ERROR_MESSAGES[fault.kind])
            response = Response(response.status, response.payload, fault.error_headers)
            n_events, validate_only = 0, False
        else:
            response, n_events, validate_only = self._process(authorization, query, body)
            if fault is not None and fault.kind == "lost_response":
                response = Response(NO_RESPONSE, send=False)
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
                 ) -> tuple[Response, int, bool]:
        """Answer one POST /v1/events: (response, number of events in the body, validate_only)."""
        auth_problem = rules.check_auth(authorization, self._api_key, self._revoked_keys)
        if auth_problem is not None:
            return error(401, auth_problem), 0, False
        pixel_ids = parse_qs(query).get("pid")
        if not pixel_ids:
            return error(400, "Missing required parameter: pid"), 0, False
        pixel_id = pixel_ids[0]
        if pixel_id not in self._pixel_ids:
            return error(400, f"Unknown pixel id: {pixel_id}"), 0, False
        if body is None:
            return error(413, f"Request body too large (max {self.max_body_bytes} bytes)"), 0, False

        try:
            payload = decode_keys_only(body) if self.fast else rules.parse_json(body)
        except DecodeError as problem:       # fast mode: the decoder names the spot
            return error(400, f"Request body does not fit the envelope: {problem}"), 0, False
        except ValueError:
            return error(400, "Request body is not valid JSON"), 0, False
        if not isinstance(payload, dict):
            return error(400, "Request body must be a JSON object"), 0, False
        envelope_problem = rules.check_envelope(payload)
        events = payload.get("events")
        n_events = len(events) if isinstance(events, list) else 0
        validate_only = payload.get("validate_only") is True
        if envelope_problem is not None:
            return error(400, envelope_problem), n_events, validate_only

        event_error = self._check_events(events)
        if event_error is not None:
            return event_error, n_events, validate_only
        if not validate_only:
            self._record(pixel_id, events)
        else:
            with self._lock:
                self._stats["events_validated"] += n_events
        return (Response(200, {"events_received": n_events, "validate_only": validate_only}),
                n_events, validate_only)

    def _check_events(self, events: list) -> Response | None:
        """The first bad event fails the whole batch (all-or-nothing), naming its index."""
        rejected = self._rejected_ids
        if self.fast:  # benchmark mode: events are EventKey, objects by construction
            for index, event in enumerate(events):
                if rejected and event.id in rejected:
                    return self._rejection(index)
            return None
        now_ms = self._clock_ms()
        for index, event in enumerate(events):
            problem = rules.check_event(event, now_ms)
            if problem is not None:
                return error(400, f"events[{index}]: {problem.reason}: {problem.detail}",
                             index=index, reason=problem.reason)
            if rejected and event["id"] in rejected:
                return self._rejection(index)
        return None

    def _rejection(self, index: int) -> Response:
        return error(self._reject_status, f"events[{index}]: rejected: {self._reject_message}",
                     index=index, reason="rejected")

    def _record(self, pixel_id: str, events: list) -> None:
        """Record each event under its key unless the key is already taken: first one wins."""
        with self._lock:
            recorded = self._recorded
            before = len(recorded)
            for event in events:
                if self.fast:       # an EventKey: only the dedup key is kept
                    key = rules.dedup_key(pixel_id, event.type, event.custom_event_name,
                                          event.id)
                    event = None
                else:
                    key = rules.dedup_key(pixel_id, event.get("type"),
                                          event.get("custom_event_name"), event.get("id"))
                if key not in recorded:
                    recorded[key] = event
            self._stats["events_received"] += len(events)
            self._stats["duplicates"] += len(events) - (len(recorded) - before)


def _key_only_event(key: RecordKey) -> dict:
    """What fast mode shows of a recorded event: its dedup key as an event."""
    _, event_type, custom_event_name, event_id = key
    if custom_event_name is not None:
        return {"type": event_type, "id": event_id, "custom_event_name": custom_event_name}
    return {"type": event_type, "id": event_id}
