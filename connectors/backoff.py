"""Backoff for transient failures: the retry budget, Retry-After, and the shared 429 limiter.

Used by `connectors.capi_client`; kept apart so the response policy there reads on one screen.

Nothing here waits without a bound: a Retry-After of `100000`, `inf` or `1e400` is a wait past
the request's budget (the request ends as `retries_exhausted` at once), and the shared "not
before" instant is capped at half a retry budget from now, so one answer cannot stall every
thread, and a request that waits the hold out still has half its budget left to be sent.
"""
from __future__ import annotations

import dataclasses
import email.utils
import math
import random
import threading
import time
from datetime import datetime, timezone

from transforms.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Budget for transient failures of one request: attempts (first try included) and time."""

    max_attempts: int = 8
    max_elapsed_s: float = 300.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if min(self.max_elapsed_s, self.initial_backoff_s, self.max_backoff_s) < 0:
            raise ConfigError("RetryPolicy durations must not be negative")

    def backoff_s(self, retry_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, initial * 2**(n-1))] for the n-th retry."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (retry_number - 1))
        return rng.uniform(0.0, ceiling)


DEFAULT_RETRY_POLICY = RetryPolicy()


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    None when absent or unreadable (garbage, NaN): the client's own backoff applies. `inf` for
    a wait too long to represent ("inf", "1e400"): the caller compares it with its budget.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc).timestamp() if now_s is None else now_s
    return max(0.0, when.timestamp() - now)


class AdaptiveLimiter:
    """Shared by every thread of one client: AIMD on concurrency plus a "not before" instant.

    A 429 (or 503) halves the number of requests allowed in flight (never below one); each
    success adds 1/limit, i.e. about one slot per round of successful requests. A Retry-After
    holds back every thread, not only the one that received it, for at most `max_hold_s`
    (the client passes half its retry budget).
    """

    def __init__(self, max_in_flight: int,
                 max_hold_s: float = DEFAULT_RETRY_POLICY.max_elapsed_s / 2):
        self._max = float(max_in_flight)
        self._limit = float(max_in_flight)
        self._max_hold_s = max_hold_s
        self._in_flight = 0
        self._not_before = 0.0
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        with self._cond:
            return max(1, int(self._limit))

    def acquire(self, deadline: float = math.inf) -> bool:
        """Takes a slot once "not before" has passed; False, at once, when that instant is
        past `deadline` (a `time.monotonic()` value), or when no slot frees up before it."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._not_before > deadline:
                    return False
                wait_s = self._not_before - now
                if wait_s > 0:
                    self._cond.wait(wait_s)
                elif self._in_flight < max(1, int(self._limit)):
                    self._in_flight += 1
                    return True
                elif now >= deadline:
                    return False
                else:
                    self._cond.wait(None if deadline == math.inf else deadline - now)

    @property
    def not_before_s(self) -> float:
        """Seconds until requests may be sent again (0 when they may be sent now)."""
        with self._cond:
            return max(0.0, self._not_before - time.monotonic())

    def release(self, status: int | None, retry_after_s: float | None) -> None:
        with self._cond:
            self._in_flight -= 1
            if status in (429, 503):
                self._limit = max(1.0, self._limit / 2)
            elif status is not None and 200 <= status < 300:
                self._limit = min(self._max, self._limit + 1.0 / self._limit)
            if retry_after_s is not None:
                hold_s = min(retry_after_s, self._max_hold_s)    # also caps inf
                self._not_before = max(self._not_before, time.monotonic() + hold_s)
            self._cond.notify_all()
