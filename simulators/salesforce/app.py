"""The HTTP face of the Salesforce simulator: routing and translation only (moto's `responses.py` + `urls.py`).

`SalesforceApp` plugs the org's routes into `simulators.common.app.SimulatorApp` (ASGI for uvicorn,
and `handle` for `httpx.MockTransport`):

    POST /services/oauth2/token                                                 token (not counted as usage)
    GET  /services/data/vXX.X/query?q=SOQL                                       query
    GET  /services/data/vXX.X/query/<locator>                                    query.more
    POST /services/data/vXX.X/commerce/invoicing/invoices/<id>/actions/void      void
    POST /services/data/vXX.X/commerce/invoicing/invoices/collection/actions/generate           generate
    POST /services/data/vXX.X/commerce/invoicing/billing-schedules/collection/actions/recover   recover

Any version from v62.0 on is served. Every `/services/data` reply the org itself makes carries
`Sforce-Limit-Info: api-usage=N/M`; each request that passes authentication counts against the
daily allocation, and once it is spent the answer is 403 REQUEST_LIMIT_EXCEEDED (TotalRequests).

The admin API under `/_sim/` (never authenticated, faulted or counted) adds to the kit's:
`POST runs` (seed one InvoiceBatchRun), `GET invoices/<id>`, `POST invoices/<id>/payments`,
`GET schedules/<id>`, `POST tokens/expire`, `POST locators/expire`, `GET|PUT usage`,
`POST walks/finish`.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.common.app import AdminRoutes, SimulatorApp
from simulators.common.http import (
    Handler,
    Headers,
    PathParts,
    Reply,
    Request,
    Route,
    decimals_to_floats,
    load_json,
    validation_details,
)
from simulators.salesforce import wire
from simulators.salesforce.state import DEFAULT_INVOICE_DATE, OAuthError, SalesforceError, SalesforceState

__all__ = ["LIMIT_INFO", "MIN_API_VERSION", "SalesforceApp"]

LIMIT_INFO = "Sforce-Limit-Info"
MIN_API_VERSION = (62, 0)

MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    b"<h1>Salesforce is temporarily unavailable</h1><p>Your org is undergoing maintenance. "
    b"Please try again later.</p></body></html>"
)

_VERSION = re.compile(r"v(\d+)\.(\d+)")
_ACTIONS = "commerce/invoicing"


class SeedRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoices: int = Field(ge=0)
    seed: int
    invoice_date: date = DEFAULT_INVOICE_DATE


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Decimal


class UsageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    used: int = Field(ge=0)


class SalesforceApp(SimulatorApp[SalesforceState]):
    """ASGI app (and sync handler) over one `SalesforceState`."""

    maintenance_page = MAINTENANCE_PAGE

    # ------------------------------------------------------------------ the platform's replies

    def error_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(status, "INVALID_INPUT")
        return self.json_reply(status, wire.error_body(code, message), headers)

    def not_found(self, _: Request, __: tuple[str, ...]) -> Reply:
        return self.error_reply(404, "The requested resource does not exist")

    def server_fault_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        # Salesforce throttles with a 403, never a 429 (faults.py); its unhandled errors are UNKNOWN_EXCEPTION.
        if status == 429:
            body = wire.error_body("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
            return self.json_reply(403, body, self._limit_info())
        body = wire.error_body(
            "UNKNOWN_EXCEPTION",
            f"An unexpected error occurred. Please include this ErrorId if you contact support: "
            f"{secrets.randbelow(10**9)}-{secrets.randbelow(10**5)} ({secrets.randbelow(10**10)})",
        )
        return self.json_reply(status, body, self._limit_info())

    def _limit_info(self) -> Headers:
        return ((LIMIT_INFO, self.state.usage().header()),)

    def authenticate(self, request: Request) -> Reply | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.state.token_valid(token.strip()):
            body = wire.error_body("INVALID_SESSION_ID", "Session expired or invalid")
            return self.json_reply(401, body, (("WWW-Authenticate", 'Token realm="Salesforce"'), *self._limit_info()))
        try:
            self.state.count_request()
        except SalesforceError as exc:
            return self.json_reply(exc.status, wire.error_body(exc.error_code, exc.message), self._limit_info())
        return None

    def dispatch(self, route: Route, request: Request) -> Reply:
        try:
            reply = super().dispatch(route, request)
        except SalesforceError as exc:
            reply = self.json_reply(exc.status, wire.error_body(exc.error_code, exc.message))
        except OAuthError as exc:
            return self.json_reply(400, {"error": exc.error, "error_description": exc.description})
        if route.operation is not None and route.api:
            reply.headers = (*reply.headers, *self._limit_info())
        return reply

    # ------------------------------------------------------------------ routing

    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        lowered, decoded = path.lowered, path.decoded
        if lowered == ["services", "oauth2", "token"]:
            return Route("token", self._token if method == "POST" else self.method_not_allowed, auth=False, api=False)
        if lowered[:2] != ["services", "data"] or len(lowered) < 4 or not _supported(lowered[2]):
            return Route("unknown", self.not_found, auth=False)
        found = self._data_route(lowered[3:], decoded[3:])
        if found is None:
            return Route("unknown", self.not_found)
        operation, allowed, handler, param = found
        if method != allowed:
            return Route(operation, self._method_not_allowed(method, allowed))
        return Route(operation, handler, (decoded[2], param))

    def _data_route(self, rest: list[str], original: list[str]) -> tuple[str, str, Handler, str] | None:
        """(operation, method, handler, path parameter) of a path under `/services/data/vXX.X/`."""
        if rest == ["query"]:
            return "query", "GET", self._query, ""
        if len(rest) == 2 and rest[0] == "query":
            return "query.more", "GET", self._query_more, original[1]
        if rest[:2] != ["commerce", "invoicing"]:
            return None
        action = rest[2:]
        if (
            len(action) == 4
            and action[0] == "invoices"
            and action[1] != "collection"
            and action[2:] == ["actions", "void"]
        ):
            return "void", "POST", self._void, original[3]
        if action == ["invoices", "collection", "actions", "generate"]:
            return "generate", "POST", self._generate, ""
        if action == ["billing-schedules", "collection", "actions", "recover"]:
            return "recover", "POST", self._recover, ""
        return None

    def _method_not_allowed(self, method: str, allowed: str) -> Handler:
        def handler(_: Request, __: tuple[str, ...]) -> Reply:
            return self.error_reply(405, f"HTTP Method '{method}' not allowed. Allowed are {allowed}")

        return handler

    # ------------------------------------------------------------------ token

    def _token(self, request: Request, _: tuple[str, ...]) -> Reply:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", "").lower():
            raise OAuthError("invalid_request", "the token request must be application/x-www-form-urlencoded")
        form = {key: values[0] for key, values in parse_qs(request.body.decode("latin-1")).items()}
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token, issued_at = self.state.issue_token(form.get("client_id", ""), form.get("client_secret", ""))
        instance_url = f"http://{request.headers.get('host', 'localhost')}"
        return self.json_reply(
            200,
            {
                "access_token": token,
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
                "scope": "api",
                "instance_url": instance_url,
                "id": "https://login.salesforce.com/id/00D5g000004Ic2PEAS/0055g00000AbCdEAAV",
                "token_type": "Bearer",
                "issued_at": str(issued_at),
            },
        )

    # ------------------------------------------------------------------ the org's API

    def _query(self, request: Request, params: tuple[str, ...]) -> Reply:
        text = next(iter(parse_qs(request.query).get("q", ())), "")
        if not text.strip():
            raise SalesforceError(400, "MALFORMED_QUERY", "A query string has to be specified")
        page = self.state.query(text, f"/services/data/{params[0]}")
        return self.json_reply(200, wire.query_response(page, params[0]))

    def _query_more(self, _: Request, params: tuple[str, ...]) -> Reply:
        return self.json_reply(200, wire.query_response(self.state.query_more(params[1]), params[0]))

    def _void(self, _: Request, params: tuple[str, ...]) -> Reply:
        return self.json_reply(200, wire.async_response(self.state.void(params[1])))

    def _generate(self, request: Request, _: tuple[str, ...]) -> Reply:
        body = wire.parse_generate(request.body, self.state.today())
        return self.json_reply(200, wire.async_response(self.state.generate(body)))

    def _recover(self, request: Request, _: tuple[str, ...]) -> Reply:
        result = self.state.recover(wire.parse_recover(request.body))
        return self.json_reply(200, {"recoveryResults": [result]})

    # ------------------------------------------------------------------ /_sim admin API

    def admin_routes(self) -> AdminRoutes:
        return {
            **super().admin_routes(),
            ("runs",): {"POST": self._admin_seed_run},
            ("invoices", "*"): {"GET": self._admin_invoice},
            ("invoices", "*", "payments"): {"POST": self._admin_payment},
            ("schedules", "*"): {"GET": self._admin_schedule},
            ("tokens", "expire"): {"POST": lambda r, p: self.json_reply(200, {"expired": self.state.expire_tokens()})},
            ("locators", "expire"): {
                "POST": lambda r, p: self.json_reply(200, {"expired": self.state.expire_locators()})
            },
            ("usage",): {"GET": lambda r, p: self._usage_reply(), "PUT": self._admin_set_usage},
            ("walks", "finish"): {"POST": lambda r, p: self.json_reply(200, {"finished": self.state.finish_walks()})},
        }

    def _admin_seed_run(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            body = SeedRunBody.model_validate(decimals_to_floats(load_json(request.body)))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid seed request", "details": validation_details(exc)})
        seeded = self.state.seed_run(body.invoices, body.seed, invoice_date=body.invoice_date)
        return self.json_reply(201, seeded.to_dict())

    def _admin_invoice(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return self.json_reply(200, self.state.invoice(params[0]).dump())

    def _admin_payment(self, request: Request, params: tuple[str, ...]) -> Reply:
        try:
            body = PaymentBody.model_validate(load_json(request.body))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid payment", "details": validation_details(exc)})
        with self.state.lock:
            return self.json_reply(200, self.state.apply_payment(params[0], body.amount).dump())

    def _admin_schedule(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return self.json_reply(200, self.state.schedule(params[0]).dump())

    def _admin_set_usage(self, request: Request, _: tuple[str, ...]) -> Reply:
        try:
            body = UsageBody.model_validate(load_json(request.body))
        except ValidationError as exc:
            return self.json_reply(400, {"error": "invalid usage", "details": validation_details(exc)})
        self.state.set_usage(body.used)
        return self._usage_reply()

    def _usage_reply(self) -> Reply:
        usage = self.state.usage()
        return self.json_reply(200, {"used": usage.used, "allocation": usage.allocation})


def _supported(version: str) -> bool:
    match = _VERSION.fullmatch(version)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= MIN_API_VERSION
