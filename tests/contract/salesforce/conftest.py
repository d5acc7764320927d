"""The Salesforce simulator over loopback HTTP, for the client's contract tests.

One server serves the module's tests; each test gets its org emptied, default faults, and a clock
it moves by hand (`clock.advance`) so the void and generate walks are followed step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.salesforce import SalesforceClient
from orchestrator.domain.billing import ApiCall
from simulators.common.server import SimulatorServer
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.simulators.salesforce.helpers import FakeClock

CLIENT_ID = "3MVG9-contract"
CLIENT_SECRET = "contract-S3cret-never-shown"


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[SimulatorServer[SalesforceState]]:
    with simulator_server(SalesforceState(CLIENT_ID, CLIENT_SECRET, clock=clock)) as running:
        yield running


@pytest.fixture
def state(server: SimulatorServer[SalesforceState], clock: FakeClock) -> Iterator[SalesforceState]:
    served = server.state
    clock.step = 0.0
    served.faults.replace(SalesforceFaults())
    served.reset()
    served.expire_tokens()
    yield served
    clock.step = 0.0
    served.faults.replace(SalesforceFaults())


@pytest.fixture
def run(state: SalesforceState) -> SeededRun:
    return state.seed_run(invoices=40, seed=21)


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def make_client(
    server: SimulatorServer[SalesforceState], calls: list[ApiCall]
) -> Iterator[Callable[..., SalesforceClient]]:
    """`make_client(**SalesforceClient options)`; every client reports to `calls`."""
    opened: list[httpx.HTTPTransport] = []

    def make(**overrides: Any) -> SalesforceClient:
        transport = httpx.HTTPTransport()
        opened.append(transport)
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "client_id": CLIENT_ID,
            "client_secret": SecretStr(CLIENT_SECRET),
            "transport": transport,
            "timeout": httpx.Timeout(5.0, connect=2.0),
            "observer": calls.append,
        }
        options.update(overrides)
        return SalesforceClient(**options)

    yield make
    for transport in opened:
        transport.close()


@pytest.fixture
def client(make_client: Callable[..., SalesforceClient], state: SalesforceState) -> SalesforceClient:
    return make_client()
