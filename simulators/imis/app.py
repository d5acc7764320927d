"""The HTTP face of the simulator: routing and translation only (moto's `responses.py` + `urls.py`).

`ImisApp` is a raw ASGI application (for uvicorn) and also a sync `Request -> Response` callable,
`ImisApp.handle`, so `httpx.MockTransport(app.handle)` drives the same code without sockets.

Every `/api` and `/token` request is counted, delayed and possibly faulted (see `faults.py`); the
admin API under `/_sim/` is never authenticated, faulted or counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.imis import wire
from simulators.imis.faults import FaultKind, Faults
from simulators.imis.state import (
    DEFAULT_CYCLE,
    DEFAULT_EFFECTIVE_DATE,
    REVERSAL_OPERATIONS,
    BadRequest,
    Conflict,
    ImisState,
    InvalidGrant,
    NotFound,
    Refused,
    SimError,
)

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"

MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    b"<h1>iMIS is temporarily unavailable</h1><p>The site is down for scheduled maintenance. "
    b"Please try again later.</p></body></html>"
)
SIGN_IN_PAGE = (
    b'<!DOCTYPE html><html><head><title>Sign In</title></head><body><form method="post" '
    b'action="/iMIS/ContactManagement/SignIn.aspx"><input name="username"/>'
    b'<input name="password" type="password"/><button>Sign In</button></form></body></html>'
)
BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)
GATEWAY_TIMEOUT_PAGE = (
    b"<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1>"
    b"</center></body></html>"
)


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str  # still percent-encoded, without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, wire.dumps(payload), JSON, headers)


Handler = Callable[[Request, tuple[str, ...]], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    operation: str | None  # None: admin, not counted
    handler: Handler
    params: tuple[str, ...] = ()
    auth: bool = True


class SeedBillingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoices: int = Field(ge=0)
    seed: int
    cycle_name: str = DEFAULT_CYCLE
    accounting_method: Literal[0, 1, "cash", "accrual"] = 0
    effective_date: datetime = DEFAULT_EFFECTIVE_DATE
    other_billings: int = Field(default=1, ge=0)


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal
    pending: bool = False


class ExamplesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_8158: Literal["cash", "accrual", "order"] = "cash"


class ImisApp:
    """ASGI app (and sync handler) over one `ImisState`."""

    def __init__(self, state: ImisState) -> None:
        self.state = state
        self._closing = False

    def close(self) -> None:
        """Cut long fault sleeps short (used when the server stops)."""
        self._closing = True

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
            await _send(send, self._run_handler(route, request))
            return
        self.state.request_started(route.operation)
        status: int | None = None
        try:
            steps = self._counted(route, request)
            try:
                while True:
                    await self._sleep(next(steps))
            except StopIteration as done:
                reply: Reply = done.value
            status = reply.status
            await _send(send, reply)
        finally:
            self.state.request_finished(status)

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
            reply = self._run_handler(route, req)
        else:
            self.state.request_started(route.operation)
            status: int | None = None
            try:
                steps = self._counted(route, req)
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
                self.state.request_finished(status)
        headers = [("content-type", reply.content_type), *reply.headers]
        return httpx.Response(reply.status, headers=headers, content=reply.body)

    # ------------------------------------------------------------------ the counted path

    def _counted(self, route: Route, request: Request) -> Generator[float, None, Reply]:
        """Yields the seconds to wait, returns the reply: one body for the async and sync drivers."""
        assert route.operation is not None
        decision = self.state.faults.decide(route.operation, api=route.operation != "token")
        settings = decision.settings
        if decision.delay_seconds > 0:
            yield decision.delay_seconds
        kind = decision.kind
        if kind is FaultKind.TOO_MANY_REQUESTS:
            return json_reply(
                429,
                {"Message": "Too many requests. Please retry later."},
                (("Retry-After", str(settings.retry_after_seconds)),),
            )
        if kind is FaultKind.SERVER_ERROR:
            return json_reply(500, {"Message": "An error has occurred."})
        if kind is FaultKind.MAINTENANCE_HTML:
            return Reply(503, MAINTENANCE_PAGE, HTML, (("Retry-After", str(settings.retry_after_seconds)),))
        if kind is FaultKind.HTML_200:
            return Reply(200, SIGN_IN_PAGE, HTML)
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
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not self.state.token_valid(token.strip()):
                return json_reply(
                    401,
                    {"Message": "Authorization has been denied for this request."},
                    (("WWW-Authenticate", 'Bearer realm="iMIS"'),),
                )
        return self._run_handler(route, request)

    def _run_handler(self, route: Route, request: Request) -> Reply:
        try:
            return route.handler(request, route.params)
        except Refused as exc:
            return self._refusal(exc.message)
        except BadRequest as exc:
            return json_reply(400, wire.errors(exc.message, exc.field))
        except NotFound as exc:
            return json_reply(404, wire.errors(exc.message, exc.field))
        except Conflict as exc:
            return json_reply(409, wire.errors(exc.message, exc.field))
        except SimError as exc:
            return json_reply(400, wire.errors(exc.message, exc.field))

    def _refusal(self, message: str) -> Reply:
        if self.state.faults.settings.refusal_style == "400":
            return json_reply(400, wire.errors(message))
        return json_reply(200, wire.refusal_200(message))

    # ------------------------------------------------------------------ routing

    def route(self, request: Request) -> Route:
        raw_segments = [s for s in request.raw_path.split("/") if s]
        segments = [unquote(s) for s in raw_segments]
        lowered = [s.lower() for s in segments]
        method = request.method.upper()
        if lowered[:1] == ["_sim"]:
            return self._admin_route(method, lowered[1:], segments[1:])
        if lowered == ["token"]:
            if method == "POST":
                return Route("token", self._token, auth=False)
            return Route("token", _method_not_allowed, auth=False)
        if lowered[:1] != ["api"] or len(lowered) < 2:
            return Route("unknown", _not_found, auth=False)
        entity, rest, raw_rest = lowered[1], segments[2:], raw_segments[2:]
        if len(rest) == 1 and ":" in raw_rest[0] and rest[0] != "_execute":
            # IIS refuses a literal ':' in a path; ids like "CASH:23415:<key>" must be URL-encoded.
            return Route(f"{_ENTITY_NAMES.get(entity, entity)}.get", _dangerous_path, auth=False)
        if entity == "billinglog":
            if not rest:
                if method == "GET":
                    return Route("BillingLog.list", self._billing_log_list)
                if method == "POST":
                    return Route("BillingLog.create", self._billing_log_create)
            elif len(rest) == 1 and method == "GET":
                return Route("BillingLog.get", self._billing_log_get, (rest[0],))
        elif entity == "invoicesummary":
            if not rest and method == "GET":
                return Route("InvoiceSummary.list", self._invoice_list)
            if len(rest) == 1 and method == "GET":
                return Route("InvoiceSummary.get", self._invoice_get, (rest[0],))
        elif entity == "invoice" and lowered[2:] == ["_execute"] and method == "POST":
            name = wire.operation_name(request.body, _INVOICE_OPERATION_LOOKUP) or "unknown"
            return Route(f"Invoice.{name}", self._invoice_execute)
        elif entity == "taskdefinition" and lowered[2:] == ["_execute"] and method == "POST":
            return Route("TaskDefinition.execute", self._task_execute)
        elif entity == "batchsummary":
            if lowered[2:] == ["_execute"] and method == "POST":
                return Route("BatchSummary.Post", self._batch_post)
            if len(rest) == 1 and method == "GET":
                return Route("BatchSummary.get", self._batch_get, (rest[0],))
        if entity in _ENTITY_NAMES:
            return Route(f"{_ENTITY_NAMES[entity]}.unknown", _method_not_allowed)
        return Route("unknown", _not_found)

    # ------------------------------------------------------------------ /token

    def _token(self, request: Request, _: tuple[str, ...]) -> Reply:
        content_type = request.headers.get("content-type", "")
        if "application/x-www-form-urlencoded" not in content_type.lower():
            return json_reply(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The token request must be application/x-www-form-urlencoded.",
                },
            )
        form = wire.parse_form(request.body)
        if form.get("grant_type") != "password":
            return json_reply(400, {"error": "unsupported_grant_type"})
        try:
            token, lifetime = self.state.issue_token(form.get("username", ""), form.get("password", ""))
        except InvalidGrant as exc:
            return json_reply(400, {"error": "invalid_grant", "error_description": exc.message})
        return json_reply(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(lifetime),
                "userName": self.state.username,
            },
        )

    # ------------------------------------------------------------------ BillingLog

    def _billing_log_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return json_reply(200, wire.billing_log(self.state.billing_log(params[0])))

    def _billing_log_list(self, request: Request, _: tuple[str, ...]) -> Reply:
        query = wire.parse_list_query(request.query, self.state.faults.settings.page_size_cap)
        with self.state.lock:
            logs, total = self.state.find_billing_logs(query.filters, query.offset, query.limit)
            items = [wire.billing_log(log) for log in logs]
        return json_reply(200, wire.paged(items, wire.T_BILLING_LOG, query.offset, query.limit, total))

    def _billing_log_create(self, request: Request, _: tuple[str, ...]) -> Reply:
        log = wire.parse_billing_log(request.body)
        with self.state.lock:
            created = self.state.create_billing_log(log)
            return json_reply(201, wire.billing_log(created))

    # ------------------------------------------------------------------ InvoiceSummary

    def _invoice_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            invoice = self.state.invoice(params[0])
            return Reply(200, wire.invoice_summary_json(invoice, self.state.parties))

    def _invoice_list(self, request: Request, _: tuple[str, ...]) -> Reply:
        query = wire.parse_list_query(request.query, self.state.faults.settings.page_size_cap)
        with self.state.lock:
            invoices, total = self.state.find_invoices(query.filters, query.offset, query.limit)
            items = [wire.invoice_summary_json(i, self.state.parties) for i in invoices]
        return Reply(200, wire.paged_json(items, wire.T_INVOICE_SUMMARY, query.offset, query.limit, total))

    # ------------------------------------------------------------------ Invoice/_execute

    def _invoice_execute(self, request: Request, _: tuple[str, ...]) -> Reply:
        call = wire.parse_invoice_execute(request.body)
        invoice_id = call.invoice_id
        if invoice_id is None and call.number is not None:
            invoice_id = self.state.invoice_id_for_number(call.number)
        mode = self.state.faults.invoice_fault(invoice_id)
        if mode is not None:
            return self._invoice_fault(mode, call.operation, invoice_id or "")
        return json_reply(200, wire.service_response(self._dispatch_invoice(call)))

    def _invoice_fault(self, mode: str, operation: str, invoice_id: str) -> Reply:
        if mode == "refuse":
            return self._refusal(self.state.refuse_by_fault(operation, invoice_id).message)
        if mode == "500":
            return json_reply(500, {"Message": "An error has occurred."})
        if mode == "html":
            return Reply(200, SIGN_IN_PAGE, HTML)
        body = wire.dumps(wire.service_response(True))
        return Reply(200, body[: len(body) // 2], JSON)

    def _dispatch_invoice(self, call: wire.InvoiceCall) -> Any:
        state, op = self.state, call.operation
        try:
            if op == "CanCashInvoiceBeReversed":
                return state.can_cash_invoice_be_reversed(call.invoice_id or "")
            if op == "GetTransactionsInvoiceReferenceNumber":
                return state.invoice(call.invoice_id or "").number
            number = call.number if call.number is not None else -1
            if op == "CanInvoiceBeReversed":
                return state.can_invoice_be_reversed(number)
            if op == "CanOrderInvoiceBeAdjusted":
                return state.can_order_invoice_be_adjusted(number)
            if op == "CanDuesInvoiceBeAdjusted":
                return state.can_dues_invoice_be_adjusted(number)
            if op == "CanInvoiceBeRefunded":
                return state.can_invoice_be_refunded(number)
        except NotFound as exc:
            raise Refused(exc.message) from None
        action = call.action
        assert action is not None
        if op in REVERSAL_OPERATIONS:
            state.reverse_invoice(op, action)
        elif op == "ProcessWriteOff":
            state.write_off(action)
        elif op == "ProcessRecordRefund":
            state.record_refund(action)
        elif op in ("ProcessCashAdjustment", "ProcessAccrualAdjustment", "ProcessOrderAdjustment"):
            state.adjust_invoice(op, action)
        elif op == "ProcessFundraisingAdjustment":
            state.adjust_fundraising(action)
        elif op == "UpdateEventInvoiceBillToId":
            state.update_event_bill_to(action)
        else:  # pragma: no cover - wire.INVOICE_OPERATIONS and this table list the same names
            raise BadRequest(f"'{op}' is not implemented.", "OperationName")
        return True

    # ------------------------------------------------------------------ TaskDefinition, BatchSummary

    def _task_execute(self, request: Request, _: tuple[str, ...]) -> Reply:
        task_log_id = self.state.submit_task(wire.parse_task(request.body))
        return json_reply(202, wire.execute_result({"TaskLogId": task_log_id}))

    def _batch_post(self, request: Request, _: tuple[str, ...]) -> Reply:
        self.state.post_batch(wire.parse_batch_execute(request.body))
        return json_reply(200, wire.service_response(True))

    def _batch_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return json_reply(200, wire.batch_summary(self.state.batch(params[0])))

    # ------------------------------------------------------------------ /_sim admin API

    def _admin_route(self, method: str, lowered: list[str], segments: list[str]) -> Route:
        table: dict[tuple[str, ...], dict[str, Handler]] = {
            ("health",): {"GET": lambda r, p: json_reply(200, {"ok": True})},
            ("counters",): {"GET": lambda r, p: json_reply(200, self.state.counters())},
            ("counters", "reset"): {"POST": self._admin_reset_counters},
            ("faults",): {"GET": self._admin_faults, "PATCH": self._admin_patch_faults},
            ("billings",): {"POST": self._admin_seed_billing},
            ("examples",): {"POST": self._admin_seed_examples},
            ("invoices",): {"GET": self._admin_invoices},
            ("tasks",): {"GET": lambda r, p: json_reply(200, self._tasks())},
            ("tokens", "expire"): {"POST": self._admin_expire_tokens},
            ("reset",): {"POST": self._admin_reset},
        }
        handlers = table.get(tuple(lowered))
        params: tuple[str, ...] = ()
        if handlers is None and len(lowered) == 3 and lowered[0] == "invoices" and lowered[2] == "payments":
            handlers, params = {"POST": self._admin_payment}, (segments[1],)
        elif handlers is None and len(lowered) == 2 and lowered[0] == "invoices":
            handlers, params = {"GET": self._admin_invoice}, (segments[1],)
        elif handlers is None and len(lowered) == 3 and lowered[0] == "billing-logs" and lowered[2] == "history":
            handlers, params = {"GET": self._admin_history}, (segments[1],)
        elif handlers is None and len(lowered) == 2 and lowered[0] == "tasks":
            handlers, params = {"GET": self._admin_task}, (segments[1],)
        if handlers is None:
            return Route(None, _not_found, auth=False)
        handler = handlers.get(method)
        if handler is None:
            return Route(None, _method_not_allowed, auth=False)
        return Route(None, handler, params, auth=False)

    def _admin_reset_counters(self, _: Request, __: tuple[str, ...]) -> Reply:
        self.state.reset_counters()
        return json_reply(200, self.state.counters())

    def _admin_faults(self, _: Request, __: tuple[str, ...]) -> Reply:
        return json_reply(200, self.state.faults.settings.public_dict())

    def _admin_patch_faults(self, request: Request, _: tuple[str, ...]) -> Reply:
        patch = wire.load_json(request.body)
        if not isinstance(patch, dict):
            raise BadRequest("The fault patch must be a JSON object.")
        try:
            updated: Faults = self.state.faults.update(_floats(patch))
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid fault settings", "details": _errors(exc)})
        return json_reply(200, updated.public_dict())

    def _admin_seed_billing(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            body = SeedBillingBody.model_validate(_floats(wire.load_json(request.body)))
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid seed request", "details": _errors(exc)})
        seeded = self.state.seed_billing(
            body.invoices,
            body.seed,
            cycle_name=body.cycle_name,
            accounting_method=body.accounting_method,
            effective_date=body.effective_date,
            other_billings=body.other_billings,
        )
        return json_reply(201, seeded.to_dict())

    def _admin_seed_examples(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            raw = wire.load_json(request.body) if request.body.strip() else {}
            body = ExamplesBody.model_validate(raw)
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid examples request", "details": _errors(exc)})
        return json_reply(201, self.state.seed_examples(body.invoice_8158).to_dict())

    def _admin_payment(self, request: Request, params: tuple[str, ...]) -> Reply:
        try:
            body = PaymentBody.model_validate(wire.load_json(request.body))
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid payment", "details": _errors(exc)})
        with self.state.lock:
            invoice = self.state.apply_payment(params[0], body.amount, pending=body.pending)
            return json_reply(200, invoice.dump())

    def _admin_invoices(self, request: Request, _: tuple[str, ...]) -> Reply:
        key = None
        for flt in wire.parse_list_query(request.query, 1).filters:
            if flt.field.lower() == "billinglogkey":
                key = flt.values[0]
        return json_reply(200, self.state.dump_invoices(key))

    def _admin_invoice(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return json_reply(200, self.state.invoice(params[0]).dump())

    def _admin_history(self, _: Request, params: tuple[str, ...]) -> Reply:
        history = self.state.billing_log_history(params[0])
        return json_reply(200, [{"status": status, "at": wire.render_datetime(at)} for status, at in history])

    def _tasks(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [t.dump() for t in self.state.tasks.values()]

    def _admin_task(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            task = self.state.tasks.get(params[0])
            if task is None:
                raise NotFound(f"Task '{params[0]}' was not found.")
            return json_reply(200, task.dump())

    def _admin_expire_tokens(self, _: Request, __: tuple[str, ...]) -> Reply:
        return json_reply(200, {"expired": self.state.expire_tokens()})

    def _admin_reset(self, _: Request, __: tuple[str, ...]) -> Reply:
        self.state.reset()
        return json_reply(200, {"ok": True})


_ENTITY_NAMES = {
    "billinglog": "BillingLog",
    "invoicesummary": "InvoiceSummary",
    "invoice": "Invoice",
    "taskdefinition": "TaskDefinition",
    "batchsummary": "BatchSummary",
}
_INVOICE_OPERATION_LOOKUP = {name.lower(): name for name in wire.INVOICE_OPERATIONS}


def _not_found(_: Request, __: tuple[str, ...]) -> Reply:
    return json_reply(404, wire.errors("No HTTP resource was found that matches the request URI."))


def _method_not_allowed(_: Request, __: tuple[str, ...]) -> Reply:
    return json_reply(405, wire.errors("The requested resource does not support this HTTP method."))


def _dangerous_path(_: Request, __: tuple[str, ...]) -> Reply:
    return Reply(
        400,
        b"<html><body><h2>A potentially dangerous Request.Path value was detected from the client (:).</h2>"
        b"</body></html>",
        HTML,
    )


def _floats(value: Any) -> Any:
    """Decimals from wire.load_json back to plain numbers for pydantic models of floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()]


async def _send(send: Any, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
