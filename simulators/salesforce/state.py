"""One simulated Salesforce org with Revenue Cloud Billing: entities and rules, no HTTP (moto's `models.py`).

What it holds: invoices with their lines, billing schedules, InvoiceBatchRun ids, access tokens,
query cursors and the rolling API usage. What it does, per the contract
(`../shared/reference/salesforce-billing-api.md`):

- void: `Posted` → `Void In Progress` at once → `Voided` after `void_seconds` (balance 0, credits =
  total, the invoice's periods unbilled again on its schedules); refused unless the invoice is
  `Posted`, its balance equals its total and it is the latest posted on each of its schedules.
- generate: every named schedule with an unbilled period goes `Processing` at once; after
  `generate_seconds` each billing account gets one new invoice with one line per schedule of it,
  `Posted` (or `Draft`), or `Error` with its schedules. Schedules with nothing unbilled are skipped.
- recover: one schedule in `Error` or `Processing`; finishes its latest generated invoice.

The asynchronous walks need no threads: each is an event due at a time of the injected `clock`,
and every operation first applies the events that are due (`advance`). A test can pass a clock it
moves by hand, or call `finish_walks()`.

Thread-safe: every public method holds `lock`. Seeding is deterministic: the same arguments give the
same ids, amounts and verdicts on a fresh state.
"""

from __future__ import annotations

import heapq
import random
import secrets
import string
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from simulators.common.counters import RequestCounters
from simulators.salesforce import soql
from simulators.salesforce.faults import FaultTally, SalesforceFaults

__all__ = [
    "ACTIONS",
    "BILLING_SCHEDULE_IDLE",
    "MAX_SCHEDULES_PER_GENERATE",
    "ApiUsage",
    "BillingSchedule",
    "GenerateRequest",
    "Invoice",
    "InvoiceLine",
    "OAuthError",
    "QueryPage",
    "SalesforceError",
    "SalesforceState",
    "SeededRun",
    "invalid_input",
]

# Invoice statuses (the contract's picklist; the simulator uses these).
POSTED = "Posted"
DRAFT = "Draft"
ERROR = "Error"
VOID_IN_PROGRESS = "Void In Progress"
VOIDED = "Voided"

# Billing schedule statuses: the orchestrator acts on Processing and Error; anything else is idle.
BILLING_SCHEDULE_IDLE = "ReadyForInvoicing"
PROCESSING = "Processing"

ACTIONS = (POSTED, DRAFT)
MAX_SCHEDULES_PER_GENERATE = 200
MAX_CORRELATION_ID = 255

# Key prefixes (the first three characters of an id name its object).
_INVOICE, _LINE, _SCHEDULE, _ACCOUNT, _RUN, _CURSOR = "3tt", "5TV", "44b", "001", "7Bk", "01g"
_POD = "5g"

_CENTS = Decimal("0.01")
_TAX_RATE = Decimal("0.0825")
_CURRENCY = "USD"
DEFAULT_INVOICE_DATE = date(2025, 11, 1)
_POSTED_AT = timedelta(hours=6)  # seeded invoices were posted at 06:00 UTC on their invoice date
_MAX_CURSORS = 1000
_LINE_NAMES = ("Platform subscription", "Support plan", "Usage fee", "Additional seats", "Storage add-on")

#: Shares of the seeded run's invoices that are not eligible, by the reason a run would skip them.
_SKIP_SHARES: tuple[tuple[str, float], ...] = (
    ("paid", 0.05),
    ("credited", 0.03),
    ("balance_mismatch", 0.01),
    ("not_latest_on_schedule", 0.03),
    ("not_posted", 0.03),  # already voided and rebilled
)


class SalesforceError(Exception):
    """A refusal under `/services/data`: answered `[{"message", "errorCode", "fields": []}]` with `status`."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def invalid_input(message: str) -> SalesforceError:
    return SalesforceError(400, "INVALID_INPUT", message)


class OAuthError(Exception):
    """A refusal of the token endpoint: 400 `{"error", "error_description"}`."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


# --------------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class InvoiceLine:
    id: str
    invoice_id: str
    schedule_id: str
    name: str
    amount: Decimal
    tax: Decimal
    start_date: date
    end_date: date
    type: str = "Charge"


@dataclass(slots=True, eq=False)
class Invoice:
    id: str
    number: str
    status: str
    billing_account_id: str
    batch_run_id: str | None
    invoice_date: date
    due_date: date
    posted_date: datetime | None
    total_amount: Decimal
    total_with_tax: Decimal
    balance: Decimal
    net_payments: Decimal = Decimal("0.00")
    net_credits: Decimal = Decimal("0.00")
    currency: str = _CURRENCY
    description: str | None = None
    lines: list[InvoiceLine] = field(default_factory=list)
    #: For invoices made by generate: the action asked (what recovery finishes them as).
    generated_as: str | None = None
    seq: int = 0

    def dump(self) -> dict[str, Any]:
        """Every field in canonical case, plus the lines: for tests and the admin API."""
        data = {
            spec.name: soql.render_value(getattr(self, spec.attr)) for spec in soql.SCHEMA["invoice"].fields.values()
        }
        data["lines"] = [
            {
                spec.name: soql.render_value(getattr(line, spec.attr))
                for spec in soql.SCHEMA["invoiceline"].fields.values()
            }
            for line in self.lines
        ]
        return data


@dataclass(slots=True, eq=False)
class BillingSchedule:
    id: str
    billing_account_id: str
    status: str = BILLING_SCHEDULE_IDLE
    billed_amount: Decimal = Decimal("0.00")
    #: Lines of voided invoices whose periods are billable again (what generate bills).
    unbilled: list[InvoiceLine] = field(default_factory=list)
    #: A generate call has taken this schedule since its periods were last released by a void.
    taken: bool = False
    job: GenerateJob | None = None

    def dump(self) -> dict[str, Any]:
        data = {
            spec.name: soql.render_value(getattr(self, spec.attr))
            for spec in soql.SCHEMA["billingschedule"].fields.values()
        }
        data["unbilledAmount"] = sum((line.amount for line in self.unbilled), Decimal("0.00"))
        return data


@dataclass(slots=True, eq=False)
class GenerateJob:
    request_identifier: str
    correlation_id: str | None
    action: str
    invoice_date: date
    #: Billing account -> its schedules still Processing in this job.
    pending: dict[str, list[BillingSchedule]]
    #: Billing accounts whose new invoice will end in Error (decided when the call is taken).
    failing: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A generate call's body, already read (the HTTP layer refuses what is not even this shape)."""

    billing_schedule_ids: tuple[str, ...]
    action: str
    invoice_date: date
    target_date: date
    correlation_id: str | None = None


@dataclass(slots=True)
class _Cursor:
    """A query's answer as it was when first asked: each record's values (`soql.Query.snapshot`)."""

    query: soql.Query
    url_prefix: str  # of the records' `attributes.url`
    rows: list[tuple[Any, ...]]
    last_used: float


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of a query: `next_locator` is None on the last page (the HTTP layer makes it a URL)."""

    total_size: int
    records: list[dict[str, Any]]
    next_locator: str | None

    @property
    def done(self) -> bool:
        return self.next_locator is None


@dataclass(frozen=True, slots=True)
class ApiUsage:
    used: int
    allocation: int

    def header(self) -> str:
        return f"api-usage={self.used}/{self.allocation}"


@dataclass(frozen=True, slots=True)
class SeededRun:
    """What `seed_run` made: the run, and the verdict the contract's eligibility gives each of its invoices."""

    invoice_batch_run_id: str
    invoice_ids: tuple[str, ...]
    #: Invoice id -> the skip reason a run must record, or None when the invoice is eligible.
    expected: dict[str, str | None]
    billing_account_ids: tuple[str, ...]
    billing_schedule_ids: tuple[str, ...]
    #: The other runs on the same schedules: older (paid) invoices and later ones.
    other_run_ids: tuple[str, ...]

    @property
    def eligible_ids(self) -> list[str]:
        return [i for i in self.invoice_ids if self.expected[i] is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "invoiceBatchRunId": self.invoice_batch_run_id,
            "invoiceIds": list(self.invoice_ids),
            "expected": dict(self.expected),
            "billingAccountIds": list(self.billing_account_ids),
            "billingScheduleIds": list(self.billing_schedule_ids),
            "otherRunIds": list(self.other_run_ids),
        }


# --------------------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------------------

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX = string.ascii_uppercase + "012345"


def id18(id15: str) -> str:
    """Salesforce's 18-character form: the 15-character id plus its case-encoding checksum."""
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if char.isupper():
                bits |= 1 << position
        suffix += _SUFFIX[bits]
    return id15 + suffix


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENTS, rounding=ROUND_HALF_UP)


def _posted_at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + _POSTED_AT


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, 28))


# --------------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------------


class SalesforceState:
    """One simulated org. Thread-safe."""

    def __init__(
        self,
        client_id: str = "rebill-client",
        client_secret: str = "rebill-secret",  # noqa: S107 - the simulator's documented default login
        faults: SalesforceFaults | None = None,
        rng_seed: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.rng_seed = rng_seed
        self.faults = FaultTally(faults or SalesforceFaults(), random.Random(rng_seed))
        self.traffic = RequestCounters()
        self.lock = threading.RLock()
        self._clock = clock
        self._now = now
        self._tokens: dict[str, float | None] = {}
        self._usage: deque[list[int]] = deque()  # [second, requests in it], oldest first
        self._usage_total = 0
        self._init_entities()
        self._init_counters()

    def _init_entities(self) -> None:
        self._outcomes = random.Random(f"salesforce-outcomes:{self.rng_seed}")
        self._ids: set[str] = set()
        self._seq = 0
        self._number = 0
        self.invoices: dict[str, Invoice] = {}
        self.lines: dict[str, InvoiceLine] = {}
        self.schedules: dict[str, BillingSchedule] = {}
        # Indexes of the id fields queries filter on, by (object, field): value -> records.
        self._indexes: dict[tuple[str, str], dict[str | None, list[Any]]] = {
            key: {}
            for key in (
                ("Invoice", "InvoiceBatchRunId"),
                ("Invoice", "BillingAccountId"),
                ("InvoiceLine", "InvoiceId"),
                ("InvoiceLine", "BillingScheduleId"),
                ("BillingSchedule", "BillingAccountId"),
            )
        }
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._cursors: dict[str, _Cursor] = {}

    def _init_counters(self) -> None:
        self._voids: Counter[str] = Counter()
        self._duplicate_voids = 0
        self._ineligible_voids = 0
        self._generate_calls: list[dict[str, Any]] = []
        self._invoices_per_schedule: Counter[str] = Counter()
        self._duplicate_generates = 0
        self._recoveries: list[dict[str, Any]] = []
        self._tokens_issued = 0

    # ---------------------------------------------------------------- lifecycle (kit protocol)

    def close(self) -> None:
        """Nothing runs in the background: the walks are applied on access."""

    def reset(self) -> None:
        """Forget every entity, counter, query cursor and the API usage (tokens and fault settings are kept)."""
        with self.lock:
            self._init_entities()
            self.reset_counters()
            self.set_usage(0)

    def reset_counters(self) -> None:
        with self.lock:
            self._init_counters()
            self.traffic.reset()
            self.faults.reset_tally()

    def counters(self) -> dict[str, Any]:
        with self.lock:
            self.advance()
            usage = self._current_usage()
            return {
                **self.traffic.snapshot(),
                "voids": dict(self._voids),
                "duplicate_void_attempts": self._duplicate_voids,
                "ineligible_void_attempts": self._ineligible_voids,
                "generate_calls": [dict(call) for call in self._generate_calls],
                "invoices_per_regenerated_schedule": dict(self._invoices_per_schedule),
                "duplicate_generates": self._duplicate_generates,
                "recoveries": [dict(r) for r in self._recoveries],
                "faults": self.faults.tally(),
                "tokens_issued": self._tokens_issued,
                "usage": {"used": usage.used, "allocation": usage.allocation},
            }

    # ---------------------------------------------------------------- time and walks

    def today(self) -> date:
        """The org's date (what generate's dates default to)."""
        return self._now().date()

    def advance(self) -> None:
        """Apply every walk step that is due by the clock (each public operation does this first)."""
        with self.lock:
            now = self._clock()
            while self._due and self._due[0][0] <= now:
                _, _, step = heapq.heappop(self._due)
                step()

    def finish_walks(self) -> int:
        """Apply every pending walk step now, due or not; returns how many there were."""
        with self.lock:
            count = 0
            while self._due:
                _, _, step = heapq.heappop(self._due)
                step()
                count += 1
            return count

    def _later(self, seconds: float, step: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._due, (self._clock() + seconds, self._seq, step))

    # ---------------------------------------------------------------- ids

    def _new_id(self, prefix: str, rng: random.Random) -> str:
        while True:
            candidate = id18(prefix + _POD + "".join(rng.choice(_BASE62) for _ in range(10)))
            if candidate not in self._ids:
                self._ids.add(candidate)
                return candidate

    def _request_identifier(self) -> str:
        return str(uuid.UUID(int=self._outcomes.getrandbits(128), version=4))

    def _next_number(self) -> str:
        self._number += 1
        return f"INV-{self._number:010d}"

    # ---------------------------------------------------------------- auth

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, int]:
        """An access token for the client-credentials grant, and its issue time (epoch ms); raises OAuthError."""
        if not secrets.compare_digest(client_id.encode(), self.client_id.encode()):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(client_secret.encode(), self.client_secret.encode()):
            raise OAuthError("invalid_client", "invalid client credentials")
        ttl = self.faults.settings.token_ttl_seconds
        token = "00D" + _POD + "000000ReBiL!" + secrets.token_urlsafe(48)
        with self.lock:
            now = self._clock()
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp is None or exp > now}
            self._tokens[token] = None if ttl is None else now + ttl
            self._tokens_issued += 1
        return token, int(self._now().timestamp() * 1000)

    def token_valid(self, token: str) -> bool:
        if token not in self._tokens:
            return False
        expiry = self._tokens[token]
        return expiry is None or self._clock() < expiry

    def expire_tokens(self) -> int:
        """End every session (the next call gets 401 INVALID_SESSION_ID); returns how many there were."""
        with self.lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    # ---------------------------------------------------------------- API usage (rolling window)

    def _trim_usage(self, now: float) -> None:
        oldest = int(now - self.faults.settings.usage_window_seconds)
        while self._usage and self._usage[0][0] <= oldest:
            self._usage_total -= self._usage.popleft()[1]

    def _current_usage(self) -> ApiUsage:
        self._trim_usage(self._clock())
        return ApiUsage(self._usage_total, self.faults.settings.daily_allocation)

    def usage(self) -> ApiUsage:
        with self.lock:
            return self._current_usage()

    def count_request(self) -> ApiUsage:
        """Count one `/services/data` request against the allocation; raises 403 REQUEST_LIMIT_EXCEEDED
        (TotalRequests, not counted) once the window already holds the allocation."""
        with self.lock:
            now = self._clock()
            self._trim_usage(now)
            allocation = self.faults.settings.daily_allocation
            if self._usage_total >= allocation:
                self.faults.count("403_total_requests")
                raise SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            second = int(now)
            if self._usage and self._usage[-1][0] == second:
                self._usage[-1][1] += 1
            else:
                self._usage.append([second, 1])
            self._usage_total += 1
            return ApiUsage(self._usage_total, allocation)

    def set_usage(self, used: int) -> ApiUsage:
        """Pretend `used` requests were made just now (the window forgets every earlier one)."""
        if used < 0:
            raise ValueError("used must not be negative")
        with self.lock:
            self._usage.clear()
            self._usage_total = used
            if used:
                self._usage.append([int(self._clock()), used])
            return ApiUsage(used, self.faults.settings.daily_allocation)

    # ---------------------------------------------------------------- query

    def query(self, text: str, url_prefix: str) -> QueryPage:
        """Run a query of the subset; `url_prefix` is `/services/data/vXX.X` (for records' `attributes.url`)."""
        query = _parse(text)
        with self.lock:
            self.advance()
            matched = query.run(self._primary(query.object.name).values(), self._seeker(query.object.name))
            if query.count:
                return QueryPage(len(matched), [], None)
            sobjects = f"{url_prefix}/sobjects/{query.object.name}"
            rows = [query.snapshot(record) for record in matched]  # rendered page by page
            return self._page(_Cursor(query, sobjects, rows, self._clock()), 0, None)

    def query_more(self, locator: str) -> QueryPage:
        """The page a `nextRecordsUrl` locator (`<cursor>-<offset>`) points at."""
        cursor_id, _, offset_text = locator.rpartition("-")
        with self.lock:
            self._expire_idle_cursors()
            cursor = self._cursors.get(cursor_id)
            if cursor is None or not offset_text.isdigit() or not 0 < int(offset_text) < len(cursor.rows):
                raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            cursor.last_used = self._clock()
            return self._page(cursor, int(offset_text), cursor_id)

    def expire_locators(self) -> int:
        """Make every open query locator invalid (as 15 idle minutes would); returns how many there were."""
        with self.lock:
            count = len(self._cursors)
            self._cursors.clear()
            return count

    def _page(self, answer: _Cursor, offset: int, cursor_id: str | None) -> QueryPage:
        """The page of `answer` at `offset`; a first page (`cursor_id` None) with more keeps `answer` as a locator."""
        rows, size = answer.rows, self.faults.settings.page_size
        end = offset + size
        if end >= len(rows):
            return QueryPage(len(rows), self._render(answer, rows[offset:]), None)
        if cursor_id is None:
            cursor_id = self._new_id(_CURSOR, self._outcomes)
            if len(self._cursors) >= _MAX_CURSORS:
                self._cursors.pop(next(iter(self._cursors)))
            self._cursors[cursor_id] = answer
        return QueryPage(len(rows), self._render(answer, rows[offset:end]), f"{cursor_id}-{end}")

    @staticmethod
    def _render(answer: _Cursor, rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [answer.query.render(row, answer.url_prefix) for row in rows]

    def _expire_idle_cursors(self) -> None:
        idle = self.faults.settings.locator_idle_seconds
        oldest = self._clock() - idle
        for cursor_id in [c for c, cursor in self._cursors.items() if cursor.last_used < oldest]:
            del self._cursors[cursor_id]

    def _primary(self, object_name: str) -> dict[str, Any]:
        """An object's records by Id."""
        if object_name == "Invoice":
            return self.invoices
        if object_name == "InvoiceLine":
            return self.lines
        return self.schedules

    def _seeker(self, object_name: str) -> soql.Seek:
        primary = self._primary(object_name)

        def seek(name: str, values: tuple[str, ...]) -> Iterable[Any] | None:
            if name == "Id":
                return [primary[v] for v in values if v in primary]
            index = self._indexes.get((object_name, name))
            if index is None:
                return None
            return [record for v in values for record in index.get(v, ())]

        return seek

    def _index(self, object_name: str, record: Any, **fields: str | None) -> None:
        for name, value in fields.items():
            self._indexes[(object_name, name)].setdefault(value, []).append(record)

    def _invoices_on(self, schedule_id: str) -> list[Invoice]:
        """The invoices with a line on a schedule, oldest first."""
        lines = self._indexes[("InvoiceLine", "BillingScheduleId")].get(schedule_id, ())
        return [self.invoices[line.invoice_id] for line in lines]

    def _add_invoice(self, invoice: Invoice) -> None:
        self.invoices[invoice.id] = invoice
        self._index(
            "Invoice", invoice, InvoiceBatchRunId=invoice.batch_run_id, BillingAccountId=invoice.billing_account_id
        )

    # ---------------------------------------------------------------- reads for tests and the admin API

    def invoice(self, invoice_id: str) -> Invoice:
        with self.lock:
            self.advance()
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            return invoice

    def schedule(self, schedule_id: str) -> BillingSchedule:
        with self.lock:
            self.advance()
            schedule = self.schedules.get(schedule_id)
            if schedule is None:
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            return schedule

    def invoices_on_schedule(self, schedule_id: str) -> list[Invoice]:
        with self.lock:
            self.advance()
            return self._invoices_on(schedule_id)

    def apply_payment(self, invoice_id: str, amount: Decimal) -> Invoice:
        """A payment applied to a posted invoice (as someone in the org could, between plan and void)."""
        with self.lock:
            invoice = self.invoice(invoice_id)
            if amount <= 0 or amount > invoice.balance:
                raise invalid_input(f"A payment must be more than 0 and at most the balance {invoice.balance}.")
            invoice.net_payments += amount
            invoice.balance -= amount
            return invoice

    # ---------------------------------------------------------------- void

    def void(self, invoice_id: str) -> str:
        """Start voiding a posted invoice; returns the request identifier. Refusals: 400 INVALID_INPUT, 404."""
        with self.lock:
            self.advance()
            invoice = self.invoices.get(invoice_id)
            if invoice is None:
                self._ineligible_voids += 1
                raise SalesforceError(404, "NOT_FOUND", "The requested resource does not exist")
            refusal = self._void_refusal(invoice)
            if refusal is not None:
                if self._voids[invoice_id]:
                    self._duplicate_voids += 1
                else:
                    self._ineligible_voids += 1
                raise invalid_input(refusal)
            invoice.status = VOID_IN_PROGRESS
            self._voids[invoice_id] += 1
            self._later(self.faults.settings.void_seconds, lambda: self._finish_void(invoice))
            return self._request_identifier()

    def _void_refusal(self, invoice: Invoice) -> str | None:
        if invoice.status != POSTED:
            return f"You can void only a posted invoice; invoice {invoice.id} is {invoice.status}."
        if invoice.balance != invoice.total_with_tax:
            return "The balance and total amount on the invoice must be equal. Unapply payments and credits first."
        posted = invoice.posted_date
        for line in invoice.lines:
            for other in self._invoices_on(line.schedule_id):
                if (
                    other is not invoice
                    and other.status in (POSTED, VOID_IN_PROGRESS)
                    and other.posted_date is not None
                    and posted is not None
                    and other.posted_date > posted
                ):
                    return "You can void only the most recently posted invoice on a billing schedule."
        return None

    def _finish_void(self, invoice: Invoice) -> None:
        if invoice.status != VOID_IN_PROGRESS:
            return
        invoice.status = VOIDED
        invoice.net_credits += invoice.balance
        invoice.balance = Decimal("0.00")
        for line in invoice.lines:
            schedule = self.schedules[line.schedule_id]
            schedule.unbilled.append(line)
            schedule.billed_amount -= line.amount
            schedule.taken = False

    # ---------------------------------------------------------------- generate

    def generate(self, request: GenerateRequest) -> str:
        """Take every named schedule with an unbilled period (Processing at once); returns the request identifier.

        The whole call is refused, nothing applied, for no ids, more than 200, duplicates, an unknown id,
        an action other than Posted/Draft or a correlationId over 255 characters.
        """
        ids = request.billing_schedule_ids
        if not ids:
            raise invalid_input("Specify at least one billing schedule ID.")
        if len(ids) > MAX_SCHEDULES_PER_GENERATE:
            raise invalid_input(f"You can specify up to {MAX_SCHEDULES_PER_GENERATE} billing schedule IDs.")
        if len(set(ids)) != len(ids):
            raise invalid_input("The billing schedule IDs must be unique.")
        if request.action not in ACTIONS:
            raise invalid_input(f"The action must be Posted or Draft, not {request.action!r}.")
        if request.correlation_id is not None and len(request.correlation_id) > MAX_CORRELATION_ID:
            raise invalid_input(f"The correlationId can be at most {MAX_CORRELATION_ID} characters.")
        with self.lock:
            self.advance()
            unknown = [i for i in ids if i not in self.schedules]
            if unknown:
                raise invalid_input(f"Billing schedule {unknown[0]} doesn't exist.")
            job = GenerateJob(
                self._request_identifier(), request.correlation_id, request.action, request.invoice_date, {}
            )
            taken: list[str] = []
            skipped: list[str] = []
            for schedule_id in ids:
                schedule = self.schedules[schedule_id]
                if schedule.unbilled and schedule.status == BILLING_SCHEDULE_IDLE and not schedule.taken:
                    schedule.status = PROCESSING
                    schedule.taken = True
                    schedule.job = job
                    job.pending.setdefault(schedule.billing_account_id, []).append(schedule)
                    taken.append(schedule_id)
                else:
                    if schedule.taken:
                        self._duplicate_generates += 1
                    skipped.append(schedule_id)
            self._generate_calls.append(
                {
                    "requestIdentifier": job.request_identifier,
                    "correlationId": request.correlation_id,
                    "billingScheduleIds": list(ids),
                    "action": request.action,
                    "invoiceDate": request.invoice_date.isoformat(),
                    "targetDate": request.target_date.isoformat(),
                    "processing": taken,
                    "skipped": skipped,
                }
            )
            job.failing = {account for account, taken_here in job.pending.items() if self._ends_in_error(taken_here)}
            if job.pending:
                self._later(self.faults.settings.generate_seconds, lambda: self._finish_generation(job))
            return job.request_identifier

    def _finish_generation(self, job: GenerateJob) -> None:
        for account_id in list(job.pending):
            self._invoice_for(job, account_id, error=account_id in job.failing)

    def _invoice_for(self, job: GenerateJob, account_id: str, *, error: bool) -> Invoice | None:
        """The one new invoice of a billing account in a job: a line per schedule of it still Processing;
        `Posted` (or `Draft`), or `Error` with its schedules when `error`."""
        schedules = [s for s in job.pending.pop(account_id, ()) if s.status == PROCESSING and s.job is job]
        if not schedules:
            return None
        self._seq += 1
        invoice = Invoice(
            id=self._new_id(_INVOICE, self._outcomes),
            number=self._next_number(),
            status=job.action,
            billing_account_id=account_id,
            batch_run_id=None,
            invoice_date=job.invoice_date,
            due_date=job.invoice_date + timedelta(days=30),
            posted_date=None,
            total_amount=Decimal("0.00"),
            total_with_tax=Decimal("0.00"),
            balance=Decimal("0.00"),
            description="Generated from billing schedules",
            generated_as=job.action,
            seq=self._seq,
        )
        for schedule in schedules:
            released = schedule.unbilled
            schedule.unbilled = []
            schedule.job = None
            line = InvoiceLine(
                id=self._new_id(_LINE, self._outcomes),
                invoice_id=invoice.id,
                schedule_id=schedule.id,
                name=released[0].name,
                amount=sum((part.amount for part in released), Decimal("0.00")),
                tax=sum((part.tax for part in released), Decimal("0.00")),
                start_date=min(part.start_date for part in released),
                end_date=max(part.end_date for part in released),
            )
            self._add_line(invoice, line)
            self._invoices_per_schedule[schedule.id] += 1
        _total(invoice)
        self._add_invoice(invoice)
        if error:
            invoice.status = ERROR
            for schedule in schedules:
                schedule.status = ERROR
        else:
            self._complete(invoice)
        return invoice

    def _ends_in_error(self, schedules: list[BillingSchedule]) -> bool:
        """Whether one account's new invoice will end in Error: a schedule listed in `error_schedules`,
        or the `p_schedule_error` draw."""
        settings = self.faults.settings
        fails = any(s.id in settings.error_schedules for s in schedules) or (
            settings.p_schedule_error > 0 and self._outcomes.random() < settings.p_schedule_error
        )
        if fails:
            self.faults.count("schedule_error")
        return fails

    def _complete(self, invoice: Invoice) -> None:
        """A generated invoice reaches its asked status; its schedules are idle and billed again."""
        invoice.status = invoice.generated_as or POSTED
        if invoice.status == POSTED:
            invoice.posted_date = self._now()
        for line in invoice.lines:
            schedule = self.schedules[line.schedule_id]
            schedule.status = BILLING_SCHEDULE_IDLE
            schedule.billed_amount += line.amount

    # ---------------------------------------------------------------- recover

    def recover(self, schedule_ids: list[str]) -> dict[str, Any]:
        """Finish the latest generated invoice of one schedule in Error or Processing; the result record."""
        if len(schedule_ids) != 1:
            raise invalid_input("You can recover one billing schedule per API request.")
        schedule_id = schedule_ids[0]
        with self.lock:
            self.advance()
            schedule = self.schedules.get(schedule_id)
            if schedule is None:
                raise invalid_input(f"Billing schedule {schedule_id} doesn't exist.")
            settings = self.faults.settings
            fails = settings.p_recover_error > 0 and self._outcomes.random() < settings.p_recover_error
            if schedule.status == PROCESSING and schedule.job is not None:
                invoice = self._invoice_for(schedule.job, schedule.billing_account_id, error=fails)
            elif schedule.status == ERROR:
                invoice = self._latest_in_error(schedule_id)
                if invoice is not None and not fails:
                    self._complete(invoice)
            else:
                raise invalid_input(
                    f"Billing schedule {schedule_id} must be in the Error or Processing status to recover it; "
                    f"it is {schedule.status}."
                )
            if invoice is None:
                raise invalid_input(f"Billing schedule {schedule_id} has no invoice to recover.")
            if fails:
                self.faults.count("recover_error")
            errors = (
                [{"errorCode": "INVOICE_RECOVERY_FAILED", "message": "The invoice couldn't be posted."}]
                if fails
                else []
            )
            result = {
                "invoiceId": invoice.id,
                "invoiceStatus": invoice.status,
                "success": not errors,
                "invoiceErrors": errors,
                "billingSchedules": [
                    {
                        "billingScheduleId": line.schedule_id,
                        "billingScheduleStatus": self.schedules[line.schedule_id].status,
                    }
                    for line in invoice.lines
                ],
            }
            self._recoveries.append({"billingScheduleId": schedule_id, "invoiceId": invoice.id, "success": not errors})
            return result

    def _latest_in_error(self, schedule_id: str) -> Invoice | None:
        candidates = [i for i in self._invoices_on(schedule_id) if i.generated_as is not None]
        if not candidates:
            return None
        latest = max(candidates, key=lambda invoice: invoice.seq)
        return latest if latest.status == ERROR else None

    # ---------------------------------------------------------------- seeding

    def seed_run(self, invoices: int, seed: int, *, invoice_date: date = DEFAULT_INVOICE_DATE) -> SeededRun:
        """One posted InvoiceBatchRun of `invoices` invoices, one per billing account (1 to 3 schedules each).

        Most invoices are eligible; the rest are paid, partly credited, written down (balance_mismatch),
        not the latest on a schedule (a later invoice of another run), or already voided and rebilled.
        About half the accounts also have an older, paid invoice of an earlier run on the same schedules.
        """
        if invoices < 0:
            raise ValueError("invoices must not be negative")
        rng = random.Random(f"salesforce-run:{seed}")
        with self.lock:
            self.advance()
            run_id, older_run, later_run = (self._new_id(_RUN, rng) for _ in range(3))
            reasons = _plan_reasons(invoices, rng)
            expected: dict[str, str | None] = {}
            accounts: list[str] = []
            schedule_ids: list[str] = []
            for reason in reasons:
                account = self._new_id(_ACCOUNT, rng)
                accounts.append(account)
                schedules = [self._add_schedule(account, rng) for _ in range(rng.randint(1, 3))]
                schedule_ids += [s.id for s in schedules]
                charges = [
                    (rng.choice(_LINE_NAMES), _money(Decimal(rng.randrange(1_000, 50_000)) / 100)) for _ in schedules
                ]
                taxed = rng.random() < 0.6
                if reason == "not_latest_on_schedule" or rng.random() < 0.5:
                    older = self._seed_invoice(
                        older_run, account, schedules, charges, taxed, _add_months(invoice_date, -1), rng
                    )
                    self._pay(older, older.total_with_tax)
                invoice = self._seed_invoice(run_id, account, schedules, charges, taxed, invoice_date, rng)
                self._apply_reason(invoice, reason, later_run, schedules, charges, taxed, invoice_date, rng)
                expected[invoice.id] = reason
            return SeededRun(
                invoice_batch_run_id=run_id,
                invoice_ids=tuple(expected),
                expected=expected,
                billing_account_ids=tuple(accounts),
                billing_schedule_ids=tuple(schedule_ids),
                other_run_ids=(older_run, later_run),
            )

    def _apply_reason(
        self,
        invoice: Invoice,
        reason: str | None,
        later_run: str,
        schedules: list[BillingSchedule],
        charges: list[tuple[str, Decimal]],
        taxed: bool,
        invoice_date: date,
        rng: random.Random,
    ) -> None:
        total = invoice.total_with_tax
        part = _money(total * Decimal(rng.randrange(10, 90)) / 100)
        if reason == "paid":
            self._pay(invoice, total if rng.random() < 0.5 else part)
        elif reason == "credited":
            invoice.net_credits += part
            invoice.balance -= part
        elif reason == "balance_mismatch":  # written down by an adjustment: neither a payment nor a credit
            invoice.balance -= part
        elif reason == "not_latest_on_schedule":
            later = self._seed_invoice(later_run, invoice.billing_account_id, schedules[:1], charges[:1], taxed,
                                       invoice_date + timedelta(days=14), rng)  # fmt: skip
            later.description = "Mid-cycle run"
        elif reason == "not_posted":  # voided, and rebilled from its schedules already
            invoice.status = VOIDED
            invoice.net_credits = total
            invoice.balance = Decimal("0.00")
            rebill = self._seed_invoice(None, invoice.billing_account_id, schedules, charges, taxed,
                                        invoice_date + timedelta(days=10), rng)  # fmt: skip
            rebill.description = "Generated from billing schedules"
            rebill.generated_as = POSTED
            for schedule in schedules:  # the void released the amounts, the rebill billed them again
                schedule.billed_amount -= next(line.amount for line in invoice.lines if line.schedule_id == schedule.id)

    def _add_schedule(self, account: str, rng: random.Random) -> BillingSchedule:
        schedule = BillingSchedule(self._new_id(_SCHEDULE, rng), account)
        self.schedules[schedule.id] = schedule
        self._index("BillingSchedule", schedule, BillingAccountId=account)
        return schedule

    def _seed_invoice(
        self,
        run_id: str | None,
        account: str,
        schedules: list[BillingSchedule],
        charges: list[tuple[str, Decimal]],
        taxed: bool,
        invoice_date: date,
        rng: random.Random,
    ) -> Invoice:
        self._seq += 1
        invoice = Invoice(
            id=self._new_id(_INVOICE, rng),
            number=self._next_number(),
            status=POSTED,
            billing_account_id=account,
            batch_run_id=run_id,
            invoice_date=invoice_date,
            due_date=invoice_date + timedelta(days=30),
            posted_date=_posted_at(invoice_date),
            total_amount=Decimal("0.00"),
            total_with_tax=Decimal("0.00"),
            balance=Decimal("0.00"),
            description="Monthly billing",
            seq=self._seq,
        )
        end = _add_months(invoice_date, 1) - timedelta(days=1)
        for schedule, (name, amount) in zip(schedules, charges, strict=True):
            tax = _money(amount * _TAX_RATE) if taxed else Decimal("0.00")
            line = InvoiceLine(self._new_id(_LINE, rng), invoice.id, schedule.id, name, amount, tax, invoice_date, end)
            self._add_line(invoice, line)
            schedule.billed_amount += amount
        _total(invoice)
        self._add_invoice(invoice)
        return invoice

    def _add_line(self, invoice: Invoice, line: InvoiceLine) -> None:
        invoice.lines.append(line)
        self.lines[line.id] = line
        self._index("InvoiceLine", line, InvoiceId=line.invoice_id, BillingScheduleId=line.schedule_id)

    @staticmethod
    def _pay(invoice: Invoice, amount: Decimal) -> None:
        invoice.net_payments += amount
        invoice.balance -= amount


def _total(invoice: Invoice) -> None:
    """Totals and balance from the lines (a fresh invoice owes all of it)."""
    invoice.total_amount = sum((line.amount for line in invoice.lines), Decimal("0.00"))
    invoice.total_with_tax = invoice.total_amount + sum((line.tax for line in invoice.lines), Decimal("0.00"))
    invoice.balance = invoice.total_with_tax


def _plan_reasons(invoices: int, rng: random.Random) -> list[str | None]:
    """The verdict of each seeded invoice, shuffled: every skip reason at least once from 10 invoices on."""
    reasons: list[str | None] = []
    if invoices >= 10:
        for reason, share in _SKIP_SHARES:
            reasons += [reason] * max(1, round(invoices * share))
    reasons += [None] * (invoices - len(reasons))
    rng.shuffle(reasons)
    return reasons


def _parse(text: str) -> soql.Query:
    try:
        return soql.parse(text)
    except soql.SoqlError as exc:
        raise SalesforceError(400, exc.error_code, exc.message) from None
