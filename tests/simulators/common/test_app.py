"""The simulator kit driven through a toy platform: routing, auth, counting, faults, the admin API."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simulators.common import (
    FaultInjector,
    Faults,
    PathParts,
    Reply,
    Request,
    RequestCounters,
    Route,
    SimulatorApp,
    SimulatorServer,
    load_json,
)

API_KEY = "k-123"


class NotesState:
    """A toy tenant: notes by id. No HTTP, like every platform's state."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = FaultInjector(faults or Faults(), random.Random(0))
        self.traffic = RequestCounters()
        self.notes: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.closed = False

    def counters(self) -> dict[str, Any]:
        return {**self.traffic.snapshot(), "notes": len(self.notes)}

    def reset_counters(self) -> None:
        self.traffic.reset()

    def reset(self) -> None:
        with self.lock:
            self.notes.clear()
        self.reset_counters()

    def close(self) -> None:
        self.closed = True


class NotesApp(SimulatorApp[NotesState]):
    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        if path.lowered[:1] == ["notes"] and len(path.decoded) == 2:
            if method == "PUT":
                return Route("Note.put", self._put, (path.decoded[1],))
            if method == "GET":
                return Route("Note.get", self._get, (path.decoded[1],))
            return Route("Note.unknown", self.method_not_allowed)
        return Route("unknown", self.not_found, auth=False)

    def authenticate(self, request: Request) -> Reply | None:
        if request.headers.get("x-api-key") == API_KEY:
            return None
        return self.error_reply(401, "bad key")

    def admin_routes(self) -> dict[tuple[str, ...], Any]:
        return {**super().admin_routes(), ("notes", "*"): {"GET": self._get}}

    def _put(self, request: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            self.state.notes[params[0]] = load_json(request.body)
        return self.json_reply(200, {"id": params[0], "note": self.state.notes[params[0]]})

    def _get(self, _: Request, params: tuple[str, ...]) -> Reply:
        note = self.state.notes.get(params[0])
        if note is None:
            return self.error_reply(404, f"no note {params[0]}")
        return self.json_reply(200, {"id": params[0], "note": note})


@pytest.fixture
def state() -> NotesState:
    return NotesState()


@pytest.fixture
def client(state: NotesState) -> Iterator[httpx.Client]:
    transport = httpx.MockTransport(NotesApp(state).handle)
    headers = {"X-Api-Key": API_KEY}
    with httpx.Client(transport=transport, base_url="https://notes.example", headers=headers) as http:
        yield http


class TestRouting:
    def test_a_route_is_authenticated_counted_and_answered(self, client: httpx.Client, state: NotesState) -> None:
        assert client.put("/notes/N1", json={"text": "hi", "amount": 12.50}).status_code == 200
        reply = client.get("/notes/N1")
        assert reply.json() == {"id": "N1", "note": {"text": "hi", "amount": 12.5}}
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert client.get("/notes/N1", headers={"X-Api-Key": "wrong"}).json() == {"message": "bad key"}
        counters = state.counters()
        assert counters["requests"] == {"Note.put": 1, "Note.get": 2}
        assert counters["responses"] == {"200": 2, "401": 1}
        assert (counters["in_flight"], counters["peak_concurrency"]) == (0, 1)

    def test_money_keeps_its_digits(self, client: httpx.Client, state: NotesState) -> None:
        client.put("/notes/N1", content=b'{"amount": 95.00}')
        assert state.notes["N1"] == {"amount": Decimal("95.00")}
        assert client.get("/notes/N1").content == b'{"id":"N1","note":{"amount":95.00}}'

    def test_a_body_that_is_not_json_is_a_400(self, client: httpx.Client) -> None:
        reply = client.put("/notes/N1", content=b"{nope")
        assert reply.status_code == 400
        assert "not valid JSON" in reply.json()["message"]

    def test_unknown_paths_and_methods(self, client: httpx.Client, state: NotesState) -> None:
        assert client.get("/elsewhere").status_code == 404
        assert client.delete("/notes/N1").status_code == 405
        assert state.counters()["requests"] == {"unknown": 1, "Note.unknown": 1}


class TestAdmin:
    def test_is_not_counted_and_needs_no_credentials(self, client: httpx.Client, state: NotesState) -> None:
        client.put("/notes/N1", json={"text": "hi"})
        assert client.get("/_sim/health", headers={"X-Api-Key": ""}).json() == {"ok": True}
        counters = client.get("/_sim/counters").json()
        assert counters == state.counters()
        assert counters["requests"] == {"Note.put": 1}

    def test_a_platform_route_with_a_parameter(self, client: httpx.Client) -> None:
        client.put("/notes/MixedCase", json="x")
        assert client.get("/_sim/notes/MixedCase").json() == {"id": "MixedCase", "note": "x"}
        assert client.post("/_sim/notes/MixedCase").status_code == 405
        assert client.get("/_sim/notes/a/b").status_code == 404

    def test_counters_reset_and_reset(self, client: httpx.Client, state: NotesState) -> None:
        client.put("/notes/N1", json="x")
        assert client.post("/_sim/counters/reset").json()["requests"] == {}
        assert state.notes == {"N1": "x"}
        assert client.post("/_sim/reset").json() == {"ok": True}
        assert state.notes == {}

    def test_faults_get_and_patch(self, client: httpx.Client, state: NotesState) -> None:
        assert client.get("/_sim/faults").json() == Faults().public_dict()
        patched = client.patch("/_sim/faults", json={"p_500": 0.25, "fault_operations": ["Note.put"]})
        assert patched.json()["fault_operations"] == ["Note.put"]
        assert state.faults.settings.p_500 == 0.25

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b'{"p_500": 2}', "invalid fault settings"),
            (b'{"nope": 1}', "invalid fault settings"),
            (b"[1]", "must be a JSON object"),
            (b"", "body is empty"),
        ],
    )
    def test_a_bad_fault_patch_is_a_400_and_changes_nothing(
        self, client: httpx.Client, state: NotesState, body: bytes, says: str
    ) -> None:
        before = state.faults.settings
        reply = client.patch("/_sim/faults", content=body)
        assert reply.status_code == 400
        assert says in reply.text
        assert state.faults.settings is before


class TestFaults:
    @pytest.mark.parametrize(
        ("settings", "status", "content_type", "applied"),
        [
            ({"p_429": 1.0, "retry_after_seconds": 7}, 429, "application/json", False),
            ({"p_500": 1.0}, 500, "application/json", False),
            ({"p_503_html": 1.0}, 503, "text/html", False),
            ({"p_html_200": 1.0}, 200, "text/html", False),
            ({"p_hang": 1.0, "hang_seconds": 0}, 504, "text/html", False),
            ({"p_reply_lost": 1.0}, 502, "text/html", True),
            ({"p_reply_lost": 1.0, "reply_lost_mode": "hang", "hang_seconds": 0}, 504, "text/html", True),
            ({"p_truncated_json": 1.0}, 200, "application/json", True),
        ],
        ids=["429", "500", "503-html", "html-200", "hang", "reply-lost", "reply-lost-hang", "truncated"],
    )
    def test_each_kind(
        self,
        client: httpx.Client,
        state: NotesState,
        settings: dict[str, Any],
        status: int,
        content_type: str,
        applied: bool,
    ) -> None:
        state.faults.update(settings)
        reply = client.put("/notes/N1", json={"text": "a note long enough to cut in half"})
        assert reply.status_code == status
        assert reply.headers["content-type"].startswith(content_type)
        assert ("N1" in state.notes) is applied
        if status in (429, 503):
            assert reply.headers["retry-after"] == str(state.faults.settings.retry_after_seconds)
        if settings.get("p_truncated_json"):
            whole = b'{"id":"N1","note":{"text":"a note long enough to cut in half"}}'
            assert reply.content == whole[: len(whole) // 2]
        assert state.counters()["responses"] == {str(status): 1}

    def test_the_base_error_body(self, client: httpx.Client, state: NotesState) -> None:
        state.faults.update(p_500=1.0)
        assert client.get("/notes/N1").json() == {"message": "An error has occurred."}

    def test_only_the_named_operations(self, client: httpx.Client, state: NotesState) -> None:
        state.faults.update(p_500=1.0, fault_operations=["Note.put"])
        assert client.put("/notes/N1", json="x").status_code == 500
        assert client.get("/notes/N1").status_code == 404


class TrackingApp(NotesApp):
    """Records when its requests are in progress, and when its handler runs."""

    def __init__(self, state: NotesState) -> None:
        super().__init__(state)
        self.events: list[str] = []

    @contextmanager
    def in_progress(self, route: Route, request: Request) -> Iterator[None]:
        self.events.append(f"enter {route.operation}")
        try:
            yield
        finally:
            self.events.append(f"exit {route.operation}")

    def _put(self, request: Request, params: tuple[str, ...]) -> Reply:
        self.events.append("handler")
        return super()._put(request, params)


class TestInProgress:
    def test_spans_the_delay_and_the_handler(self, state: NotesState) -> None:
        app = TrackingApp(state)
        state.faults.update(latency_ms=20)
        with httpx.Client(transport=httpx.MockTransport(app.handle), headers={"X-Api-Key": API_KEY}) as http:
            http.put("https://notes.example/notes/N1", json="x")
        assert app.events == ["enter Note.put", "handler", "exit Note.put"]

    def test_ends_when_a_fault_answers_instead(self, state: NotesState) -> None:
        app = TrackingApp(state)
        state.faults.update(p_500=1.0)
        with httpx.Client(transport=httpx.MockTransport(app.handle), headers={"X-Api-Key": API_KEY}) as http:
            assert http.put("https://notes.example/notes/N1", json="x").status_code == 500
        assert app.events == ["enter Note.put", "exit Note.put"]

    def test_admin_routes_are_never_in_progress(self, state: NotesState) -> None:
        app = TrackingApp(state)
        with httpx.Client(transport=httpx.MockTransport(app.handle)) as http:
            http.get("https://notes.example/_sim/counters")
        assert app.events == []

    def test_over_loopback(self, state: NotesState) -> None:
        app = TrackingApp(state)
        with SimulatorServer(app) as server:
            httpx.put(f"{server.base_url}/notes/N1", json="x", headers={"X-Api-Key": API_KEY}, trust_env=False)
        assert app.events == ["enter Note.put", "handler", "exit Note.put"]


class TestServer:
    def test_serves_over_loopback_and_restarts(self, state: NotesState) -> None:
        server = SimulatorServer(NotesApp(state), thread_name="notes-simulator")
        for _ in range(2):
            with server:
                headers = {"X-Api-Key": API_KEY}
                reply = httpx.put(f"{server.base_url}/notes/N1", json="x", headers=headers, trust_env=False)
                assert reply.status_code == 200
                assert server.state is state
        assert state.counters()["requests"] == {"Note.put": 2}
        with pytest.raises(RuntimeError):
            _ = server.base_url

    def test_counts_requests_in_flight_together(self, state: NotesState) -> None:
        state.faults.update(latency_ms=150)
        with SimulatorServer(NotesApp(state)) as server:
            barrier = threading.Barrier(3)

            def call() -> None:
                barrier.wait()
                httpx.get(f"{server.base_url}/notes/N1", headers={"X-Api-Key": API_KEY}, trust_env=False)

            threads = [threading.Thread(target=call) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        counters = state.counters()
        assert counters["peak_concurrency"] >= 2
        assert counters["in_flight"] == 0
