"""The attempt deadline's seam on urllib3 (connectors/deadline.py), over plain HTTP and TLS."""
from __future__ import annotations

import socket
import time

import pytest
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connectors.capi_client import CapiClient, RetryPolicy
from connectors.deadline import WATCHED_POOLS, DeadlineAdapter, attempt_deadline
from tests.connectors.hostile import HostileServer, answer, trickle
from tests.connectors.test_capi_client_hostile import KEY, PIXEL, finishes_within, make_events
from transforms import reasons


def test_the_urllib3_names_the_seam_relies_on():
    # An upgrade that renames one of these fails here, not in a user's run.
    assert set(urllib3.PoolManager().pool_classes_by_scheme) == {"http", "https"}
    assert HTTPConnectionPool.ConnectionCls is HTTPConnection
    assert HTTPSConnectionPool.ConnectionCls is HTTPSConnection
    for method in ("connect", "request"):
        assert callable(getattr(HTTPConnection, method))
        assert callable(getattr(HTTPSConnection, method))
    adapter = DeadlineAdapter()
    assert adapter.poolmanager.pool_classes_by_scheme == WATCHED_POOLS
    assert adapter.proxy_manager_for("http://127.0.0.1:9").pool_classes_by_scheme == WATCHED_POOLS


def test_a_request_that_finishes_in_time_is_untouched():
    with HostileServer(answer(200)) as server, attempt_deadline(5.0) as attempt:
        connection = WATCHED_POOLS["http"]("127.0.0.1", int(server.origin.rsplit(":", 1)[1]))
        response = connection.urlopen("POST", "/v1/events", body=b"{}")
    assert (response.status, attempt.expired) == (200, False)


def test_a_body_trickled_over_tls_is_cut_at_the_deadline(tls, monkeypatch):
    context, ca_file = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    budget = RetryPolicy(max_attempts=2, max_elapsed_s=1.5, initial_backoff_s=0.01,
                         max_backoff_s=0.02)
    with HostileServer(answer(200), trickle(every_s=0.2, length=1000), tls=context) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=budget, read_timeout_s=5.0)
        assert [o.accepted for o in client.deliver(make_events(1))] == [True]   # TLS works
        started = time.monotonic()
        outcomes = finishes_within(10, client.deliver, make_events(2, start=1))

    assert time.monotonic() - started < 2.5
    assert [o.reason for o in outcomes] == [reasons.RETRIES_EXHAUSTED] * 2
    assert "deadline" in outcomes[0].detail


def test_headers_trickled_byte_by_byte_are_cut_too():
    def slow_headers(handler):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
            if handler.server.closing.wait(0.2):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    budget = RetryPolicy(max_attempts=1, max_elapsed_s=1.0)
    with HostileServer(slow_headers) as server:
        client = CapiClient(server.url, PIXEL, KEY, retry=budget, read_timeout_s=5.0)
        started = time.monotonic()
        outcomes = finishes_within(10, client.deliver, make_events(1))

    assert time.monotonic() - started < 2.0
    assert outcomes[0].reason == reasons.RETRIES_EXHAUSTED


def test_the_deadline_shuts_the_socket_of_a_blocked_read():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        with attempt_deadline(0.3) as attempt:
            connection = WATCHED_POOLS["http"]("127.0.0.1", port, timeout=30, retries=False)
            started = time.monotonic()
            with pytest.raises(urllib3.exceptions.HTTPError):
                connection.urlopen("POST", "/", body=b"{}")     # nobody ever answers
        assert attempt.expired and time.monotonic() - started < 2.0
    finally:
        listener.close()
