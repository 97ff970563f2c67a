"""What every source emits: rows in chunks, each row with a reference to where it came from.

A source reference is `<origin>#row=<N>` with N counted from 1, for example
`gs://bucket/export-0001.parquet#row=17` or `sql:orders#row=42`. It is what a dead-letter record's
`source` field carries, so a user can find the row again.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from transforms.arrow_rows import (  # noqa: F401 - re-exported for the sources
    arrow_batch_to_rows,
    arrow_values,
    parquet_batch_to_rows,
    row_to_plain,
    to_plain,
)


class RowChunk:
    """Up to `chunk_size` rows travelling as one Beam element (per-row Beam overhead is large).

    `rows` and `sources` are parallel lists: `sources[i]` says where `rows[i]` came from.
    A chunk read from Parquet keeps the Arrow record batch instead (`RowChunk.of_arrow`): the
    columnar mapper reads it without building a dict per row, and `rows`/`sources` are built
    only when something asks for them.
    """

    __slots__ = ("_rows", "_sources", "batch", "_origin", "_first_row")

    def __init__(self, rows: list[dict[str, Any]], sources: list[str]) -> None:
        if len(rows) != len(sources):
            raise ValueError(
                f"RowChunk needs one source per row: {len(rows)} rows, {len(sources)} sources"
            )
        self._rows: list[dict[str, Any]] | None = rows
        self._sources: list[str] | None = sources
        self.batch: pa.RecordBatch | None = None
        self._origin = ""
        self._first_row = 1

    @classmethod
    def of_arrow(cls, batch: pa.RecordBatch, origin: str, first_row: int) -> RowChunk:
        """The rows of `batch`, the first being row `first_row` (from 1) of `origin`."""
        chunk = cls.__new__(cls)
        chunk._rows = chunk._sources = None
        chunk.batch, chunk._origin, chunk._first_row = batch, origin, first_row
        return chunk

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = parquet_batch_to_rows(self.batch)
        return self._rows

    @property
    def sources(self) -> list[str]:
        if self._sources is None:
            origin, first = self._origin, self._first_row
            self._sources = [source_ref(origin, first + offset)
                             for offset in range(self.batch.num_rows)]
        return self._sources

    def __len__(self) -> int:
        return self.batch.num_rows if self._rows is None else len(self._rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowChunk):
            return NotImplemented
        return self.rows == other.rows and self.sources == other.sources

    __hash__ = None  # type: ignore[assignment]  # rows are lists: not hashable

    def __repr__(self) -> str:
        return f"RowChunk(rows={self.rows!r}, sources={self.sources!r})"

    def __reduce__(self):
        if self._rows is None and self.batch.num_columns:   # Arrow IPC drops a bare row count
            return (RowChunk.of_arrow, (self.batch, self._origin, self._first_row))
        return (RowChunk, (self.rows, self.sources))


def source_ref(origin: str, row_number: int) -> str:
    """`source_ref("gs://b/x.parquet", 17)` -> `"gs://b/x.parquet#row=17"` (row numbers from 1)."""
    return f"{origin}#row={row_number}"


class ChunkBuilder:
    """Collects (row, source) pairs and hands out a RowChunk every `chunk_size` rows."""

    def __init__(self, chunk_size: int) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self._rows: list[dict[str, Any]] = []
        self._sources: list[str] = []

    def add(self, row: dict[str, Any], source: str) -> RowChunk | None:
        """Adds a row; returns a full chunk when this row completed one, else None."""
        self._rows.append(row)
        self._sources.append(source)
        if len(self._rows) >= self.chunk_size:
            return self.flush()
        return None

    def flush(self) -> RowChunk | None:
        """The rows collected so far as a chunk (None when there are none)."""
        if not self._rows:
            return None
        chunk = RowChunk(self._rows, self._sources)
        self._rows, self._sources = [], []
        return chunk


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of `batches`, in order, as batches of exactly `rows` rows (the last: the rest).

    Drivers size their batches in bytes (ADBC PostgreSQL) or by their own vector size (DuckDB);
    a RowChunk holds `chunk_size` rows whatever the driver did. Each part of a larger batch is
    copied into buffers of its own: a slice shares its parent's buffers, and pickling it (as
    Beam does between steps) would send the whole parent (8x the bytes for 5,000 of 40,000).
    """
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < rows:
            continue
        joined = pending[0] if len(pending) == 1 else pa.concat_batches(pending)
        offset = 0
        while held - offset >= rows:
            yield _compact(joined, offset, rows)
            offset += rows
        pending = [_compact(joined, offset, held - offset)] if offset < held else []
        held -= offset
    if held:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _compact(batch: pa.RecordBatch, offset: int, rows: int) -> pa.RecordBatch:
    if offset == 0 and rows == batch.num_rows:
        return batch
    return pa.concat_batches([batch.slice(offset, rows)])     # copies the slice's values
