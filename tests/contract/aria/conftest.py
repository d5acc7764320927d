"""The real Aria simulator over loopback HTTP, for the client's contract tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.domain.billing import ApiCall
from simulators.aria import AriaApp, AriaState, SeededRun, seed_bill_run
from simulators.common import SimulatorServer

CLIENT_NO = 7_000_321
AUTH_KEY = "aria-contract-auth-key"


@pytest.fixture
def state() -> AriaState:
    return AriaState(CLIENT_NO, AUTH_KEY)


@pytest.fixture
def run(state: AriaState) -> SeededRun:
    """60 originals of 2025-10-01 (open, paid, part-paid, voided, rebilled) and the month before's."""
    return seed_bill_run(state, invoices=60, seed=11)


@pytest.fixture
def server(state: AriaState) -> Iterator[SimulatorServer[AriaState]]:
    with SimulatorServer(AriaApp(state), thread_name="aria-simulator") as running:
        yield running


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def make_client(server: SimulatorServer[AriaState], calls: list[ApiCall]) -> Iterator[Callable[..., AriaClient]]:
    """`make_client(timeout=..., **AriaClient options)`; every client reports to `calls`."""
    opened: list[httpx.HTTPTransport] = []

    def make(*, timeout: float = 5.0, **overrides: Any) -> AriaClient:
        transport = httpx.HTTPTransport()
        opened.append(transport)
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "client_no": CLIENT_NO,
            "auth_key": SecretStr(AUTH_KEY),
            "transport": transport,
            "timeout": httpx.Timeout(timeout, connect=2.0),
            "observer": calls.append,
        }
        options.update(overrides)
        return AriaClient(**options)

    yield make
    for transport in opened:
        transport.close()


@pytest.fixture(params=["json", "form"])
def client(request: pytest.FixtureRequest, make_client: Callable[..., AriaClient]) -> AriaClient:
    """The client with JSON bodies, and again with form bodies: the simulator reads both."""
    return make_client(form_bodies=request.param == "form")
