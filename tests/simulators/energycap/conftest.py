"""Fixtures of the EnergyCAP simulator tests: a state on a hand-moved clock, and one served over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.common import SimulatorServer
from simulators.energycap.app import EnergyCapApp
from simulators.energycap.faults import EnergyCapFaults
from simulators.energycap.state import EnergyCapState, SeededPeriod
from tests.simulators.energycap.helpers import API_KEY, OTHER_KEY, READER_KEY, Clock

#: The served simulator's settings: imports end quickly (on the real clock).
SERVED_FAULTS = EnergyCapFaults(import_seconds=0.05)


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


@pytest.fixture(scope="session")
def served_state() -> EnergyCapState:
    return EnergyCapState(API_KEY, SERVED_FAULTS)


@pytest.fixture(scope="session")
def server(served_state: EnergyCapState) -> Iterator[SimulatorServer[EnergyCapState]]:
    """One server for the session (starting uvicorn per test would dominate the run time)."""
    with SimulatorServer(EnergyCapApp(served_state), thread_name="energycap-simulator") as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer[EnergyCapState]) -> Iterator[EnergyCapState]:
    """The served state, emptied, with the default fault settings (fast imports), for one test."""
    served = server.state
    served.faults.replace(SERVED_FAULTS)
    served.reset()
    for key in (READER_KEY, OTHER_KEY):
        served.revoke_api_key(key)
    served.add_api_key(API_KEY)
    yield served
    served.faults.replace(SERVED_FAULTS)


@pytest.fixture
def period(sim: EnergyCapState) -> SeededPeriod:
    return sim.seed_period(200, seed=3)


@pytest.fixture
def api(server: SimulatorServer[EnergyCapState], sim: EnergyCapState) -> Iterator[httpx.Client]:
    """A client of the served simulator sending the right key."""
    headers = {"ECI-ApiKey": API_KEY, "Content-Type": "application/json"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture
def admin(server: SimulatorServer[EnergyCapState], sim: EnergyCapState) -> Iterator[httpx.Client]:
    """No key: the /_sim admin API needs none."""
    with httpx.Client(base_url=server.base_url, timeout=5.0, trust_env=False) as client:
        yield client
