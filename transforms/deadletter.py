"""The dead-letter record (contract section 7): one JSON line per row that was not delivered."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from transforms.masking import mask_secrets

# The tagged output that carries DeadLetter records out of a step (sources, mapper, sink).
DEAD_LETTERS = "dead_letters"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A row or event that could not be delivered, with a stable reason code.

    `event` is the mapped, already-hashed event when mapping got that far (so the record can be
    replayed as input); it never holds clear-text PII. `source` says where the row came from,
    e.g. "gs://bucket/export-0001.parquet#row=17" or "sql:orders#row=42". `pixel_id` is the
    pixel the event was meant for when the mapping chose one per row (None = the run's pixel).
    """

    reason: str
    detail: str
    event_id: str | None = None
    source: str | None = None
    event: dict[str, Any] | None = None
    pixel_id: str | None = None

    def __post_init__(self) -> None:
        # The detail may quote an API answer or a URL; the event is left as it is (replayable).
        for name in ("detail", "source"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, mask_secrets(value))

    def to_json(self) -> str:
        record = dataclasses.asdict(self)
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (JSON input may escape one: "\ud800") has no UTF-8 form and
            # would crash the dead-letter writer; escaped, the line is ASCII and round-trips.
            return json.dumps(record, separators=(",", ":"))
        return line

    @classmethod
    def from_json(cls, line: str) -> DeadLetter:
        return cls.from_record(json.loads(line))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DeadLetter:
        """The record of one parsed JSON line; AttributeError when it is not an object."""
        return cls(**{f.name: record.get(f.name) for f in dataclasses.fields(cls)})
