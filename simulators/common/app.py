"""The HTTP face every simulator shares: ASGI and `httpx.MockTransport` drivers, counting, faults, admin.

`SimulatorApp` is a raw ASGI application (for uvicorn) and also a sync `Request -> Response`
callable, `SimulatorApp.handle`, so `httpx.MockTransport(app.handle)` drives the same code without
sockets. A platform subclasses it and supplies `api_route` (its routing table) and `authenticate`;
the base does the rest for every counted route:

    count the request -> draw delay and fault -> sleep -> fault reply, or authenticate + handler
    (a fault that "applies the operation" runs the handler first, then spoils the reply), all of it
    inside the platform's `in_progress(route, request)`

Paths under `/_sim/` are the admin API: never authenticated, faulted or counted. The shared admin
routes (`admin_routes`) are `GET health`, `GET counters`, `POST counters/reset`, `GET|PATCH faults`
(a JSON merge patch) and `POST reset`; a platform adds its own by extending that table, where a
`*` segment matches any one segment and hands it to the handler as a parameter.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Generator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx
from pydantic import ValidationError

from simulators.common.counters import RequestCounters
from simulators.common.faults import FaultInjector, FaultKind, Faults
from simulators.common.http import (
    HTML,
    JSON,
    Handler,
    Headers,
    InvalidBody,
    PathParts,
    Reply,
    Request,
    Route,
    decimals_to_floats,
    dumps,
    load_json,
    validation_details,
)

MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    b"<h1>The service is temporarily unavailable</h1><p>The site is down for scheduled maintenance. "
    b"Please try again later.</p></body></html>"
)
SIGN_IN_PAGE = (
    b'<!DOCTYPE html><html><head><title>Sign In</title></head><body><form method="post" action="/signin">'
    b'<input name="username"/><input name="password" type="password"/><button>Sign In</button></form></body></html>'
)
BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
GATEWAY_TIMEOUT_PAGE = (
    b"<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1>"
    b"</center></body></html>"
)

ADMIN_PREFIX = "_sim"

#: Admin routes: path segments (lower case, `*` for any one segment) -> method -> handler.
AdminRoutes = dict[tuple[str, ...], dict[str, Handler]]


class SimulatedPlatform(Protocol):
    """What the kit needs of a platform's state (its `state.py`, which knows nothing of HTTP)."""

    @property
    def faults(self) -> FaultInjector[Any]: ...

    @property
    def traffic(self) -> RequestCounters: ...

    def counters(self) -> dict[str, Any]:
        """Everything the platform counts, `traffic.snapshot()` included."""
        ...

    def reset_counters(self) -> None: ...

    def reset(self) -> None:
        """Forget every entity and counter."""
        ...

    def close(self) -> None:
        """Stop background work (the server calls it when it stops serving for good)."""
        ...


S = TypeVar("S", bound=SimulatedPlatform)


class SimulatorApp(abc.ABC, Generic[S]):
    """ASGI app (and sync handler) over one platform state; subclass per platform."""

    #: The HTML pages of the `503_html` and `html_200` faults; a platform may use its own.
    maintenance_page: ClassVar[bytes] = MAINTENANCE_PAGE
    sign_in_page: ClassVar[bytes] = SIGN_IN_PAGE

    def __init__(self, state: S) -> None:
        self.state = state
        self._closing = False
        self._admin = self.admin_routes()

    def close(self) -> None:
        """Cut long fault sleeps short (used when the server stops)."""
        self._closing = True

    def reopen(self) -> None:
        """Sleep in full again (the server is starting)."""
        self._closing = False

    # ------------------------------------------------------------------ what a platform supplies

    @abc.abstractmethod
    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        """The route of a request outside `/_sim/` (`method` in upper case)."""

    @abc.abstractmethod
    def authenticate(self, request: Request) -> Reply | None:
        """None when the request may proceed, else the platform's rejection (e.g. a 401)."""

    def in_progress(self, route: Route, request: Request) -> AbstractContextManager[None]:
        """Held from a counted request's arrival, across its delay, until its reply is made.

        A platform marks work in progress with it, so that a concurrent request can see it (Aria
        answers 3108 to a second rebill on a billing group another one is busy with). Nothing by default.
        """
        return nullcontext()

    def dispatch(self, route: Route, request: Request) -> Reply:
        """Run the handler; a platform overrides this to turn its own exceptions into replies."""
        try:
            return route.handler(request, route.params)
        except InvalidBody as exc:
            return self.error_reply(400, exc.message)

    def error_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        """The platform's error body for what the kit answers itself (unknown route, bad admin body)."""
        return self.json_reply(status, {"message": message}, headers)

    def server_fault_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        """The 429 and 500 of the faults; a platform whose web stack answers those in another shape
        than its API's errors overrides this."""
        return self.error_reply(status, message, headers)

    def encode(self, payload: Any) -> bytes:
        """JSON bytes of a reply; a platform with its own date format overrides this."""
        return dumps(payload)

    def json_reply(self, status: int, payload: Any, headers: Headers = ()) -> Reply:
        return Reply(status, self.encode(payload), JSON, headers)

    def not_found(self, _: Request, __: tuple[str, ...]) -> Reply:
        return self.error_reply(404, "No HTTP resource was found that matches the request URI.")

    def method_not_allowed(self, _: Request, __: tuple[str, ...]) -> Reply:
        return self.error_reply(405, "The requested resource does not support this HTTP method.")

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        request = Request(
            scope["method"],
            raw_path.decode("latin-1").split("?", 1)[0],
            scope["query_string"].decode("latin-1"),
            headers,
            b"".join(chunks),
        )
        route = self.route(request)
        if route.operation is None:
            await _send(send, self.dispatch(route, request))
            return
        traffic = self.state.traffic
        traffic.started(route.operation)
        status: int | None = None
        steps = self._counted(route, request)
        try:
            try:
                while True:
                    await self._sleep(next(steps))
            except StopIteration as done:
                reply: Reply = done.value
            status = reply.status
            await _send(send, reply)
        finally:
            steps.close()  # a request cut short (client gone, server stopping) ends its in_progress too
            traffic.finished(status)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0.1:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.05, remaining))

    # ------------------------------------------------------------------ sync (httpx.MockTransport)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Serve one httpx request synchronously: `httpx.Client(transport=httpx.MockTransport(app.handle))`."""
        raw = request.url.raw_path.decode("latin-1")
        req = Request(
            request.method,
            raw.split("?", 1)[0],
            request.url.query.decode("latin-1"),
            {k.lower(): v for k, v in request.headers.items()},
            request.read(),
        )
        route = self.route(req)
        if route.operation is None:
            reply = self.dispatch(route, req)
        else:
            traffic = self.state.traffic
            traffic.started(route.operation)
            status: int | None = None
            steps = self._counted(route, req)
            try:
                try:
                    while True:
                        delay = next(steps)
                        deadline = time.monotonic() + delay
                        while not self._closing and time.monotonic() < deadline:
                            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                except StopIteration as done:
                    reply = done.value
                status = reply.status
            finally:
                steps.close()
                traffic.finished(status)
        headers = [("content-type", reply.content_type), *reply.headers]
        return httpx.Response(reply.status, headers=headers, content=reply.body)

    # ------------------------------------------------------------------ the counted path

    def _counted(self, route: Route, request: Request) -> Generator[float, None, Reply]:
        """Yields the seconds to wait, returns the reply: one body for the async and sync drivers.

        The whole of it, delay included, runs inside `in_progress(route, request)`.
        """
        assert route.operation is not None
        with self.in_progress(route, request):
            decision = self.state.faults.decide(route.operation, api=route.api)
            settings: Faults = decision.settings
            if decision.delay_seconds > 0:
                yield decision.delay_seconds
            kind = decision.kind
            retry_after = (("Retry-After", str(settings.retry_after_seconds)),)
            if kind is FaultKind.TOO_MANY_REQUESTS:
                return self.server_fault_reply(429, "Too many requests. Please retry later.", retry_after)
            if kind is FaultKind.SERVER_ERROR:
                return self.server_fault_reply(500, "An error has occurred.")
            if kind is FaultKind.MAINTENANCE_HTML:
                return Reply(503, self.maintenance_page, HTML, retry_after)
            if kind is FaultKind.HTML_200:
                return Reply(200, self.sign_in_page, HTML)
            if kind is FaultKind.HANG:
                yield settings.hang_seconds
                return Reply(504, GATEWAY_TIMEOUT_PAGE, HTML)
            reply = self._authorized(route, request)
            if kind is FaultKind.REPLY_LOST:
                if settings.reply_lost_mode == "hang":
                    yield settings.hang_seconds
                    return Reply(504, GATEWAY_TIMEOUT_PAGE, HTML)
                return Reply(502, BAD_GATEWAY_PAGE, HTML)
            if kind is FaultKind.TRUNCATED_JSON:
                return Reply(200, reply.body[: len(reply.body) // 2], JSON)
            return reply

    def _authorized(self, route: Route, request: Request) -> Reply:
        if route.auth:
            rejection = self.authenticate(request)
            if rejection is not None:
                return rejection
        return self.dispatch(route, request)

    # ------------------------------------------------------------------ routing

    def route(self, request: Request) -> Route:
        path = PathParts.of(request.raw_path)
        method = request.method.upper()
        if path.lowered[:1] == [ADMIN_PREFIX]:
            return self._admin_route(method, path.lowered[1:], path.decoded[1:])
        return self.api_route(method, path, request)

    def _admin_route(self, method: str, lowered: list[str], segments: list[str]) -> Route:
        found = _match(self._admin, lowered, segments)
        if found is None:
            return Route(None, self.not_found, auth=False)
        handlers, params = found
        handler = handlers.get(method)
        if handler is None:
            return Route(None, self.method_not_allowed, auth=False)
        return Route(None, handler, params, auth=False)

    # ------------------------------------------------------------------ /_sim admin API

    def admin_routes(self) -> AdminRoutes:
        """The shared admin routes; extend with `{**super().admin_routes(), ...}`."""
        return {
            ("health",): {"GET": lambda r, p: self.json_reply(200, {"ok": True})},
            ("counters",): {"GET": lambda r, p: self.json_reply(200, self.state.counters())},
            ("counters", "reset"): {"POST": self._admin_reset_counters},
            ("faults",): {"GET": self._admin_faults, "PATCH": self._admin_patch_faults},
            ("reset",): {"POST": self._admin_reset},
        }

    def _admin_reset_counters(self, _: Request, __: tuple[str, ...]) -> Reply:
        self.state.reset_counters()
        return self.json_reply(200, self.state.counters())

    def _admin_faults(self, _: Request, __: tuple[str, ...]) -> Reply:
        return self.json_reply(200, self.state.faults.settings.public_dict())

    def _admin_patch_faults(self, request: Request, _: tuple[str, ...]) -> Reply:
        patch = load_json(request.body)
        if not isinstance(patch, dict):
            return self.error_reply(400, "The fault patch must be a JSON object.")
        try:
            updated: Faults = self.state.faults.update(decimals_to_floats(patch))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid fault settings", "details": validation_details(exc)})
        return self.json_reply(200, updated.public_dict())

    def _admin_reset(self, _: Request, __: tuple[str, ...]) -> Reply:
        self.state.reset()
        return self.json_reply(200, {"ok": True})


def _match(
    table: Mapping[tuple[str, ...], dict[str, Handler]], lowered: list[str], segments: list[str]
) -> tuple[dict[str, Handler], tuple[str, ...]] | None:
    """The handlers of an exact key, else of the first pattern whose `*` segments match (their values
    in original case become the parameters)."""
    exact = table.get(tuple(lowered))
    if exact is not None:
        return exact, ()
    for key, handlers in table.items():
        if "*" not in key or len(key) != len(lowered):
            continue
        if all(part in ("*", seg) for part, seg in zip(key, lowered, strict=True)):
            return handlers, tuple(seg for part, seg in zip(key, segments, strict=True) if part == "*")
    return None


async def _send(send: Any, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
