"""The HTTP face of the EnergyCAP simulator: routing and translation only (moto's `responses.py` + `urls.py`).

Counting, delays, faults, ASGI, `handle` for `httpx.MockTransport` and the shared `/_sim/` admin
routes come from the kit (`simulators/common/app.py`). Here: the routes of the contract, the
`ECI-ApiKey` check (a write is a PUT or POST: 403 for a key without BillsAndBatches), the paging
headers, `ECI-Deprecated` on the v3 reverse, and EnergyCAP's error body `{"errors": [{"message"}]}`.

| method | path                                               | operation        |
|--------|----------------------------------------------------|------------------|
| GET    | /api/v3/bill, /api/v3/bill/{billId}                | bill.list, bill.get |
| PUT    | /api/v202510/bill/reverse                          | bill.reverse     |
| PUT    | /api/v3/bill/reverse (deprecated)                  | bill.reverse.v3  |
| GET    | /api/v3/batch, /api/v3/batch/{batchId}             | batch.list, batch.get |
| GET    | /api/v3/task, /api/v3/task/{taskGuid}              | task.list, task.get |
| POST   | /api/v3/import/bill                                | import.bill      |
| POST   | /api/v202401/import/bill/task/{taskGuid}/kickout   | import.kickout   |

Admin, beyond the kit's: `POST /_sim/periods` seeds a period, `GET /_sim/periods/{yyyymm}/corrected-bills`
is a corrected-bills CSV for it, `POST /_sim/accounts` adds an account (to fix a kickout),
`POST /_sim/api-keys` and `DELETE /_sim/api-keys/{key}` manage keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.common import (
    HTML,
    JSON,
    AdminRoutes,
    InvalidBody,
    PathParts,
    Reply,
    Request,
    Route,
    SimulatorApp,
    dumps,
    load_json,
)
from simulators.common.http import Headers, decimals_to_floats, validation_details
from simulators.energycap import wire
from simulators.energycap.corrected import corrected_bills_csv
from simulators.energycap.errors import NotFound, SimError
from simulators.energycap.state import DEFAULT_ACCOUNT_PERIOD, EnergyCapState, Page

T = TypeVar("T")

DEPRECATION = "This endpoint is deprecated; use PUT /api/v202510/bill/reverse."
SERVER_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body>"
    b"<h1>Server Error</h1><h2>500 - Internal server error.</h2>"
    b"<p>There is a problem with the resource you are looking for, and it cannot be displayed.</p></body></html>"
)
MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>EnergyCAP - Service Unavailable</title></head><body>"
    b"<h1>EnergyCAP is temporarily unavailable</h1><p>Please try again in a few minutes.</p></body></html>"
)
_WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})


class SeedBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bills: int = Field(ge=0)
    seed: int
    account_period: int = Field(DEFAULT_ACCOUNT_PERIOD, alias="accountPeriod")


class AccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    account_code: str = Field(alias="accountCode", min_length=1)
    meter_codes: list[str] = Field(alias="meterCodes", default_factory=list)
    account_info: str | None = Field(None, alias="accountInfo")


class ApiKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    key: str = Field(min_length=1)
    bills_and_batches: bool = Field(True, alias="billsAndBatches")


class EnergyCapApp(SimulatorApp[EnergyCapState]):
    """ASGI app (and sync handler) over one `EnergyCapState`."""

    maintenance_page = MAINTENANCE_PAGE

    def error_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        return Reply(status, wire.errors(message), JSON, headers)

    def server_fault_reply(self, status: int, message: str, headers: Headers = ()) -> Reply:
        if status >= 500:
            return Reply(status, SERVER_ERROR_PAGE, HTML, headers)
        return self.error_reply(status, message, headers)

    def authenticate(self, request: Request) -> Reply | None:
        try:
            self.state.authorize(request.headers.get("eci-apikey"), write=request.method.upper() in _WRITES)
        except SimError as exc:
            return self.error_reply(exc.status, exc.message)
        return None

    def dispatch(self, route: Route, request: Request) -> Reply:
        try:
            reply = route.handler(request, route.params)
        except SimError as exc:
            reply = self.error_reply(exc.status, exc.message)
        except InvalidBody as exc:
            reply = self.error_reply(400, exc.message)
        if route.operation is not None and route.operation in self.state.faults.settings.deprecated_operations:
            self.state.deprecated_call(route.operation)
            reply.headers = (*reply.headers, ("ECI-Deprecated", f"{route.operation} is deprecated (simulated)."))
        return reply

    # ------------------------------------------------------------------ routing

    def api_route(self, method: str, path: PathParts, request: Request) -> Route:
        parts = path.lowered
        if parts[:1] != ["api"] or len(parts) < 3:
            return Route("unknown", self.not_found)
        version, resource, rest = parts[1], parts[2], path.decoded[3:]
        table: dict[tuple[str, str, int], tuple[str, Callable[[Request, tuple[str, ...]], Reply]]] = {
            ("v3", "bill", 0): ("bill.list", self._bill_list),
            ("v3", "bill", 1): ("bill.get", self._bill_get),
            ("v3", "batch", 0): ("batch.list", self._batch_list),
            ("v3", "batch", 1): ("batch.get", self._batch_get),
            ("v3", "task", 0): ("task.list", self._task_list),
            ("v3", "task", 1): ("task.get", self._task_get),
        }
        lowered_rest = [segment.lower() for segment in rest]
        if resource == "bill" and lowered_rest == ["reverse"]:
            if version in ("v202510", "v3"):
                operation = "bill.reverse" if version == "v202510" else "bill.reverse.v3"
                return self._only(method, "PUT", Route(operation, self._reverse))
        elif resource == "import" and lowered_rest == ["bill"] and version == "v3":
            return self._only(method, "POST", Route("import.bill", self._import))
        elif (
            resource == "import"
            and version == "v202401"
            and len(rest) == 4
            and lowered_rest[:2] == ["bill", "task"]
            and lowered_rest[3] == "kickout"
        ):
            return self._only(method, "POST", Route("import.kickout", self._kickout, (rest[2],)))
        elif (version, resource, len(rest)) in table:
            operation, handler = table[(version, resource, len(rest))]
            return self._only(method, "GET", Route(operation, handler, tuple(rest)))
        return Route("unknown", self.not_found)

    def _only(self, method: str, allowed: str, route: Route) -> Route:
        if method == allowed:
            return route
        return Route(route.operation, self.method_not_allowed)

    # ------------------------------------------------------------------ lists and reads

    def _bill_list(self, request: Request, _: tuple[str, ...]) -> Reply:
        query = wire.parse_list_query(request.query)
        with self.state.lock:
            page = self.state.list_bills(query.filter, query.page_number, query.page_size)
            return _paged(page, wire.bills_json(page.items))

    def _batch_list(self, request: Request, _: tuple[str, ...]) -> Reply:
        query = wire.parse_list_query(request.query)
        with self.state.lock:
            page = self.state.list_batches(query.filter, query.page_number, query.page_size)
            return _paged(page, wire.batches_json(page.items))

    def _task_list(self, request: Request, _: tuple[str, ...]) -> Reply:
        query = wire.parse_list_query(request.query)
        with self.state.lock:
            page = self.state.list_tasks(query.filter, query.page_number, query.page_size)
            return _paged(page, dumps([wire.task_dict(task) for task in page.items]))

    def _bill_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return Reply(200, wire.bill_json(self.state.bill(_int_id("Bill", params[0]))))

    def _batch_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return Reply(200, wire.batch_json(self.state.batch(_int_id("Batch", params[0]))))

    def _task_get(self, _: Request, params: tuple[str, ...]) -> Reply:
        with self.state.lock:
            return Reply(200, dumps(wire.task_dict(self.state.task(params[0]))))

    # ------------------------------------------------------------------ writes

    def _reverse(self, request: Request, _: tuple[str, ...]) -> Reply:
        deprecated = "/v3/" in request.raw_path.lower()
        endpoint = "v3" if deprecated else "v202510"
        if deprecated:
            self.state.deprecated_call("PUT /api/v3/bill/reverse")
        result = self.state.reverse_bills(wire.parse_reverse(request.body), endpoint=endpoint)
        headers = (("ECI-Deprecated", DEPRECATION),) if deprecated else ()
        return Reply(200, dumps({"selected": result.selected, "updated": result.updated}), JSON, headers)

    def _import(self, request: Request, _: tuple[str, ...]) -> Reply:
        task = self.state.import_bills(wire.parse_import(request.body))
        return self._task_guid(task.guid)

    def _kickout(self, request: Request, params: tuple[str, ...]) -> Reply:
        mode, code = wire.parse_kickout(request.body)
        task = self.state.reimport_kickouts(params[0], mode, code)
        return self._task_guid(task.guid)

    def _task_guid(self, guid: str) -> Reply:
        if self.state.faults.settings.task_guid_reply == "object":
            return Reply(200, dumps({"taskGUId": guid}))
        return Reply(200, dumps(guid))

    # ------------------------------------------------------------------ /_sim admin API

    def admin_routes(self) -> AdminRoutes:
        return {
            **super().admin_routes(),
            ("periods",): {"POST": self._admin_seed},
            ("periods", "*", "corrected-bills"): {"GET": self._admin_corrected_bills},
            ("accounts",): {"POST": self._admin_account},
            ("api-keys",): {"POST": self._admin_add_key},
            ("api-keys", "*"): {"DELETE": self._admin_revoke_key},
        }

    def _admin_seed(self, request: Request, _: tuple[str, ...]) -> Reply:
        body = _admin_body(SeedBody, request)
        try:
            seeded = self.state.seed_period(body.bills, body.seed, body.account_period)
        except ValueError as exc:
            raise SimError(str(exc)) from None
        return self.json_reply(201, seeded.to_dict())

    def _admin_corrected_bills(self, _: Request, params: tuple[str, ...]) -> Reply:
        seeded = self.state.seeded.get(_int_id("Period", params[0]))
        if seeded is None:
            return self.error_reply(404, f"No period {params[0]} was seeded.")
        text = corrected_bills_csv(self.state, seeded)
        return Reply(200, text.encode(), "text/csv; charset=utf-8")

    def _admin_account(self, request: Request, _: tuple[str, ...]) -> Reply:
        body = _admin_body(AccountBody, request)
        account = self.state.add_account(body.account_code, body.meter_codes, body.account_info)
        meters = [{"meterId": m.meter_id, "meterCode": m.meter_code} for m in account.meters]
        return self.json_reply(
            201, {"accountId": account.account_id, "accountCode": account.account_code, "meters": meters}
        )

    def _admin_add_key(self, request: Request, _: tuple[str, ...]) -> Reply:
        body = _admin_body(ApiKeyBody, request)
        self.state.add_api_key(body.key, bills_and_batches=body.bills_and_batches)
        return self.json_reply(201, {"ok": True})

    def _admin_revoke_key(self, _: Request, params: tuple[str, ...]) -> Reply:
        return self.json_reply(200, {"revoked": self.state.revoke_api_key(params[0])})


def _paged(page: Page[Any], body: bytes) -> Reply:
    headers = (
        ("PageNumber", str(page.page_number)),
        ("PageSize", str(page.page_size)),
        ("TotalNumberOfRecords", str(page.total)),
        ("TotalPages", str(page.total_pages)),
    )
    return Reply(200, body, JSON, headers)


def _int_id(entity: str, text: str) -> int:
    """A route's integer id; anything else matches no route (404, as ASP.NET's `{id:int}` does)."""
    if not text.isdigit():
        raise NotFound(f"{entity} {text!r} was not found.")
    return int(text)


M = TypeVar("M", bound=BaseModel)


def _admin_body(model: type[M], request: Request) -> M:
    try:
        return model.model_validate(decimals_to_floats(load_json(request.body)))
    except ValidationError as exc:
        raise SimError(f"invalid admin request: {validation_details(exc)}") from None
