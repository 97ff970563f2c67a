"""Request planning: group mapped events into requests of at most `batch_size`, per pixel.

A request never carries two events with the same dedup key (pixel, event name, id; see
`transforms.events.dedup_key`): the API would count them once
anyway, and a duplicate inside an all-or-nothing batch is a needless risk. Later duplicates are
dropped and counted (reason `duplicate`). Pure Python: the Beam wrapper lives in pipeline/.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable

from transforms.events import (
    MAX_EVENTS_PER_REQUEST,
    MappedEvent,
    dedup_key,
    event_of,
    pixel_id_of,
)


class RequestBatcher:
    """Accumulates events per pixel and hands out full requests as soon as they fill up.

    >>> batcher = RequestBatcher(batch_size=2)
    >>> batcher.add(e1); batcher.add(e2)   # -> [[e1, e2]] once two distinct events arrived
    """

    def __init__(self, batch_size: int = MAX_EVENTS_PER_REQUEST):
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"batch_size must be within 1..{MAX_EVENTS_PER_REQUEST}, got {batch_size}")
        self.batch_size = batch_size
        self.duplicates = 0
        self._open: dict[str | None, tuple[list[MappedEvent], set[tuple]]] = {}

    def add(self, mapped: MappedEvent) -> list[MappedEvent] | None:
        """Adds one event; returns a full request when this event completed one, else None."""
        open_request = self._open.get(mapped.pixel_id)
        if open_request is None:     # (not setdefault: it would build a list and a set per event)
            open_request = self._open[mapped.pixel_id] = ([], set())
        batch, seen = open_request
        key = dedup_key(mapped.pixel_id, mapped.event)
        if key in seen:
            self.duplicates += 1
            return None
        seen.add(key)
        batch.append(mapped)
        if len(batch) < self.batch_size:
            return None
        del self._open[mapped.pixel_id]
        return batch

    def add_all(self, events: Iterable[MappedEvent]) -> list[list[MappedEvent]]:
        """`add` for each event, in order; the full requests they completed."""
        events = list(events)
        pixel_ids = set(map(pixel_id_of, events))
        if len(pixel_ids) != 1:
            return [batch for batch in map(self.add, events) if batch is not None]
        # One pixel (the common case): the same steps as add, without a call per event.
        pixel_id = pixel_ids.pop()
        batch, seen = self._open.get(pixel_id) or ([], set())
        full = []
        size, duplicates = self.batch_size, 0
        for mapped, key in zip(events, map(dedup_key, itertools.repeat(pixel_id),
                                           map(event_of, events)), strict=True):
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            batch.append(mapped)
            if len(batch) == size:
                full.append(batch)
                self._open.pop(pixel_id, None)   # as add: a new request opens at the end
                batch, seen = [], set()
        if batch:
            self._open[pixel_id] = (batch, seen)
        self.duplicates += duplicates
        return full

    def flush(self) -> list[list[MappedEvent]]:
        """Returns every partly filled request and starts afresh."""
        batches = [batch for batch, _ in self._open.values() if batch]
        self._open = {}
        return batches
