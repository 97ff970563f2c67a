"""Fixtures for the connector tests: a real PostgreSQL server for the SQL source.

The emulator fixture is shared by every package and lives in tests/conftest.py.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.connectors.postgres import PostgresServer, PostgresUnavailable


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
