"""The client kit's BearerToken: one token for every thread, refreshed when due, one new token and repeat per 401."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.http import ApiChannel, BearerToken, request_token, status_failure
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderAuthError, ProviderError

BASE_URL = "https://acme.example"


def classify(
    *, operation: str, mutating: bool, status_code: int, headers: Mapping[str, str], body: bytes, payload: Any
) -> ProviderError | None:
    if status_code < 300:
        return None
    return status_failure(
        operation=operation, platform="Acme", mutating=mutating, status_code=status_code, headers=headers
    )


class Tokens:
    """Issues `t1`, `t2`, ... (slowly, so threads would overlap if the lock let them)."""

    def __init__(self) -> None:
        self.issued = 0

    def __call__(self) -> SecretStr:
        time.sleep(0.01)
        self.issued += 1
        return SecretStr(f"t{self.issued}")


def channel(handler: Any, calls: list[ApiCall]) -> ApiChannel:
    return ApiChannel(
        platform="Acme",
        base_url=BASE_URL,
        transport=httpx.MockTransport(handler),
        timeout=httpx.Timeout(5.0),
        classify=classify,
        observer=calls.append,
    )


def build(authorization: Mapping[str, str]) -> httpx.Request:
    return httpx.Request("POST", f"{BASE_URL}/write", headers=dict(authorization))


def status_of(payload: Any, status_code: int) -> int:
    return status_code


def test_one_token_for_every_thread() -> None:
    fetch = Tokens()
    token = BearerToken(fetch)
    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(lambda _: token.current(), range(32)))
    assert seen == {("t1", 1)}
    assert token.secret is not None
    assert token.secret.get_secret_value() == "t1"


def test_refreshed_when_due_and_dropped_only_by_its_own_generation() -> None:
    fetch = Tokens()
    due = threading.Event()
    token = BearerToken(fetch, due=due.is_set)
    assert token.current() == ("t1", 1)
    due.set()
    assert token.current() == ("t2", 2)
    due.clear()
    token.invalidate(1)  # a stale 401: another thread already replaced that token
    assert token.current() == ("t2", 2)
    token.invalidate(2)
    assert token.current() == ("t3", 3)


def test_a_401_earns_one_new_token_and_one_repeat() -> None:
    calls: list[ApiCall] = []
    replies: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401 if request.headers["Authorization"] == "Bearer t1" else 200)

    token = BearerToken(Tokens())
    result = token.call(channel(handler, calls), "write", build, mutating=True, parse=status_of,
                        on_reply=lambda r: replies.append(r.status_code))  # fmt: skip
    assert result == 200
    assert replies == [401, 200]
    assert [(c.status_code, c.outcome) for c in calls] == [(401, CallOutcome.TRANSIENT), (200, CallOutcome.OK)]
    assert "repeating once" in (calls[0].error or "")


def test_a_second_401_is_the_platforms_to_classify() -> None:
    fetch = Tokens()
    token = BearerToken(fetch)
    with pytest.raises(ProviderAuthError):
        token.call(channel(lambda _: httpx.Response(401), []), "write", build, mutating=True, parse=status_of)
    assert fetch.issued == 2


def test_a_token_request_that_raised_is_not_chained_to_the_credentials() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    request = httpx.Request("POST", f"{BASE_URL}/token", data={"secret": "hunter2"})
    with pytest.raises(ProviderError) as failed:
        request_token(channel(down, []), "token", request, parse=status_of)
    assert failed.value.__cause__ is None
    assert failed.value.__suppress_context__
    assert request_token(channel(lambda _: httpx.Response(200), []), "token", request, parse=status_of) == 200
