"""Fixtures for the Aria simulator's own tests: a seeded in-process state (no HTTP)."""

from __future__ import annotations

from datetime import date

import pytest

from simulators.aria.seeding import SeededRun, seed_bill_run
from simulators.aria.state import AriaState

CLIENT_NO = 7_000_123
AUTH_KEY = "aria-test-auth-key"
TODAY = date(2025, 11, 3)


@pytest.fixture
def state() -> AriaState:
    return AriaState(CLIENT_NO, AUTH_KEY, today=TODAY)


@pytest.fixture
def run(state: AriaState) -> SeededRun:
    """40 originals of 2025-10-01 with every kind present, and the month before's."""
    return seed_bill_run(state, invoices=40, seed=3)
