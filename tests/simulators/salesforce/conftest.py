"""Fixtures for the Salesforce simulator's own tests.

State tests build their own `SalesforceState` on a clock they move by hand (`clock.advance`), so the
asynchronous walks are followed step by step without sleeping. HTTP tests share one server for the
session; each gets it reset, with default faults and the walks finished at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulators.common.server import SimulatorServer
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState
from tests.simulators.salesforce.helpers import CLIENT_ID, CLIENT_SECRET, INSTANT, FakeClock, get_token


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> SalesforceState:
    """A fresh org on a hand-moved clock, with the contract's default walk delays (void 2 s, generate 3 s)."""
    return SalesforceState(CLIENT_ID, CLIENT_SECRET, SalesforceFaults(), clock=clock)


@pytest.fixture(scope="session")
def server() -> Iterator[SimulatorServer[SalesforceState]]:
    with simulator_server(SalesforceState(CLIENT_ID, CLIENT_SECRET, INSTANT)) as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer[SalesforceState]) -> Iterator[SalesforceState]:
    """The served state, emptied, with walks that finish at once, for one test."""
    served = server.state
    served.faults.replace(INSTANT)
    served.reset()
    yield served
    served.faults.replace(INSTANT)


@pytest.fixture
def admin(server: SimulatorServer[SalesforceState], sim: SalesforceState) -> Iterator[httpx.Client]:
    """No credentials: the /_sim admin API needs none."""
    with httpx.Client(base_url=server.base_url, timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture
def api(server: SimulatorServer[SalesforceState], sim: SalesforceState) -> Iterator[httpx.Client]:
    """An authenticated client of the served org, under /services/data/v62.0."""
    headers = {"Authorization": f"Bearer {get_token(server.base_url)}"}
    with httpx.Client(
        base_url=f"{server.base_url}/services/data/v62.0", headers=headers, timeout=5.0, trust_env=False
    ) as client:
        yield client
