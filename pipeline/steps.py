"""Thin Beam wrappers around the pure core in transforms/: map, batch, dedupe, replay, account.

Each DoFn keeps per-row work in plain Python and talks to Beam only to emit elements and bump
counters in namespace "capi" (names in transforms/metrics.py).
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.coders import EventList
from transforms import metrics, reasons
from transforms.batching import RequestBatcher
from transforms.deadletter import DEAD_LETTERS, DeadLetter
from transforms.events import MappedEvent
from transforms.normalize import as_text
from transforms.validate import validate_event

LOG = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Progress:
    """Per-process running totals, logged every `interval_s` seconds while the job runs."""

    _lock = threading.Lock()
    _totals: Counter = Counter()
    _started = time.monotonic()
    _last_log = time.monotonic()

    @classmethod
    def add(cls, interval_s: float, **figures: int) -> None:
        with cls._lock:
            cls._totals.update(figures)
            now = time.monotonic()
            if interval_s <= 0 or now - cls._last_log < interval_s:
                return
            cls._last_log = now
            totals, elapsed = dict(cls._totals), now - cls._started
        LOG.info("progress (worker %d): rows read %d, accepted %d, dead-lettered %d, %.0f rows/s",
                 os.getpid(), totals.get("rows", 0), totals.get("accepted", 0),
                 totals.get("dead", 0), totals.get("rows", 0) / max(elapsed, 1e-9))


def tune_gc_for_batch_work() -> None:
    """Keeps the garbage collector from costing as much as the mapping itself on a worker.

    Mapping allocates many short-lived dicts, so full collections run often, and each walked
    everything the worker had loaded (Beam, pyarrow, the mapping: ~170k objects that live as long
    as the worker). Frozen, those are skipped; a larger first-generation threshold makes the
    young collections rarer. Measured on 200k rows: mapping CPU 14 s -> 8 s (no GC at all: 7.8 s).
    Garbage is collected first, so only live objects are frozen (they are still freed by
    reference counting when dropped; only a cycle among them would outlive the worker).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _flush_counts(counts: Counter, name_of) -> None:
    for name, value in counts.items():
        if value:
            Metrics.counter(metrics.NAMESPACE, name_of(name)).inc(value)
    counts.clear()


class MapRowsToEvents(beam.DoFn):
    """RowChunk -> one list of MappedEvent per chunk; dead letters on the tagged output.

    Rows whose event time is before `since_ms` were sent by an earlier run: skipped and counted
    (`before_since`), never sent twice on purpose.
    """

    def __init__(self, plan, since_ms: int | None = None, progress_s: float = 10.0):
        self._plan = plan
        self._since_ms = since_ms
        self._progress_s = progress_s

    def setup(self):
        from transforms.columnar import ColumnarMapper
        self._mapper = ColumnarMapper(self._plan)
        self._skips: Counter = Counter()
        tune_gc_for_batch_work()

    def process(self, chunk):
        events, dead = [], 0
        if chunk.batch is not None:     # Parquet: mapped column-wise from the Arrow batch
            results = self._mapper.map_batch(chunk.batch, chunk.sources)
        else:                           # row dicts: read into columns, then mapped the same way
            results = self._mapper.map_rows(chunk.rows, chunk.sources)
        for result in results:
            if result.event is not None:
                if self._since_ms is not None and \
                        result.event.event.get("timestamp_ms", 0) < self._since_ms:
                    self._skips["before_since"] += 1
                else:
                    events.append(result.event)
            elif result.dead_letter is not None:
                dead += 1
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, result.dead_letter)
            else:
                self._skips[result.skipped] += 1
        Metrics.counter(metrics.NAMESPACE, metrics.ROWS_READ).inc(len(chunk))
        Progress.add(self._progress_s, rows=len(chunk), dead=dead)
        if events:
            yield EventList(events)

    def finish_bundle(self):
        _flush_counts(self._skips, metrics.skipped)
        _flush_counts(self._mapper.counters, metrics.mapper)


def _source_order(source: str) -> tuple[str, int]:
    """'export.csv#row=17' -> ('export.csv', 17): the order rows had in their source."""
    origin, _, number = source.rpartition("#row=")
    return (origin, int(number)) if origin and number.isdigit() else (source, 0)


class KeyRowsByGroup(beam.DoFn):
    """RowChunk -> (group key, [(source order, row, source), ...]) per key of the chunk.

    Rows of one group that are adjacent (Shopify's lines of one order) meet in the chunk, so the
    shuffle after this carries one element per group per chunk, not one per row; rows of a group
    spread over chunks or files meet in the shuffle. A row with no key is a group of its own.
    """

    def __init__(self, plan):
        self._plan = plan

    def process(self, chunk):
        key_of = self._plan.group_by.get
        groups: dict = {}
        for row, source in zip(chunk.rows, chunk.sources, strict=True):
            try:
                key = as_text(key_of(row))
            except Exception:  # noqa: BLE001 - a bad key value: the row is mapped on its own
                key = None
            groups.setdefault(("key", key) if key is not None else ("row", source), []).append(
                (_source_order(source), row, source))
        Metrics.counter(metrics.NAMESPACE, metrics.ROWS_READ).inc(len(chunk))
        yield from groups.items()


class MapGroupsToEvents(MapRowsToEvents):
    """(group key, partial groups) -> one event per group, from its rows in source order.

    The group's other rows are counted `skipped.grouped_into_event` (so the report reconciles);
    a group that is skipped (filter, consent, exclude) counts each of its rows as skipped.
    """

    def process(self, keyed):
        _, partials = keyed
        members = sorted((member for partial in partials for member in partial),
                         key=lambda member: member[0])
        rows = [row for _, row, _ in members]
        result = self._mapper.map_group(rows, [source for _, _, source in members])
        if result.skipped is not None:
            self._skips[result.skipped] += len(rows)
            return
        if len(rows) > 1:
            self._skips[reasons.GROUPED] += len(rows) - 1
        if result.dead_letter is not None:
            Progress.add(self._progress_s, rows=len(rows), dead=1)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, result.dead_letter)
            return
        Progress.add(self._progress_s, rows=len(rows))
        if self._since_ms is not None and \
                result.event.event.get("timestamp_ms", 0) < self._since_ms:
            self._skips["before_since"] += 1
            return
        yield EventList([result.event])


class ReplayDeadLetters(beam.DoFn):
    """DeadLetter records read back as input -> their events, checked again before sending.

    A record without an event (mapping failed before one existed) cannot be re-sent: it is
    dead-lettered again with its original reason, so the count still reconciles.
    """

    def process(self, record: DeadLetter):
        Metrics.counter(metrics.NAMESPACE, metrics.ROWS_READ).inc()
        if not record.event:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, record)
            return
        violation = validate_event(record.event, _now_ms())
        if violation is not None:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter(
                violation.reason, violation.detail, record.event_id, record.source, record.event,
                record.pixel_id))
            return
        yield EventList([MappedEvent(record.pixel_id, record.event, record.source)])


class BatchRequests(beam.DoFn):
    """Lists of MappedEvent -> requests of <= batch_size events per pixel, no dedup key twice.

    Batches fill across the whole bundle and the remainder is flushed in finish_bundle, so a
    bundle of N events costs ceil(N / batch_size) requests per pixel, with no shuffle (the
    naive GroupIntoBatches-on-a-random-key pipeline holds the whole input in memory).
    """

    def __init__(self, batch_size: int):
        self._batch_size = batch_size

    def start_bundle(self):
        self._batcher = RequestBatcher(self._batch_size)

    def process(self, events: Iterable[MappedEvent]):
        for batch in self._batcher.add_all(events):
            yield EventList(batch)

    def finish_bundle(self):
        for batch in self._batcher.flush():
            yield WindowedValue(EventList(batch), GlobalWindow().max_timestamp(), [GlobalWindow()])
        if self._batcher.duplicates:
            Metrics.counter(metrics.NAMESPACE, metrics.skipped(reasons.DUPLICATE)).inc(
                self._batcher.duplicates)


class DedupeRunWide(beam.PTransform):
    """Keeps the first event per dedup key (pixel, event name, id) across the whole run (a shuffle)."""

    def expand(self, event_lists):
        return (event_lists
                | "FlattenEventLists" >> beam.FlatMap(lambda events: events)
                | "KeyByDedupKey" >> beam.Map(lambda m: (m.dedup_key, m))
                | "GroupByDedupKey" >> beam.GroupByKey()
                | "KeepFirst" >> beam.ParDo(_KeepFirstOfGroup()))


class _KeepFirstOfGroup(beam.DoFn):
    def process(self, keyed):
        _, events = keyed
        iterator = iter(events)
        first = next(iterator)
        repeats = sum(1 for _ in iterator)
        if repeats:
            Metrics.counter(metrics.NAMESPACE, metrics.skipped(reasons.DUPLICATE)).inc(repeats)
        yield EventList([first])


class CountUnreadableRows(beam.DoFn):
    """Rows the source could not parse still count as read: they end as dead letters."""

    def process(self, record: DeadLetter):
        Metrics.counter(metrics.NAMESPACE, metrics.ROWS_READ).inc()
        yield record


class WriteDeadLetters(beam.PTransform):
    """DeadLetters -> counted by reason, written as JSON lines to `<prefix>-NNNNN.jsonl`.

    Beam's text sink: each worker writes the records of its bundles to temporary files, renamed
    into place once the run succeeds; nothing is written when there are no dead letters.
    """

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, records):
        return (records
                | "AccountDeadLetters" >> beam.ParDo(AccountDeadLetter())
                | "WriteJsonLines" >> beam.io.WriteToText(
                    self._prefix, file_name_suffix=".jsonl", shard_name_template="-SSSSS",
                    skip_if_empty=True))


class AccountDeadLetter(beam.DoFn):
    """Counts each dead letter by reason (the report's source of truth) and encodes it."""

    def process(self, record: DeadLetter):
        Metrics.counter(metrics.NAMESPACE, metrics.dead_lettered(record.reason)).inc()
        yield record.to_json()


class CountAccepted(beam.DoFn):
    def __init__(self, progress_s: float = 10.0):
        self._progress_s = progress_s

    def process(self, accepted: int):
        Progress.add(self._progress_s, accepted=accepted)
        yield accepted
