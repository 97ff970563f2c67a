"""Request planning: group mapped events into requests of at most `batch_size`, per pixel.

A request never carries two events with the same dedup key (pixel, event name, id; see
`transforms.events.dedup_key`): the API would count them once
anyway, and a duplicate inside an all-or-nothing batch is a needless risk. Later duplicates are
dropped and counted (reason `duplicate`). Pure Python: the Beam wrapper lives in pipeline/.
"""
from __future__ import annotations

from collections.abc import Iterable

from transforms.events import MAX_EVENTS_PER_REQUEST, MappedEvent, dedup_key


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
        full = []
        for mapped in events:
            batch = self.add(mapped)
            if batch is not None:
                full.append(batch)
        return full

    def flush(self) -> list[list[MappedEvent]]:
        """Returns every partly filled request and starts afresh."""
        batches = [batch for batch, _ in self._open.values() if batch]
        self._open = {}
        return batches
