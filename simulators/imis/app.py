"""The HTTP face of the iMIS simulator: routing and translation only (moto's `responses.py` + `urls.py`).

`ImisApp` plugs iMIS's routes into `simulators.common.app.SimulatorApp`, which makes it a raw ASGI
application (for uvicorn) and a sync `Request -> Response` callable, `ImisApp.handle`, so
`httpx.MockTransport(app.handle)` drives the same code without sockets.

Every `/api` and `/token` request is counted, delayed and possibly faulted (see
`simulators.common.faults`); the admin API under `/_sim/` is never authenticated, faulted or counted.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.common.app import AdminRoutes, SimulatorApp
from simulators.common.http import (
    HTML,
    JSON,
    Headers,
    PathParts,
    Reply,
    Request,
    Route,
    decimals_to_floats,
    validation_details,
)
from simulators.imis import wire
from simulators.imis.commands import REVERSAL_OPERATIONS
from simulators.imis.errors import BadRequest, Conflict, InvalidGrant, NotFound, Refused, SimError
from simulators.imis.seeding import DEFAULT_CYCLE, DEFAULT_EFFECTIVE_DATE
from simulators.imis.state import ImisState

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


def json_reply(status: int, payload: Any, headers: Headers = ()) -> Reply:
    return Reply(status, wire.dumps(payload), JSON, headers)


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


class ImisApp(SimulatorApp[ImisState]):
    """ASGI app (and sync handler) over one `ImisState`."""

    maintenance_page = MAINTENANCE_PAGE
    sign_in_page = SIGN_IN_PAGE

    def encode(self, payload: Any) -> bytes:
        return wire.dumps(payload)

    def error_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        return json_reply(status, wire.errors(message), headers)

    def server_fault_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        # Throttling and unhandled errors are answered by ASP.NET itself, not in the API's Errors shape.
        return json_reply(status, {"Message": message}, headers)

    def authenticate(self, request: Request) -> Reply | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.state.token_valid(token.strip()):
            return None
        return json_reply(
            401,
            {"Message": "Authorization has been denied for this request."},
            (("WWW-Authenticate", 'Bearer realm="iMIS"'),),
        )

    def dispatch(self, route: Route, request: Request) -> Reply:
        try:
            return super().dispatch(route, request)
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

    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        lowered, segments, raw_segments = path.lowered, path.decoded, path.raw
        if lowered == ["token"]:
            if method == "POST":
                return Route("token", self._token, auth=False, api=False)
            return Route("token", self.method_not_allowed, auth=False, api=False)
        if lowered[:1] != ["api"] or len(lowered) < 2:
            return Route("unknown", self.not_found, auth=False)
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
            return Route(f"{_ENTITY_NAMES[entity]}.unknown", self.method_not_allowed)
        return Route("unknown", self.not_found)

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

    def admin_routes(self) -> AdminRoutes:
        return {
            **super().admin_routes(),
            ("billings",): {"POST": self._admin_seed_billing},
            ("examples",): {"POST": self._admin_seed_examples},
            ("invoices",): {"GET": self._admin_invoices},
            ("invoices", "*"): {"GET": self._admin_invoice},
            ("invoices", "*", "payments"): {"POST": self._admin_payment},
            ("billing-logs", "*", "history"): {"GET": self._admin_history},
            ("tasks",): {"GET": lambda r, p: json_reply(200, self._tasks())},
            ("tasks", "*"): {"GET": self._admin_task},
            ("tokens", "expire"): {"POST": self._admin_expire_tokens},
        }

    def _admin_seed_billing(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            body = SeedBillingBody.model_validate(decimals_to_floats(wire.load_json(request.body)))
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid seed request", "details": validation_details(exc)})
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
            return json_reply(400, {"error": "invalid examples request", "details": validation_details(exc)})
        return json_reply(201, self.state.seed_examples(body.invoice_8158).to_dict())

    def _admin_payment(self, request: Request, params: tuple[str, ...]) -> Reply:
        try:
            body = PaymentBody.model_validate(wire.load_json(request.body))
        except ValidationError as exc:
            return json_reply(400, {"error": "invalid payment", "details": validation_details(exc)})
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


_ENTITY_NAMES = {
    "billinglog": "BillingLog",
    "invoicesummary": "InvoiceSummary",
    "invoice": "Invoice",
    "taskdefinition": "TaskDefinition",
    "batchsummary": "BatchSummary",
}
_INVOICE_OPERATION_LOOKUP = {name.lower(): name for name in wire.INVOICE_OPERATIONS}


def _dangerous_path(_: Request, __: tuple[str, ...]) -> Reply:
    return Reply(
        400,
        b"<html><body><h2>A potentially dangerous Request.Path value was detected from the client (:).</h2>"
        b"</body></html>",
        HTML,
    )
