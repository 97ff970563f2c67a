"""Fixtures shared by every test package."""
from __future__ import annotations

import pytest

from connectors.emulator import Emulator

EMULATOR_API_KEY = "sk-svcacct-test"
EMULATOR_PIXEL_ID = "px_test"


@pytest.fixture
def emulator():
    """A running CAPI emulator on a free loopback port, key EMULATOR_API_KEY, pixel px_test."""
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID) as running:
        yield running
