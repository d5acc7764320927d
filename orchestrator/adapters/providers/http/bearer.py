"""A bearer token shared by every thread of a client, and the one repeat a 401 earns.

    self._token = BearerToken(fetch=self._fetch_token, due=lambda: self._clock() >= self._refresh_at)
    reply = self._token.call(self._channel, "void", build_request, mutating=True, parse=parse)

The token is fetched under a lock when there is none, or when `due` says it is time to refresh.
When a call is answered 401, the token that call carried is dropped (unless another thread already
replaced it), a new one is fetched and the call is repeated once: a 401 was not applied, so this is
safe for writes too. A second 401 goes to the platform's `classify`. That is the only repeat a
client makes; backoff for everything else belongs to the orchestrator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TypeVar

import httpx
import pydantic

from orchestrator.adapters.providers.http.channel import ApiChannel, Parser
from orchestrator.domain.billing import CallOutcome
from orchestrator.domain.errors import ProviderError

__all__ = ["BearerToken", "request_token"]

R = TypeVar("R")

#: Builds a call's request from the headers that authorize it (`Authorization: Bearer …`).
RequestBuilder = Callable[[Mapping[str, str]], httpx.Request]


def _never() -> bool:
    return False


class BearerToken:
    """`fetch()` returns a new token (it runs under the lock, one thread at a time, and raises the
    platform's typed error when the token endpoint refuses); `due()` says when to refresh ahead."""

    def __init__(self, fetch: Callable[[], pydantic.SecretStr], *, due: Callable[[], bool] = _never) -> None:
        self._fetch = fetch
        self._due = due
        self._lock = threading.Lock()
        self._token: pydantic.SecretStr | None = None
        self._generation = 0

    @property
    def secret(self) -> pydantic.SecretStr | None:
        """The token held now, for the channel to scrub from error messages."""
        return self._token

    def current(self) -> tuple[str, int]:
        """The token to send (fetched first when there is none or it is due) and its generation."""
        with self._lock:
            if self._token is None or self._due():
                self._token = self._fetch()
                self._generation += 1
            return self._token.get_secret_value(), self._generation

    def invalidate(self, generation: int) -> None:
        """Drop the token of `generation` a 401 rejected, unless another thread already replaced it."""
        with self._lock:
            if self._generation == generation:
                self._token = None

    def call(
        self,
        channel: ApiChannel,
        operation: str,
        build: RequestBuilder,
        *,
        mutating: bool,
        parse: Parser[R],
        on_reply: Callable[[httpx.Response], None] | None = None,
    ) -> R:
        """One call carrying the token; on a first 401 a new token and one repeat. `on_reply` sees every
        reply, the 401 included (a platform reading a header from each, say)."""
        for attempt in (1, 2):
            token, generation = self.current()
            request = build({"Authorization": f"Bearer {token}"})
            response, watch = channel.send(operation, request, mutating=mutating)
            if on_reply is not None:
                on_reply(response)
            if response.status_code == 401 and attempt == 1:
                channel.report(
                    operation,
                    watch,
                    401,
                    None,
                    outcome=CallOutcome.TRANSIENT,
                    note="token rejected (HTTP 401); fetching a new one and repeating once",
                )
                self.invalidate(generation)
                continue
            return channel.settle(operation, response, watch, mutating=mutating, parse=parse)
        raise AssertionError("unreachable: the second attempt always returns or raises")  # pragma: no cover


def request_token(channel: ApiChannel, operation: str, request: httpx.Request, *, parse: Parser[R]) -> R:
    """Send a token request and read its reply (a `fetch` for `BearerToken` does this).

    A request that raised is re-raised as its typed error without its cause: the httpx exception
    holds the request, and the request holds the credentials.
    """
    try:
        response, watch = channel.send(operation, request, mutating=False)
    except ProviderError as failure:
        raise failure from None
    return channel.settle(operation, response, watch, mutating=False, parse=parse)
