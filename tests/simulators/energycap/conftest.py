"""Fixtures of the EnergyCAP simulator tests: a state on a hand-moved clock, seeded or not."""

from __future__ import annotations

import pytest

from simulators.energycap.faults import EnergyCapFaults
from simulators.energycap.state import EnergyCapState, SeededPeriod
from tests.simulators.energycap.helpers import API_KEY, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> EnergyCapState:
    return EnergyCapState(API_KEY, EnergyCapFaults(import_seconds=4.0), clock=clock)


@pytest.fixture
def seeded(state: EnergyCapState) -> SeededPeriod:
    """200 bills of 202510 (8 void, 8 reversed with their reversal bills), 40 of 202509."""
    return state.seed_period(200, seed=3)
