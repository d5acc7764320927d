"""One platform tenant's HTTP channel: the plumbing between a client's requests and its transport.

- The httpx transport is injected (composition root or test) with the timeout; the channel never
  builds one, and it refuses a timeout that leaves any phase unbounded. Each call is one
  `httpx.Request` handed straight to the transport: `httpx.Client`'s auth and redirect flows and
  event hooks do nothing for an API that follows no redirect, and with its cookie jar they cost
  about a quarter of each exchange's CPU. Cookies are still kept, but only once the tenant sets one
  (a load balancer's affinity cookie, say): a tenant that sets none costs nothing.
- Every exchange is timed and reported to `observer` as an `ApiCall`; an observer that fails is
  logged and never breaks the call.
- Error messages are scrubbed of the client's secrets (`secrets`) should a server ever echo them.
- `one_slot()` reaches the tenant limiter's `LimitedTransport.one_slot` when the transport has one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import httpx
import pydantic

from orchestrator.adapters.providers.http.failures import outcome_of, transport_failure
from orchestrator.adapters.providers.http.replies import decode_success
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderError

__all__ = ["ApiChannel", "Classifier", "Parser", "Stopwatch"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: A reply's parser: the body decoded once (see `replies.decode_success`) and the status code. It
#: raises a `ProviderError` (usually `replies.parse_model`'s) when the reply is unusable.
Parser = Callable[[Any, int], R]

#: Parsed URLs kept per path: the fixed paths of every call, not the per-entity ones beyond this.
_URL_CACHE_SIZE = 64


class Classifier(Protocol):
    """A platform's `classify`: the typed error for one reply, or None when it is a usable success."""

    def __call__(
        self,
        *,
        operation: str,
        mutating: bool,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        payload: Any,
    ) -> ProviderError | None: ...


@dataclass(frozen=True, slots=True)
class Stopwatch:
    """When an exchange started, by the wall clock (for the record) and the performance counter."""

    started_at: datetime
    started: float

    @classmethod
    def start(cls) -> Stopwatch:
        return cls(datetime.now(UTC), time.perf_counter())

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def _no_secrets() -> Iterable[pydantic.SecretStr | None]:
    return ()


class ApiChannel:
    """Sends a client's requests to one tenant and reports, classifies and scrubs what comes back.

    `platform` names the platform in messages ("iMIS"); `classify` is the platform's one classifier
    of replies; `secrets` returns what must never appear in an error (read when one is raised, so a
    token fetched later is covered).
    """

    def __init__(
        self,
        *,
        platform: str,
        base_url: str,
        transport: httpx.BaseTransport,
        timeout: httpx.Timeout,
        classify: Classifier,
        observer: Callable[[ApiCall], None] | None = None,
        secrets: Callable[[], Iterable[pydantic.SecretStr | None]] = _no_secrets,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        unbounded = [
            phase
            for phase, value in (
                ("connect", timeout.connect),
                ("read", timeout.read),
                ("write", timeout.write),
                ("pool", timeout.pool),
            )
            if value is None
        ]
        if unbounded:
            raise ValueError(
                f"the timeout given to the {platform} client must bound every phase of a request "
                f"(unbounded: {', '.join(unbounded)}); pass e.g. timeout=httpx.Timeout(30, connect=5)"
            )
        self.platform = platform
        self.base_url = base_url.rstrip("/")
        self._transport = transport
        self._extensions = {"timeout": timeout.as_dict()}
        self._classify = classify
        self._observer = observer
        self._secrets = secrets
        self._urls: dict[str, httpx.URL] = {}
        self._cookies = httpx.Cookies()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(platform={self.platform!r}, base_url={self.base_url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """A request to `base_url + path` carrying the timeout (the transport reads it from the request)."""
        return httpx.Request(
            method,
            self._url(path),
            params=params,
            content=content,
            data=data,
            headers=headers,
            extensions=self._extensions,
        )

    def call(self, operation: str, request: httpx.Request, *, mutating: bool, parse: Parser[R]) -> R:
        """One exchange, classified, parsed and reported; raises the typed `ProviderError`."""
        response, watch = self.send(operation, request, mutating=mutating)
        return self.settle(operation, response, watch, mutating=mutating, parse=parse)

    def send(self, operation: str, request: httpx.Request, *, mutating: bool) -> tuple[httpx.Response, Stopwatch]:
        """Send one request and read its whole reply, whatever its status.

        A request that raises (nothing came back) is reported and raised as the typed error, chained
        to the transport's exception; a caller whose request holds a secret re-raises it `from None`.
        """
        watch = Stopwatch.start()
        try:
            return self._exchange(request), watch
        except httpx.HTTPError as exc:
            error = transport_failure(exc, operation=operation, mutating=mutating, platform=self.platform)
            raise self.failure(operation, watch, None, error) from exc

    def settle(
        self, operation: str, response: httpx.Response, watch: Stopwatch, *, mutating: bool, parse: Parser[R]
    ) -> R:
        """Classify a reply `send` returned, parse it when usable, report it; raises the typed error."""
        payload = decode_success(response)
        error = self._classify(
            operation=operation,
            mutating=mutating,
            status_code=response.status_code,
            headers=response.headers,
            body=response.content,
            payload=payload,
        )
        if error is None:
            try:
                result = parse(payload, response.status_code)
            except ProviderError as exc:
                error = exc
            else:
                self.report(operation, watch, response.status_code, None)
                return result
        raise self.failure(operation, watch, response.status_code, error)

    def failure(self, operation: str, watch: Stopwatch, status_code: int | None, error: ProviderError) -> ProviderError:
        """`error` with the secrets scrubbed from its message, reported; the caller raises it."""
        message = error.message
        for secret in self._secrets():
            value = secret.get_secret_value() if secret is not None else ""
            if len(value) >= 3 and value in message:
                message = message.replace(value, "***")
        if message != error.message:
            error.message = message
            error.args = (message,)
        self.report(operation, watch, status_code, error)
        return error

    def report(
        self,
        operation: str,
        watch: Stopwatch,
        status_code: int | None,
        error: ProviderError | None,
        *,
        outcome: CallOutcome | None = None,
        note: str | None = None,
    ) -> None:
        """Tell the observer about one exchange; `outcome` and `note` describe one that is not an error
        (a 401 the client answers by fetching a new token, say)."""
        latency_ms = watch.elapsed_ms()
        call = ApiCall(
            operation=operation,
            outcome=outcome or outcome_of(error),
            latency_ms=latency_ms,
            started_at=watch.started_at,
            status_code=status_code,
            error=note if error is None else error.message,
        )
        logger.debug(
            "%s %s -> %s %s in %.1f ms", self.platform, operation, status_code or "-", call.outcome.value, latency_ms
        )
        if self._observer is None:
            return
        try:
            self._observer(call)
        except Exception:
            logger.exception("the ApiCall observer failed for %s; the call itself is unaffected", operation)

    def one_slot(self) -> AbstractContextManager[None]:
        """This thread's calls inside share one of the tenant's slots, when the transport is limited."""
        one_slot = getattr(self._transport, "one_slot", None)
        return one_slot() if one_slot is not None else contextlib.nullcontext()

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self.base_url + path)
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[path] = url
        return url

    def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send one request and read its whole reply; the connection (and the tenant's slot) is freed on return."""
        if self._cookies:
            self._cookies.set_cookie_header(request)
        response = self._transport.handle_request(request)
        response.request = request
        try:
            response.read()
        finally:
            response.close()
        if "set-cookie" in response.headers:
            self._cookies.extract_cookies(response)
        return response
