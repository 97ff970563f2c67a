"""The delivery sink: a DoFn that sends request-sized batches through `CapiClient`.

Input elements are batches (`list[MappedEvent]`, at most 1,000, no duplicate dedup key). The
main output is the number of events the API accepted per batch; every event that was not
accepted leaves on the tagged output "dead_letters" as a `DeadLetter` carrying its reason, id,
source and the event itself (so the record can be replayed). Counters (names in
transforms/metrics.py): events accepted, requests, retries and answers by status; dead letters are
counted where they are written.

Up to `max_in_flight` batches are in flight at once on a thread pool: `process()` submits and
emits whatever has finished, blocking on the oldest only when the pool is full; `finish_bundle()`
waits for the rest. Beam metrics are updated on the bundle's own thread (metric containers are
thread-local), never from the pool threads.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from connectors.capi_client import (
    DEFAULT_RETRY_POLICY,
    CapiClient,
    DeliveryResult,
    RetryPolicy,
    parse_endpoint,
)
from connectors.secrets import DEFAULT_API_KEY_ENV, read_api_key
from transforms import metrics
from transforms.coverage import count_sent
from transforms.deadletter import DEAD_LETTERS, DeadLetter
from transforms.events import DEFAULT_ENDPOINT, MappedEvent, event_of, pixel_id_of
from transforms.reasons import MAPPING_ERROR

_LOG = logging.getLogger(__name__)
NO_PIXEL_DETAIL = ("pixel_id: the mapping's pixel_id is empty in this row and no --pixel-id is "
                   "set to fall back on")


@dataclasses.dataclass
class _InFlight:
    """One submitted batch and where its results go (the input element's window/timestamp)."""

    future: futures.Future[DeliveryResult]
    events: list[MappedEvent]
    window: Any
    timestamp: Any


class DeliverBatches(beam.DoFn):
    """Delivers batches of MappedEvent; emits accepted counts and tagged DeadLetter records.

    The API key is read on the worker in `setup()` from the environment variable named by
    `api_key_env`, or from the Secret Manager resource `api_key_secret` when given; it is never
    an option value and never pickled with the DoFn.
    """

    DEAD_LETTERS = DEAD_LETTERS

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, default_pixel_id: str | None = None,
                 api_key_env: str | None = DEFAULT_API_KEY_ENV,
                 api_key_secret: str | None = None, validate_only: bool = False,
                 max_in_flight: int = 4, retry: RetryPolicy = DEFAULT_RETRY_POLICY,
                 connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0):
        self._endpoint = parse_endpoint(endpoint)   # fails at construction, before any read
        self._default_pixel_id = default_pixel_id
        self._api_key_env = api_key_env
        self._api_key_secret = api_key_secret
        self._validate_only = validate_only
        self._max_in_flight = max_in_flight
        self._retry = retry
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._api_key: str | None = None
        self._clients: dict[str, CapiClient] = {}
        self._executor: futures.ThreadPoolExecutor | None = None
        self._pending: list[_InFlight] = []

    def setup(self) -> None:
        self._api_key = read_api_key(self._api_key_env, self._api_key_secret)
        self._clients = {}
        self._executor = futures.ThreadPoolExecutor(max_workers=self._max_in_flight,
                                                    thread_name_prefix="capi-deliver")

    def start_bundle(self) -> None:
        self._pending = []

    def process(self, batch: list[MappedEvent], window=beam.DoFn.WindowParam,
                timestamp=beam.DoFn.TimestampParam) -> Iterator[Any]:
        if not self._default_pixel_id and not all(map(pixel_id_of, batch)):
            batch = yield from self._without_pixel(batch)
        for pixel_id, events in self._by_pixel(batch):
            client = self._client(pixel_id)
            future = self._executor.submit(client.deliver_batch,
                                           list(map(event_of, events)), pixel_id)
            self._pending.append(_InFlight(future, events, window, timestamp))
        yield from self._emit_finished(keep_at_most=self._max_in_flight - 1)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._emit_finished(keep_at_most=0)

    def teardown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for client in self._clients.values():
            client.close()
        self._clients = {}

    # -- helpers ------------------------------------------------------------------------------

    def _by_pixel(self, batch: Sequence[MappedEvent]) -> list[tuple[str, list[MappedEvent]]]:
        pixel_ids = set(map(pixel_id_of, batch))
        if len(pixel_ids) == 1:     # the common case: one pixel (or --pixel-id for all)
            pixel_id = next(iter(pixel_ids)) or self._default_pixel_id
            if pixel_id:
                return [(pixel_id, batch)]
        groups: dict[str, list[MappedEvent]] = {}
        for mapped in batch:
            groups.setdefault(mapped.pixel_id or self._default_pixel_id, []).append(mapped)
        return list(groups.items())

    def _without_pixel(self, batch: Sequence[MappedEvent]):
        """Yields a `mapping_error` dead letter for each event whose row gave no pixel id (the
        mapping's `pixel_id` was empty) when there is no --pixel-id to fall back on; returns
        the rest. Without a mapped pixel_id nor --pixel-id the run never starts (run.plan_run)."""
        kept = []
        for mapped in batch:
            if mapped.pixel_id:
                kept.append(mapped)
                continue
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, DeadLetter(
                reason=MAPPING_ERROR, detail=NO_PIXEL_DETAIL, event_id=_event_id(mapped),
                source=mapped.source, event=mapped.event))
        return kept

    def _client(self, pixel_id: str) -> CapiClient:
        client = self._clients.get(pixel_id)
        if client is None:
            client = CapiClient(self._endpoint, pixel_id, self._api_key,
                                validate_only=self._validate_only, retry=self._retry,
                                connect_timeout_s=self._connect_timeout_s,
                                read_timeout_s=self._read_timeout_s,
                                max_in_flight=self._max_in_flight)
            self._clients[pixel_id] = client
        return client

    def _emit_finished(self, keep_at_most: int) -> Iterator[Any]:
        """Emits finished batches in submission order, waiting until at most N are left."""
        while self._pending:
            oldest = self._pending[0]
            if not oldest.future.done() and len(self._pending) <= keep_at_most:
                return
            try:
                result = oldest.future.result()   # blocks; AuthenticationError propagates
            except BaseException:
                for in_flight in self._pending:
                    in_flight.future.cancel()
                self._pending = []
                raise
            self._pending.pop(0)
            yield from self._outputs(oldest, result)

    def _outputs(self, in_flight: _InFlight, result: DeliveryResult) -> Iterator[Any]:
        def windowed(value: Any) -> WindowedValue:
            return WindowedValue(value, in_flight.timestamp, (in_flight.window,))

        if result.all_accepted:     # the common case: no look at each outcome
            sent_events = list(map(event_of, in_flight.events))
        else:
            sent_events = []        # what OpenAI can match on: counted per delivered event
            for mapped, outcome in zip(in_flight.events, result.outcomes, strict=True):
                if outcome.accepted:
                    sent_events.append(mapped.event)
                    continue
                yield beam.pvalue.TaggedOutput(self.DEAD_LETTERS, windowed(DeadLetter(
                    reason=outcome.reason, detail=outcome.detail or "",
                    event_id=_event_id(mapped), source=mapped.source, event=mapped.event,
                    pixel_id=mapped.pixel_id)))
        accepted = len(sent_events)
        _counter(metrics.EVENTS_ACCEPTED).inc(accepted)
        _counter(metrics.REQUESTS).inc(result.requests)
        _counter(metrics.RETRIES).inc(result.retries)
        if result.suspicious_2xx_bodies:
            _counter(metrics.SUSPICIOUS_2XX_BODIES).inc(result.suspicious_2xx_bodies)
        for label, count in result.statuses.items():
            _counter(metrics.http_status(label)).inc(count)
        sent: collections.Counter[str] = collections.Counter()
        count_sent(sent_events, sent)
        for name, count in sent.items():
            _counter(name).inc(count)
        yield windowed(accepted)


def _counter(name: str):
    return Metrics.counter(metrics.NAMESPACE, name)


def _event_id(mapped: MappedEvent) -> str | None:
    event_id = mapped.event.get("id")
    return event_id if isinstance(event_id, str) else None
