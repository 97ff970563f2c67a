"""Fault injection: what the emulator does to a request instead of (or besides) answering it.

Faults apply to POST /v1/events only and are decided before auth, like a proxy in front of the
API would behave: 429/5xx and "drop" record nothing; "lost_response" processes the request
normally (so a valid batch IS recorded) and then closes the connection without answering;
"latency" answers normally after a delay.
"""
from __future__ import annotations

import dataclasses
import random

FAULT_KINDS = frozenset({"429", "500", "502", "503", "504", "drop", "lost_response", "latency"})
DEFAULT_LATENCY_FAULT_S = 1.0

# The kinds answered with an HTTP error instead of the API's answer, and the message they carry.
ERROR_MESSAGES = {
    "429": "Rate limit exceeded (injected fault)",
    "500": "Internal server error (injected fault)",
    "502": "Bad gateway (injected fault)",
    "503": "Service unavailable (injected fault)",
    "504": "Gateway timeout (injected fault)",
}


@dataclasses.dataclass
class Fault:
    """One injected fault: fires on the next `count` requests, or at random with `rate`."""

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

    @property
    def error_headers(self) -> tuple[tuple[str, str], ...]:
        """429 always carries Retry-After (default "0"); 5xx only when one was given."""
        if self.kind == "429" or self.retry_after is not None:
            return (("Retry-After", self.retry_after or "0"),)
        return ()


def make_fault(kind: str, *, rate: float = 0.0, count: int = 0,
               retry_after: str | int | float | None = None, seed: int | None = None,
               latency_s: float | None = None) -> Fault:
    """Check the arguments of `Emulator.inject` and build the fault (see its docstring)."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
    if not 0.0 <= rate <= 1.0 or count < 0:
        raise ValueError("rate must be within [0, 1] and count must not be negative")
    if count == 0 and rate == 0.0:
        count = 1
    return Fault(kind=kind, count=count, rate=rate,
                 retry_after=None if retry_after is None else str(retry_after),
                 latency_s=DEFAULT_LATENCY_FAULT_S if latency_s is None else latency_s,
                 rng=random.Random(seed))


def next_fault(faults: list[Fault]) -> Fault | None:
    """The first fault that fires for this request (the caller holds the emulator's lock)."""
    for fault in faults:
        if fault.fires():
            if fault.exhausted:
                faults.remove(fault)
            return fault
    return None
