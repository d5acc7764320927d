"""A scripted iMIS for unit tests: an `httpx.MockTransport` handler written here, never in production."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.imis import ImisClient
from orchestrator.domain.billing import ApiCall

BASE_URL = "https://imis.example.org"
USERNAME = "admin"
PASSWORD = "s3cret-Pa55word"

Handler = Callable[[httpx.Request], httpx.Response]


def token(n: int) -> str:
    """The n-th access token the fake issues (opaque, like iMIS's)."""
    return f"opaque-token-{n:04d}"


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )


def ok(result: Any = True) -> httpx.Response:
    return json_response(
        200,
        {
            "$type": "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts",
            "IsSuccessStatusCode": True,
            "Message": None,
            "Result": result,
        },
    )


@dataclass
class FakeImis:
    """Issues tokens `token(1)`, `token(2)`, ...; routes `(method, path)` to handlers; records every request."""

    expires_in: float | None = 1200
    token_status: int = 200
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    tokens_issued: int = 0
    rejected_tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, method: str, path: str, handler: Handler | httpx.Response) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _request: handler)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if request.url.path == "/token":
            return self._token(request)
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if bearer in self.rejected_tokens or not bearer.startswith("opaque-token-"):
            return httpx.Response(401)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return json_response(404, {"Message": f"no route {request.method} {request.url.path}"})
        return handler(request)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
        if self.token_status != 200 or form != {
            "grant_type": "password",
            "username": USERNAME,
            "password": PASSWORD,
        }:
            return json_response(
                400, {"error": "invalid_grant", "error_description": "The user name or password is incorrect."}
            )
        with self.lock:
            self.tokens_issued += 1
            issued = token(self.tokens_issued)
        body: dict[str, Any] = {"access_token": issued, "token_type": "bearer", "userName": USERNAME}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return json_response(200, body)

    def api_requests(self) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path != "/token"]

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(request.content) for request in self.requests if request.url.path == path]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def imis() -> FakeImis:
    return FakeImis()


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(imis: FakeImis, calls: list[ApiCall], clock: FakeClock) -> Callable[..., ImisClient]:
    def make(**overrides: Any) -> ImisClient:
        options: dict[str, Any] = {
            "base_url": BASE_URL,
            "username": USERNAME,
            "password": SecretStr(PASSWORD),
            "transport": httpx.MockTransport(imis),
            "timeout": httpx.Timeout(5.0),
            "observer": calls.append,
            "clock": clock,
        }
        options.update(overrides)
        return ImisClient(**options)

    return make


@pytest.fixture
def client(make_client: Callable[..., ImisClient]) -> ImisClient:
    return make_client()
