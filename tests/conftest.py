"""Fixtures shared by every test package: the CAPI emulator, a real PostgreSQL server and a
self-signed TLS certificate for hostile HTTPS servers."""
from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator

import pytest

from connectors.emulator import Emulator
from tests.connectors.postgres import PostgresServer, PostgresUnavailable

EMULATOR_API_KEY = "sk-svcacct-test"
EMULATOR_PIXEL_ID = "px_test"


@pytest.fixture
def emulator():
    """A running CAPI emulator on a free loopback port, key EMULATOR_API_KEY, pixel px_test."""
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID) as running:
        yield running


@pytest.fixture(scope="session")
def tls(tmp_path_factory):
    """(server context, CA file) for a self-signed certificate of 127.0.0.1 made by openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, str(cert)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A `postgresql://user:password@127.0.0.1:<port>/postgres` URL of a throwaway server
    (tests/connectors/postgres.py), stopped and deleted at the end of the session.

    Fails (never skips) when PostgreSQL cannot start: the message says what to install.
    """
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as error:
        pytest.fail(f"Cannot start a PostgreSQL server for the SQL source tests: {error}",
                    pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()
