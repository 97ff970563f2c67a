"""A total deadline per HTTP attempt: the seam between the CAPI client and urllib3's connections.

requests' read timeout applies to each socket read, so a server that trickles one byte every
10 s keeps a request open forever under a 60 s read timeout. `DeadlineAdapter` gives each
attempt an absolute deadline: when it passes, the attempt's socket is shut down, the blocked
read returns at once, and the client sees a timeout.

How: the adapter's pools make connections of a subclass that, in `connect()` and `request()`
(urllib3's public connection methods), registers itself with the attempt running on the current
thread; a timer shuts that connection's socket down at the deadline. The urllib3 names it relies
on (`PoolManager.pool_classes_by_scheme`, `HTTPConnectionPool.ConnectionCls`,
`HTTPConnection.connect` / `.request`) are checked by tests/connectors/test_deadline.py, so an
upgrade that moves them fails in CI, not in a user's run.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_CURRENT = threading.local()   # the Attempt running on this thread, if any


class Attempt:
    """One HTTP attempt's deadline; `expired` tells afterwards whether it cut the attempt short."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.expired = False
        self._connection: HTTPConnection | None = None
        self._finished = False
        self._lock = threading.Lock()

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.expired:
                _shut_down(connection)

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            if self._connection is not None:
                _shut_down(self._connection)

    def finish(self) -> None:
        with self._lock:
            self._finished = True


@contextlib.contextmanager
def attempt_deadline(timeout_s: float) -> Iterator[Attempt]:
    """Runs the enclosed request on this thread under a total deadline of `timeout_s`."""
    attempt = Attempt(timeout_s)
    timer = threading.Timer(max(0.0, timeout_s), attempt.expire)
    timer.daemon = True
    previous = getattr(_CURRENT, "attempt", None)
    _CURRENT.attempt = attempt
    timer.start()
    try:
        yield attempt
    finally:
        attempt.finish()
        timer.cancel()
        _CURRENT.attempt = previous


def _shut_down(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also under TLS: it wakes the blocked read in the other
        # thread at once (SSLSocket.shutdown would first tear down its TLS state under it).
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watch_current_attempt(connection: HTTPConnection) -> None:
    attempt = getattr(_CURRENT, "attempt", None)
    if attempt is not None:
        attempt.watch(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _watch_current_attempt(self)
        super().connect()

    def request(self, *args, **kwargs) -> None:  # type: ignore[override]
        _watch_current_attempt(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        _watch_current_attempt(self)
        super().connect()

    def request(self, *args, **kwargs) -> None:  # type: ignore[override]
        _watch_current_attempt(self)
        super().request(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `attempt_deadline` (direct and via an HTTP(S)
    proxy; a SOCKS proxy's connections keep only the per-read timeout)."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(WATCHED_POOLS)
        return manager


def remaining_s(deadline: float) -> float:
    """Seconds left until a `time.monotonic()` deadline (never negative)."""
    return max(0.0, deadline - time.monotonic())
