"""The HTTP face of the Aria simulator: routing and translation only (moto's `responses.py` + `urls.py`).

`AriaApp` plugs Aria's calls into `simulators.common.app.SimulatorApp`, which makes it a raw ASGI
application (for uvicorn) and a sync `Request -> Response` callable, `AriaApp.handle`, for
`httpx.MockTransport`.

Every call is a POST to `/v1/core`, `/api/ws/api_ws_class_dispatcher.php` or
`/api/AriaQuery/objects.php` (each path answers every call) naming itself in `rest_call`; the body is
JSON or form-encoded. Authentication (`client_no` + `auth_key` in the body) and every business error
are answered with HTTP 200 and an `error_code`. Each call is counted under its `rest_call`, delayed
and possibly faulted (`faults.py`); a gen_rb_m write is in progress on its billing group from its
arrival to its reply, so a later one on the same group meanwhile gets 3108.

The admin API under `/_sim/` (never authenticated, faulted or counted) adds to the kit's health,
counters, faults and reset: `POST runs` (seed a bill run), `GET invoices[?bill_date=]`,
`GET invoices/{no}`, `POST invoices/{no}/payments` and `POST invoices/{no}/void`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.aria import wire
from simulators.aria.faults import RebillFault
from simulators.aria.seeding import DEFAULT_BILL_DATE, seed_bill_run
from simulators.aria.state import AriaError, AriaState, Arrival, ErrorCode
from simulators.common import HTML, AdminRoutes, PathParts, Reply, Request, Route, SimulatorApp, load_json
from simulators.common.http import Headers, validation_details

API_PATHS = frozenset(
    {("v1", "core"), ("api", "ws", "api_ws_class_dispatcher.php"), ("api", "ariaquery", "objects.php")}
)
INTERNAL_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>"
    b"<h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>"
)


@dataclass(slots=True)
class _Call:
    """One API request: its `rest_call` and parameters, read once when routed (the route's handler)."""

    app: AriaApp
    name: str
    params: dict[str, Any]
    failure: AriaError | None = None  # the body could not be read
    arrival: Arrival | None = None  # a gen_rb_m write in progress

    def __call__(self, _: Request, __: tuple[str, ...]) -> Reply:
        return self.app.answer(self)


class SeedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoices: int = Field(ge=0)
    seed: int
    bill_date: date = DEFAULT_BILL_DATE


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal = Field(gt=0)
    paid_date: date | None = None


class AriaApp(SimulatorApp[AriaState]):
    """ASGI app (and sync handler) over one `AriaState`."""

    def __init__(self, state: AriaState) -> None:
        super().__init__(state)
        self._calls: dict[str, Callable[[_Call], dict[str, Any]]] = {
            "get_invoice_information_m": self._invoice_information,
            "get_invoice_details_m": self._invoice_details,
            "get_invoice_history_m": self._invoice_history,
            "gen_rb_m": self._gen_rb_m,
        }

    def server_fault_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        if status == 500:  # Aria's web tier answers a crash with an HTML page, not an error_code
            return Reply(500, INTERNAL_ERROR_PAGE, HTML, headers)
        return super().server_fault_reply(status, message, headers)

    def authenticate(self, request: Request) -> Reply | None:
        """Never here: the credentials are in the body, checked with it (`answer`), answered with 1004."""
        return None

    def dispatch(self, route: Route, request: Request) -> Reply:
        try:
            return super().dispatch(route, request)
        except AriaError as exc:  # only admin routes get here: API calls answer their errors themselves
            return self.error_reply(
                404 if exc.code in (ErrorCode.NO_INVOICE, ErrorCode.NO_ACCOUNT) else 400, exc.message
            )

    # ------------------------------------------------------------------ routing

    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        if tuple(path.lowered) not in API_PATHS:
            return Route("unknown", self.not_found, auth=False)
        if method != "POST":
            return Route("unknown", self.method_not_allowed, auth=False)
        try:
            params = wire.parse_body(request.headers.get("content-type", ""), request.body)
        except AriaError as exc:
            return Route("unparsable", _Call(self, "unparsable", {}, failure=exc), auth=False)
        name = wire.rest_call(params) or ""
        return Route(name if name in self._calls else "unknown", _Call(self, name, params), auth=False)

    @contextmanager
    def in_progress(self, route: Route, request: Request) -> Iterator[None]:
        arrival = self._arrive(route.handler)
        try:
            yield
        finally:
            if arrival is not None:
                self.state.leave(arrival)

    def _arrive(self, handler: object) -> Arrival | None:
        """An authenticated gen_rb_m write takes its place on its billing group."""
        if not isinstance(handler, _Call) or handler.name != "gen_rb_m" or handler.failure is not None:
            return None
        try:
            self.state.authenticate(*wire.credentials(handler.params))
            if wire.optional_boolean(handler.params, "do_write") is False:
                return None
            handler.arrival = self.state.arrive(wire.account_ref(handler.params))
        except AriaError:
            return None
        return handler.arrival

    # ------------------------------------------------------------------ the calls

    def answer(self, call: _Call) -> Reply:
        """HTTP 200 whatever happens: the call's reply, or `error_code` / `error_msg`."""
        try:
            if call.failure is not None:
                raise call.failure
            self.state.authenticate(*wire.credentials(call.params))
            wire.check_output_format(call.params)
            if not call.name:
                raise AriaError(ErrorCode.MISSING_PARAMETER, "missing required parameter: rest_call")
            handler = self._calls.get(call.name)
            if handler is None:
                raise AriaError(ErrorCode.INVALID_INPUT, f"invalid rest_call: {call.name}")
            payload = handler(call)
            code = ErrorCode.OK
        except AriaError as exc:
            payload, code = wire.error(exc.code, exc.message), exc.code
        self.state.answered(code)
        return self.json_reply(200, payload)

    def _invoice_information(self, call: _Call) -> dict[str, Any]:
        query, offset, limit = wire.parse_query(call.params, self.state.faults.settings.page_cap)
        with self.state.lock:
            invoices, total = self.state.query_invoices(query, offset, limit)
            return wire.invoice_page(invoices, offset, total)

    def _invoice_details(self, call: _Call) -> dict[str, Any]:
        invoice_no = wire.long(call.params, "invoice_no")
        with self.state.lock:
            return wire.invoice_details(self.state.invoice(invoice_no, wire.account_ref(call.params)))

    def _invoice_history(self, call: _Call) -> dict[str, Any]:
        request = wire.parse_history(call.params)
        with self.state.lock:
            return wire.history(self.state.history(request))

    def _gen_rb_m(self, call: _Call) -> dict[str, Any]:
        request = wire.parse_rebill(call.params)
        fault = self.state.faults.rebill_fault()
        if fault is RebillFault.BUSY:
            raise AriaError(ErrorCode.BILLING_GROUP_BUSY, "another invoice in progress for the same billing group")
        if fault is RebillFault.UNEXPECTED:
            if self.state.faults.settings.unexpected_applies:
                with suppress(AriaError):  # refused anyway: the 1001 hides that too
                    self.state.gen_rb_m(request, call.arrival)
            raise AriaError(ErrorCode.UNEXPECTED, "unexpected error")
        with self.state.lock:
            return wire.rebill(self.state.gen_rb_m(request, call.arrival))

    # ------------------------------------------------------------------ /_sim admin API

    def admin_routes(self) -> AdminRoutes:
        return {
            **super().admin_routes(),
            ("runs",): {"POST": self._admin_seed},
            ("invoices",): {"GET": self._admin_invoices},
            ("invoices", "*"): {"GET": self._admin_invoice},
            ("invoices", "*", "payments"): {"POST": self._admin_payment},
            ("invoices", "*", "void"): {"POST": self._admin_void},
        }

    def _admin_seed(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            body = SeedBody.model_validate(load_json(request.body))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid seed request", "details": validation_details(exc)})
        seeded = seed_bill_run(self.state, invoices=body.invoices, seed=body.seed, bill_date=body.bill_date)
        return self.json_reply(201, seeded.to_dict())

    def _admin_invoices(self, request: Request, _: tuple[str, ...]) -> Reply:
        raw = parse_qs(request.query).get("bill_date", [None])[0]
        bill_date = None if raw is None else wire.parse_date(raw, "bill_date")
        return self.json_reply(200, self.state.dump_invoices(bill_date))

    def _admin_invoice(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return self.json_reply(200, self.state.invoice(_number(params[0])).dump())

    def _admin_payment(self, request: Request, params: tuple[str, ...]) -> Reply:
        try:
            body = PaymentBody.model_validate(load_json(request.body))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid payment", "details": validation_details(exc)})
        with self.state.lock:
            invoice = self.state.pay(_number(params[0]), body.amount, paid_date=body.paid_date)
            return self.json_reply(200, invoice.dump())

    def _admin_void(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return self.json_reply(200, self.state.void(_number(params[0])).dump())


def _number(segment: str) -> int:
    if not segment.isdigit():
        raise AriaError(ErrorCode.NO_INVOICE, f"invoice {segment} does not exist")
    return int(segment)
