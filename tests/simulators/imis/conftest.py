"""Fixtures for the iMIS simulator's own tests.

One simulator server serves the whole session (starting uvicorn per test would dominate the run
time); every test that uses it gets a freshly reset state with default fault settings, so tests
stay independent. State-only tests build their own `ImisState`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState
from tests.simulators.imis.helpers import FAST, PASSWORD, USERNAME, get_token


@pytest.fixture(autouse=True)
def _no_task_thread_left_behind() -> Iterator[None]:
    """Set up first, torn down last: every test must have joined its background task threads."""
    yield
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("imis-task-") and t.is_alive()]
    assert not leftover, f"task threads left running: {leftover}"


@pytest.fixture
def state() -> Iterator[ImisState]:
    """A fresh in-process state with a fast task clock; its task threads are joined afterwards."""
    with ImisState(USERNAME, PASSWORD, FAST) as sim:
        yield sim


@pytest.fixture(scope="session")
def shared_state() -> Iterator[ImisState]:
    with ImisState(USERNAME, PASSWORD, FAST) as sim:
        yield sim


@pytest.fixture(scope="session")
def server(shared_state: ImisState) -> Iterator[SimulatorServer]:
    with SimulatorServer(shared_state) as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer) -> Iterator[ImisState]:
    """The served state, emptied, with default faults (fast tasks), for one test."""
    state = server.state
    state.faults.replace(FAST)
    state.reset()
    yield state
    state.faults.replace(FAST)
    state.close()  # join this test's task threads


@pytest.fixture
def admin(server: SimulatorServer, sim: ImisState) -> Iterator[httpx.Client]:
    """No credentials: the /_sim admin API needs none."""
    with httpx.Client(base_url=server.base_url, timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture
def api(server: SimulatorServer, sim: ImisState) -> Iterator[httpx.Client]:
    """An authenticated client of the served simulator."""
    token = get_token(server.base_url)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=5.0, trust_env=False) as client:
        yield client
