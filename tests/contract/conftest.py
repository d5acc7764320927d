"""The real iMIS simulator over loopback HTTP, for the client's contract tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.imis import ImisApi, ImisClient
from orchestrator.domain.billing import ApiCall
from simulators.imis.seeding import SeededBilling
from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState

USERNAME = "admin"
PASSWORD = "secret-for-contract-tests"


@pytest.fixture
def state() -> Iterator[ImisState]:
    with ImisState(username=USERNAME, password=PASSWORD) as sim:
        yield sim


@pytest.fixture
def server(state: ImisState) -> Iterator[SimulatorServer]:
    with SimulatorServer(state) as running:
        yield running


@pytest.fixture
def billing(state: ImisState) -> SeededBilling:
    """50 cash invoices: mostly open, some paid, some part-paid, a few legacy `CASH:` ids."""
    return state.seed_billing(invoices=50, seed=1)


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def make_client(server: SimulatorServer, calls: list[ApiCall]) -> Iterator[Callable[..., ImisClient]]:
    """`make_client(timeout=..., password=..., **ImisClient options)`; every client reports to `calls`."""
    opened: list[httpx.HTTPTransport] = []

    def make(*, timeout: float = 5.0, **overrides: Any) -> ImisClient:
        transport = httpx.HTTPTransport()
        opened.append(transport)
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "username": USERNAME,
            "password": SecretStr(PASSWORD),
            "transport": transport,
            "timeout": httpx.Timeout(timeout, connect=2.0),
            "observer": calls.append,
        }
        options.update(overrides)
        return ImisClient(**options)

    yield make
    for transport in opened:
        transport.close()


@pytest.fixture
def client(make_client: Callable[..., ImisClient]) -> ImisClient:
    return make_client()


@pytest.fixture
def provider(client: ImisClient) -> ImisApi:
    return ImisApi(client)
