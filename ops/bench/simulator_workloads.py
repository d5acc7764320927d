"""What `simulator_throughput` sends to each platform's simulator: one `Workload` per platform.

A workload names the simulator's flags and the line it prints once it serves, prepares a run once
(authenticates as the platform's contract says, reads the ids it will name, builds the request
bodies), and then, in each client process, turns that preparation into one request maker per
operation of its mix: the calls the orchestrator's provider makes, in rough proportion. Bodies are
built up front where they can be: the client processes, not the simulator, are what costs most CPU.

Writes change state. Each client process writes its own share of the eligible invoices, each once;
when its share is spent, its writes name invoices it already wrote, which the simulator refuses as
the contract says (a second reversal, a second gen_rb_m, a second void) or, for EnergyCAP's bulk
reverse, selects without updating. The server's counters of those refusals are reported apart.
"""

from __future__ import annotations

import abc
import itertools
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx

from ops.bench import harness
from ops.bench.contenders import can_reverse_body, reversal_body
from orchestrator.adapters.providers.aria.client import CORE_PATH, OBJECT_QUERY_PATH
from orchestrator.adapters.providers.aria.corrections import load_corrections, rebill_lines
from orchestrator.adapters.providers.aria.eligibility import verdict
from orchestrator.adapters.providers.aria.queries import bill_run, one_invoice
from orchestrator.adapters.providers.aria.settings import AriaSettings
from orchestrator.adapters.providers.aria.wire import InvoiceDetails, InvoiceHeader
from orchestrator.adapters.providers.energycap.client import REVERSE_PATH, SELF_CONTAINED
from orchestrator.adapters.providers.energycap.filters import Field, Op, where
from orchestrator.adapters.providers.energycap.wire import BillData
from orchestrator.adapters.providers.http import decode_json, encode_json
from orchestrator.adapters.providers.salesforce.client import DEFAULT_API_VERSION
from orchestrator.adapters.providers.salesforce.eligibility import INVOICE_FIELDS
from orchestrator.adapters.providers.salesforce.soql import (
    INVOICE,
    INVOICE_LINE,
    MAX_IN_VALUES,
    eq,
    in_batches,
    is_in,
    select,
)

JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Call:
    """One request: `url` is relative to the simulator's base URL; `headers` add to the client's."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None


#: Makes an operation's next request (the process's random generator given).
Maker = Callable[[random.Random], Call]


@dataclass(frozen=True, slots=True)
class Setup:
    """A prepared run, sent to every client process: headers every request carries (the credentials
    where the platform takes them in a header) and the workload's own data (ids, bodies)."""

    headers: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)


class Workload(abc.ABC):
    """One platform's simulator and the mix of calls sent to it."""

    provider: ClassVar[str]
    #: The start of the line the simulator prints once it serves (the rest: what it seeded).
    ready: ClassVar[str]
    #: Operation -> share of the requests (the shares add up to 1).
    mix: ClassVar[dict[str, float]]
    #: Where the mix is described for a reader (shown with the results).
    description: ClassVar[str]

    def command(self, invoices: int) -> list[str]:
        return [sys.executable, "-m", f"simulators.{self.provider}", "--port", "0", *self.flags(invoices)]

    @abc.abstractmethod
    def flags(self, invoices: int) -> list[str]:
        """The simulator's flags besides the port: `invoices` to seed, seed 1, the credentials."""

    @abc.abstractmethod
    def prepare(self, client: httpx.Client, seeded: str, invoices: int) -> Setup:
        """Authenticate and read what the mix names (`seeded`: the rest of the ready line)."""

    @abc.abstractmethod
    def makers(self, setup: Setup, index: int, processes: int) -> dict[str, Maker]:
        """One maker per operation of `mix`, for client process `index` of `processes`."""

    def summary(self, counters: dict[str, Any]) -> dict[str, Any]:
        """What the simulator's counters say about the writes (applied, refused), for the report."""
        return {}


def own_share(ids: list[Any], index: int, processes: int) -> list[Any]:
    """The process's share of `ids` to write, shuffled (`next_target` pops from the end)."""
    todo = ids[index::processes]
    random.Random(index).shuffle(todo)
    return todo


def next_target(todo: list[Any], spent: list[Any], rng: random.Random) -> Any:
    """The next of the share; once it is spent, any of `spent` (written already: refused)."""
    return todo.pop() if todo else rng.choice(spent)


# --- iMIS ------------------------------------------------------------------------------------------


class Imis(Workload):
    provider = "imis"
    ready = "original BillingLogKey: "
    mix = {
        "InvoiceSummary.get": 0.45,
        "InvoiceSummary.list(limit=100)": 0.05,
        "Invoice.CanCashInvoiceBeReversed": 0.25,
        "Invoice.ProcessCashReversal": 0.25,
    }
    description = (
        "GET one InvoiceSummary; GET a 100-invoice page of the billing's summaries; POST Invoice/_execute "
        "CanCashInvoiceBeReversed; POST Invoice/_execute ProcessCashReversal (each invoice once, then refused)"
    )

    def flags(self, invoices: int) -> list[str]:
        return ["--invoices", str(invoices), "--seed", "1"]

    def prepare(self, client: httpx.Client, seeded: str, invoices: int) -> Setup:
        """A password-grant token and the billing's invoice ids (pages of 500)."""
        form = {"grant_type": "password", "username": "admin", "password": "secret"}
        token = client.post("/token", data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ids: list[str] = []
        offset = 0
        while True:
            params: dict[str, str | int] = {"BillingLogKey": seeded, "limit": 500, "offset": offset}
            data = client.get("/api/InvoiceSummary", params=params, headers=headers).json()
            ids += [item["InvoiceId"] for item in data["Items"]["$values"]]
            if not data["HasNext"]:
                break
            offset = data["NextOffset"]
        return Setup(headers, {"key": seeded, "ids": ids})

    def makers(self, setup: Setup, index: int, processes: int) -> dict[str, Maker]:
        ids: list[str] = setup.data["ids"]
        todo = own_share(ids, index, processes)  # then any invoice again
        get_paths = [f"/api/InvoiceSummary/{quote(i, safe='')}" for i in ids]
        page_paths = [
            "/api/InvoiceSummary?" + urlencode({"BillingLogKey": setup.data["key"], "limit": 100, "offset": offset})
            for offset in range(0, len(ids), 100)
        ]
        can_bodies = [can_reverse_body(i) for i in ids]
        execute = "/api/Invoice/_execute"
        return {
            "InvoiceSummary.get": lambda rng: Call("GET", rng.choice(get_paths)),
            "InvoiceSummary.list(limit=100)": lambda rng: Call("GET", rng.choice(page_paths)),
            "Invoice.CanCashInvoiceBeReversed": lambda rng: Call("POST", execute, rng.choice(can_bodies), JSON),
            "Invoice.ProcessCashReversal": lambda rng: Call(
                "POST", execute, reversal_body(next_target(todo, ids, rng)), JSON
            ),
        }

    def summary(self, counters: dict[str, Any]) -> dict[str, Any]:
        return {
            "server_reversals": len(counters["reversals"]),
            "server_refused_second_reversals": counters["refused_second_reversals"],
        }


# --- Aria ------------------------------------------------------------------------------------------

ARIA_CLIENT_NO = 7_000_123
ARIA_AUTH_KEY = "bench-auth-key"
ARIA_PAGE: int = AriaSettings.model_fields["page_size"].default  # headers per object-query page, as the provider
ARIA_CORRECTIONS = harness.ROOT / "ops" / "demo" / "aria-corrections.csv"


class Aria(Workload):
    provider = "aria"
    ready = "bill date: "
    mix = {
        "get_invoice_information_m(bill run page)": 0.02,
        "get_invoice_information_m(one invoice)": 0.28,
        "get_invoice_details_m": 0.28,
        "get_invoice_history_m": 0.07,
        "gen_rb_m(do_write=false)": 0.10,
        "gen_rb_m(do_write=true)": 0.25,
    }
    description = (
        f"object-query pages of {ARIA_PAGE} headers of the bill run; one invoice's header (invoice_no = N); "
        "get_invoice_details_m; get_invoice_history_m of an account; gen_rb_m dry run (do_write false) of an "
        "eligible invoice not rebilled yet; gen_rb_m write (each eligible invoice once, with the demo "
        "corrections, then refused with 3097)"
    )

    def flags(self, invoices: int) -> list[str]:
        credentials = ["--client-no", str(ARIA_CLIENT_NO), "--auth-key", ARIA_AUTH_KEY]
        return ["--invoices", str(invoices), "--seed", "1", *credentials]

    def prepare(self, client: httpx.Client, seeded: str, invoices: int) -> Setup:
        """The bill run's headers through the object query, and each eligible invoice's lines (its
        gen_rb_m line items with the demo corrections applied, as a run makes them)."""
        query = bill_run(date.fromisoformat(seeded)).text
        headers: list[dict[str, Any]] = []
        while True:
            page = _aria(client, "get_invoice_information_m", query_string=query, limit=ARIA_PAGE, offset=len(headers))
            headers += page["invoice_details_m"]
            if not page["invoice_details_m"] or len(headers) >= page["total_records"]:
                break
        corrections = load_corrections(ARIA_CORRECTIONS)
        eligible: list[tuple[int, int, list[dict[str, Any]]]] = []
        for header in map(InvoiceHeader.model_validate, headers):
            if verdict(header, rebilled=False) is not None:
                continue
            details = InvoiceDetails.model_validate(
                _aria(client, "get_invoice_details_m", invoice_no=header.invoice_no, acct_no=header.acct_no)
            )
            if not details.rb_status:
                lines = rebill_lines(details.invoice_line_details, corrections).items
                eligible.append((header.invoice_no, header.acct_no, [item.to_wire() for item in lines]))
        return Setup(
            JSON,
            {
                "query": query,
                "total": len(headers),
                "invoices": [(h["invoice_no"], h["acct_no"]) for h in headers],
                "accounts": sorted({h["acct_no"] for h in headers}),
                "eligible": eligible,
            },
        )

    def makers(self, setup: Setup, index: int, processes: int) -> dict[str, Maker]:
        data = setup.data
        pages = [
            _aria_body("get_invoice_information_m", query_string=data["query"], limit=ARIA_PAGE, offset=offset)
            for offset in range(0, data["total"], ARIA_PAGE)
        ]
        invoices: list[tuple[int, int]] = data["invoices"]
        heads = [
            _aria_body("get_invoice_information_m", query_string=one_invoice(n).text, limit=1) for n, _ in invoices
        ]
        details = [_aria_body("get_invoice_details_m", invoice_no=n, acct_no=a) for n, a in invoices]
        history = {"master_plan_instance_id": -1, "include_voided": "false", "rb_option": 0}
        histories = [_aria_body("get_invoice_history_m", acct_no=a, **history) for a in data["accounts"]]
        todo = own_share(data["eligible"], index, processes)
        mine = list(todo)
        dry = {n: _gen_rb_m(n, a, items, write=False) for n, a, items in mine}
        wet = {n: _gen_rb_m(n, a, items, write=True) for n, a, items in mine}

        def core(bodies: list[bytes]) -> Maker:
            return lambda rng: Call("POST", CORE_PATH, rng.choice(bodies))

        def query(bodies: list[bytes]) -> Maker:
            return lambda rng: Call("POST", OBJECT_QUERY_PATH, rng.choice(bodies))

        def dry_run(rng: random.Random) -> Call:  # an invoice this process has yet to rebill, while there is one
            return Call("POST", CORE_PATH, dry[rng.choice(todo or mine)[0]])

        def write(rng: random.Random) -> Call:
            return Call("POST", CORE_PATH, wet[next_target(todo, mine, rng)[0]])

        return {
            "get_invoice_information_m(bill run page)": query(pages),
            "get_invoice_information_m(one invoice)": query(heads),
            "get_invoice_details_m": core(details),
            "get_invoice_history_m": core(histories),
            "gen_rb_m(do_write=false)": dry_run,
            "gen_rb_m(do_write=true)": write,
        }

    def summary(self, counters: dict[str, Any]) -> dict[str, Any]:
        return {
            "server_error_codes": counters["error_codes"],
            "server_rebills": counters["rebills_total"],
            "server_dry_runs": counters["dry_run_calls"],
            "server_refused_second_rebills": counters["duplicate_attempts"],
            "server_busy_refusals": counters["busy_refusals"],
        }


def _aria_body(rest_call: str, **params: Any) -> bytes:
    envelope = {"rest_call": rest_call, "client_no": ARIA_CLIENT_NO, "auth_key": ARIA_AUTH_KEY, "output_format": "json"}
    return encode_json({**envelope, **params})


def _aria(client: httpx.Client, rest_call: str, **params: Any) -> dict[str, Any]:
    path = OBJECT_QUERY_PATH if rest_call == "get_invoice_information_m" else CORE_PATH
    reply = client.post(path, content=_aria_body(rest_call, **params))
    payload: dict[str, Any] = decode_json(reply.content)
    if payload["error_code"] != 0:
        raise RuntimeError(f"{rest_call}: {payload['error_code']} {payload['error_msg']}")
    return payload


def _gen_rb_m(invoice_no: int, acct_no: int, items: list[dict[str, Any]], *, write: bool) -> bytes:
    return _aria_body(
        "gen_rb_m",
        acct_no=acct_no,
        orig_invoice_no=invoice_no,
        reason_cd=2,
        rb_line_items=items,
        do_collect=0,
        do_write="true" if write else "false",
        alt_caller_id="bench",
        rb_comments="simulator throughput",
    )


# --- Salesforce ------------------------------------------------------------------------------------

SF_CLIENT_ID = "bench-connected-app"
SF_CLIENT_SECRET = "bench-client-secret"  # noqa: S105 - the loopback simulator's login, nothing real
SF_DATA = f"/services/data/{DEFAULT_API_VERSION}"
SF_SETTLE = 10  # invoices claimed together, read again before their voids (the core's claim batch)


class Salesforce(Workload):
    provider = "salesforce"
    ready = "invoice batch run: "
    mix = {
        "query(the run's invoices, first page)": 0.005,
        "query.more(next page)": 0.015,
        f"query(InvoiceLine WHERE InvoiceId IN {MAX_IN_VALUES})": 0.03,
        f"query(Invoice WHERE Id IN {MAX_IN_VALUES})": 0.05,
        f"query(Invoice WHERE Id IN {SF_SETTLE})": 0.40,
        "void": 0.50,
    }
    description = (
        "SOQL: the run's invoices by Id (first page of 200; the next pages by nextRecordsUrl), the lines of "
        "200 invoices, 200 invoices' Status and PostedDate, 10 invoices read again before their voids; void "
        "(each eligible invoice once, then refused 400 INVALID_INPUT)"
    )

    def flags(self, invoices: int) -> list[str]:
        # No run of its own: `prepare` seeds one through the admin API, which says which invoices may be voided.
        credentials = ["--client-id", SF_CLIENT_ID, "--client-secret", SF_CLIENT_SECRET]
        return ["--invoices", "0", *credentials, "--daily-allocation", "100000000"]

    def prepare(self, client: httpx.Client, seeded: str, invoices: int) -> Setup:
        """A client-credentials token; a seeded invoice batch run; its query pages followed once (the
        locators of the next pages) for its invoices in Id order."""
        form = {"grant_type": "client_credentials", "client_id": SF_CLIENT_ID, "client_secret": SF_CLIENT_SECRET}
        token = client.post("/services/oauth2/token", data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        run = client.post("/_sim/runs", json={"invoices": invoices, "seed": 1}).json()
        selection = select(INVOICE, *INVOICE_FIELDS).where(eq("InvoiceBatchRunId", run["invoiceBatchRunId"]))
        first = f"{SF_DATA}/query?" + urlencode({"q": selection.order_by_id().soql})
        page = client.get(first, headers=headers).json()
        ordered, more = [record["Id"] for record in page["records"]], []
        while not page["done"]:
            more.append(page["nextRecordsUrl"])
            page = client.get(page["nextRecordsUrl"], headers=headers).json()
            ordered += [record["Id"] for record in page["records"]]
        eligible = [invoice for invoice, reason in run["expected"].items() if reason is None]
        return Setup(headers, {"first": first, "more": more or [first], "ordered": ordered, "eligible": eligible})

    def makers(self, setup: Setup, index: int, processes: int) -> dict[str, Maker]:
        data = setup.data
        ordered: list[str] = data["ordered"]

        def query(soql: str) -> str:
            return f"{SF_DATA}/query?" + urlencode({"q": soql})

        line_fields = ("Id", "InvoiceId", "BillingScheduleId")
        lines = [
            query(select(INVOICE_LINE, *line_fields).where(is_in("InvoiceId", ids)).soql) for ids in in_batches(ordered)
        ]
        status = ("Id", "Status", "PostedDate")
        statuses = [query(select(INVOICE, *status).where(is_in("Id", ids)).soql) for ids in in_batches(ordered)]
        settles = [
            query(select(INVOICE, *INVOICE_FIELDS).where(is_in("Id", ids)).soql)
            for ids in in_batches(ordered, SF_SETTLE)
        ]
        todo = own_share(data["eligible"], index, processes)
        spent = list(todo) or data["eligible"]

        def get(urls: list[str]) -> Maker:
            return lambda rng: Call("GET", rng.choice(urls))

        def void(rng: random.Random) -> Call:
            invoice = quote(next_target(todo, spent, rng), safe="")
            return Call("POST", f"{SF_DATA}/commerce/invoicing/invoices/{invoice}/actions/void")

        return {
            "query(the run's invoices, first page)": get([data["first"]]),
            "query.more(next page)": get(data["more"]),
            f"query(InvoiceLine WHERE InvoiceId IN {MAX_IN_VALUES})": get(lines),
            f"query(Invoice WHERE Id IN {MAX_IN_VALUES})": get(statuses),
            f"query(Invoice WHERE Id IN {SF_SETTLE})": get(settles),
            "void": void,
        }

    def summary(self, counters: dict[str, Any]) -> dict[str, Any]:
        return {
            "server_voids": sum(counters["voids"].values()),
            "server_refused_second_voids": counters["duplicate_void_attempts"],
            "server_refused_ineligible_voids": counters["ineligible_void_attempts"],
        }


# --- EnergyCAP -------------------------------------------------------------------------------------

EC_API_KEY = "bench-api-key"
EC_PAGE = 1000  # bills per list page, as the provider asks
EC_REVERSE = 5  # bills per reverse call


class EnergyCap(Workload):
    provider = "energycap"
    ready = "account period: "
    mix = {
        f"bill.list(page of {EC_PAGE})": 0.02,
        "bill.get": 0.53,
        "batch.list(batchCode equals)": 0.25,
        f"bill.reverse({EC_REVERSE} bills)": 0.20,
    }
    description = (
        f"GET the account period's bills, pages of {EC_PAGE}; GET one bill; GET the batches with a code "
        f"(the settling read: the process's batches made so far, or its next one, not made yet); PUT bill/reverse "
        f"of {EC_REVERSE} bills into a new self-contained batch (each eligible bill once, then bills already "
        "reversed: selected, not updated)"
    )

    def flags(self, invoices: int) -> list[str]:
        return ["--bills", str(invoices), "--seed", "1", "--api-key", EC_API_KEY]

    def prepare(self, client: httpx.Client, seeded: str, invoices: int) -> Setup:
        """The period's bills page by page, with the key every request carries."""
        headers = {"ECI-ApiKey": EC_API_KEY, "Content-Type": "application/json", "Accept": "application/json"}
        selection = str(where(Field.ACCOUNT_PERIOD, Op.EQUALS, int(seeded)))
        bills: list[BillData] = []
        number, pages = 1, 1
        while number <= pages:
            params: dict[str, str | int] = {"pageNumber": number, "pageSize": EC_PAGE, "filter": selection}
            reply = client.get("/api/v3/bill", params=params, headers=headers)
            bills += [BillData.model_validate(bill) for bill in decode_json(reply.content)]
            number, pages = number + 1, int(reply.headers["TotalPages"])
        return Setup(
            headers,
            {
                "filter": selection,
                "pages": pages,
                "bills": [bill.bill_id for bill in bills],
                "eligible": [bill.bill_id for bill in bills if bill.skip_reason is None],
            },
        )

    def makers(self, setup: Setup, index: int, processes: int) -> dict[str, Maker]:
        data = setup.data
        pages = [
            "/api/v3/bill?" + urlencode({"pageNumber": n, "pageSize": EC_PAGE, "filter": data["filter"]})
            for n in range(1, data["pages"] + 1)
        ]
        bills = [f"/api/v3/bill/{bill_id}" for bill_id in data["bills"]]
        todo = own_share(data["eligible"], index, processes)
        spent = list(todo) or data["eligible"]
        made = itertools.count(1)
        codes: list[str] = []

        def code(number: int) -> str:
            return f"RB-BENCH{index}-{number:06d}"

        def batch(rng: random.Random) -> Call:  # one made already, or the next, as a settling read finds it
            wanted = code(rng.randint(1, len(codes) + 1))
            return Call(
                "GET", "/api/v3/batch?" + urlencode({"filter": str(where(Field.BATCH_CODE, Op.EQUALS, wanted))})
            )

        def reverse(rng: random.Random) -> Call:
            codes.append(code(next(made)))
            ids = [next_target(todo, spent, rng) for _ in range(EC_REVERSE)]
            settings = {
                "batchMode": SELF_CONTAINED,
                "newBatch": {"batchCode": codes[-1], "note": "simulator throughput"},
            }
            return Call("PUT", REVERSE_PATH, encode_json({"batchSettings": settings, "billIds": ids}))

        return {
            f"bill.list(page of {EC_PAGE})": lambda rng: Call("GET", rng.choice(pages)),
            "bill.get": lambda rng: Call("GET", rng.choice(bills)),
            "batch.list(batchCode equals)": batch,
            f"bill.reverse({EC_REVERSE} bills)": reverse,
        }

    def summary(self, counters: dict[str, Any]) -> dict[str, Any]:
        calls = counters["reverse_calls"]
        return {
            "server_reverse_calls": len(calls),
            "server_reversals": sum(counters["reversals"].values()),
            "server_bills_selected_not_updated": sum(call["selected"] - call["updated"] for call in calls),
            "server_refused_writes": len(counters["refused_writes"]),
        }


WORKLOADS: dict[str, Workload] = {
    workload.provider: workload for workload in (Imis(), Aria(), Salesforce(), EnergyCap())
}
