"""The real EnergyCAP simulator over loopback HTTP, for the client's contract tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.energycap.client import EnergyCapClient
from orchestrator.domain.billing import ApiCall
from simulators.common import SimulatorServer
from simulators.energycap import EnergyCapApp, EnergyCapFaults, EnergyCapState, SeededPeriod

API_KEY = "ec-contract-key-0123456789"
FAST = EnergyCapFaults(import_seconds=0.05)


@pytest.fixture(scope="session")
def server() -> Iterator[SimulatorServer[EnergyCapState]]:
    with SimulatorServer(EnergyCapApp(EnergyCapState(API_KEY, FAST)), thread_name="energycap-simulator") as running:
        yield running


@pytest.fixture
def state(server: SimulatorServer[EnergyCapState]) -> Iterator[EnergyCapState]:
    """The served state, emptied, default faults, for one test."""
    served = server.state
    served.faults.replace(FAST)
    served.reset()
    yield served
    served.faults.replace(FAST)


@pytest.fixture
def period(state: EnergyCapState) -> SeededPeriod:
    """300 bills of 202510 over many accounts (12 void, 12 reversed with their reversals), 60 of 202509."""
    return state.seed_period(300, seed=11)


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def make_client(
    server: SimulatorServer[EnergyCapState], calls: list[ApiCall]
) -> Iterator[Callable[..., EnergyCapClient]]:
    """`make_client(timeout=..., **EnergyCapClient options)`; every client reports to `calls`."""
    opened: list[httpx.HTTPTransport] = []

    def make(*, timeout: float = 5.0, **overrides: Any) -> EnergyCapClient:
        transport = httpx.HTTPTransport()
        opened.append(transport)
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "api_key": SecretStr(API_KEY),
            "transport": transport,
            "timeout": httpx.Timeout(timeout, connect=2.0),
            "observer": calls.append,
        }
        options.update(overrides)
        return EnergyCapClient(**options)

    yield make
    for transport in opened:
        transport.close()


@pytest.fixture
def client(make_client: Callable[..., EnergyCapClient], state: EnergyCapState) -> EnergyCapClient:
    return make_client()
