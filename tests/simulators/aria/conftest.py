"""Fixtures for the Aria simulator's own tests.

State-only tests build a seeded in-process state. HTTP tests share one server per session (starting
uvicorn per test would dominate the run time); each gets it reset, reseeded and with default faults.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from simulators.aria.app import AriaApp
from simulators.aria.faults import AriaFaults
from simulators.aria.seeding import SeededRun, seed_bill_run
from simulators.aria.state import AriaState
from simulators.common import SimulatorServer

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


CORE = "/v1/core"
LEGACY = "/api/ws/api_ws_class_dispatcher.php"
OBJECT_QUERY = "/api/AriaQuery/objects.php"
PATHS = (CORE, LEGACY, OBJECT_QUERY)
ARRAYS = ("rb_line_items", "optional_transaction_qualifiers")


class Aria:
    """Posts calls the way a client does, as JSON or as a form (arrays as JSON text)."""

    def __init__(self, http: httpx.Client, *, form: bool = False, path: str = CORE) -> None:
        self.http = http
        self.form = form
        self.path = path

    def post(self, rest_call: str, *, path: str | None = None, **params: Any) -> httpx.Response:
        body = {"rest_call": rest_call, "client_no": CLIENT_NO, "auth_key": AUTH_KEY, "output_format": "json", **params}
        if not self.form:
            return self.http.post(path or self.path, content=json.dumps(body, default=str))
        fields = {k: json.dumps(v, default=str) if k in ARRAYS else str(v) for k, v in body.items()}
        return self.http.post(
            path or self.path,
            content=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def call(self, rest_call: str, **params: Any) -> dict[str, Any]:
        """The reply's JSON, after checking it came as Aria answers: HTTP 200, JSON."""
        reply = self.post(rest_call, **params)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/json")
        data: dict[str, Any] = reply.json()
        return data


@pytest.fixture(scope="session")
def served() -> Iterator[SimulatorServer[AriaState]]:
    state = AriaState(CLIENT_NO, AUTH_KEY, today=TODAY)
    with SimulatorServer(AriaApp(state), thread_name="aria-simulator") as server:
        yield server


@pytest.fixture
def sim(served: SimulatorServer[AriaState]) -> Iterator[AriaState]:
    """The served state, emptied, with default faults, for one test."""
    state = served.state
    state.faults.replace(AriaFaults())
    state.reset()
    yield state
    state.faults.replace(AriaFaults())


@pytest.fixture
def served_run(sim: AriaState) -> SeededRun:
    return seed_bill_run(sim, invoices=40, seed=3)


@pytest.fixture
def http(served: SimulatorServer[AriaState], sim: AriaState) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=5.0, trust_env=False) as client:
        yield client


@pytest.fixture(params=["json", "form"])
def aria(request: pytest.FixtureRequest, http: httpx.Client) -> Aria:
    return Aria(http, form=request.param == "form")
