"""The simulated iMIS tenant: every entity, every business rule, no HTTP.

Like moto's `models.py`, this module knows nothing about requests or JSON; `wire.py` renders and
parses, `app.py` routes. Everything is guarded by one re-entrant lock (`ImisState.lock`): the
objects the getters return are live, so read them while holding it.

Business rules in short:
- An invoice is *open with no payments* when nothing is paid or pending and the balance equals the
  invoice amount and is above zero; only those can be reversed.
- A reversal sets the balance to zero and marks the invoice reversed. A second reversal of the same
  invoice is refused (and counted), so is a reversal of an invoice with any payment or pending
  payment, and the cash operation on an accrual invoice (or the reverse).
- The reverse-and-rebill task runs in a background thread: the progress billing log walks
  5 (reversing, only with a reverse action) -> 1 (generating bills) -> 2, or 4 (unposted batch)
  when the batch is not posted automatically; `Faults.rebill_outcome` decides a 3/6/stall end.
"""

from __future__ import annotations

import enum
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from simulators.common.counters import RequestCounters
from simulators.imis.faults import FaultInjector, Faults

CASH = 0
ACCRUAL = 1
ZERO = Decimal("0.00")
CENT = Decimal("0.01")

DEFAULT_CYCLE = "Regular Membership Fees"
DEFAULT_EFFECTIVE_DATE = datetime(2025, 9, 1, tzinfo=UTC)

# BillingLog Status values (seed page, step 2).
PENDING, PROCESSING, COMPLETED, FAILED, UNPOSTED_BATCH, REVERSING, BATCH_DELETED = range(7)

# The Invoice/_execute operations that reverse an invoice (counted in the reversal counters).
REVERSAL_OPERATIONS = frozenset(
    {"ProcessCashReversal", "ProcessAccrualReversal", "ProcessOrderReversal", "ProcessFundraisingReversal"}
)


class SimError(Exception):
    """Base of the errors the HTTP layer translates; `field` names the offending request field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(SimError):
    """404."""


class Conflict(SimError):
    """409."""


class BadRequest(SimError):
    """400: the request itself is malformed."""


class Refused(SimError):
    """A business refusal: HTTP 200 `IsSuccessStatusCode: false` or 400, per `refusal_style`."""


class InvalidGrant(SimError):
    """Bad credentials at /token."""


class Source(enum.StrEnum):
    """What produced the invoice (InvoiceSummary `SourceSystem`)."""

    DUES = "DUES"
    ORDER = "ORDER"
    FUNDRAISING = "FR"
    EVENT = "MEETING"


# --------------------------------------------------------------------------------------------
# Entities
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Party:
    party_id: str
    name: str


@dataclass(slots=True)
class Line:
    product_code: str
    description: str
    unit_price: Decimal
    quantity: int = 1

    @property
    def total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)


@dataclass(slots=True)
class ScheduledPayment:
    scheduled_payment_id: str
    amount: Decimal
    due_date: datetime
    reversed: bool = False


@dataclass(slots=True)
class Invoice:
    invoice_id: str
    number: int
    accounting_method: int
    source: Source
    bill_to: str
    sold_to: str
    lines: list[Line]
    billing_log_key: str | None
    invoice_date: datetime
    due_date: datetime
    description: str
    seq: int
    shipping: Decimal = ZERO
    handling: Decimal = ZERO
    payment_amount: Decimal = ZERO
    pending_payment_amount: Decimal = ZERO
    credit_amount: Decimal = ZERO  # reversals and write-offs
    refunded_amount: Decimal = ZERO
    reversed: bool = False
    written_off: bool = False
    schedule: list[ScheduledPayment] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Bumped by every change (through `record`); wire.py caches the rendered JSON per version.
    version: int = 0
    rendered: tuple[int, bytes] | None = field(default=None, repr=False, compare=False)

    def record(self, event: dict[str, Any]) -> None:
        """Log a change made to the invoice (every mutation goes through here)."""
        self.events.append(event)
        self.version += 1

    @property
    def amount(self) -> Decimal:
        return sum((line.total for line in self.lines), ZERO) + self.shipping + self.handling

    @property
    def balance(self) -> Decimal:
        return self.amount - self.payment_amount - self.credit_amount

    @property
    def is_open_unpaid(self) -> bool:
        """Open with no payments: the only kind of invoice a reversal may touch."""
        return (
            not self.reversed
            and self.payment_amount == 0
            and self.pending_payment_amount == 0
            and self.balance > 0
            and self.balance == self.amount
        )

    def dump(self) -> dict[str, Any]:
        """Everything about the invoice, JSON-ready (amounts as strings), for assertions."""
        return {
            "invoice_id": self.invoice_id,
            "invoice_number": self.number,
            "accounting_method": self.accounting_method,
            "source": self.source.value,
            "bill_to": self.bill_to,
            "sold_to": self.sold_to,
            "billing_log_key": self.billing_log_key,
            "amount": str(self.amount),
            "balance": str(self.balance),
            "payment_amount": str(self.payment_amount),
            "pending_payment_amount": str(self.pending_payment_amount),
            "credit_amount": str(self.credit_amount),
            "refunded_amount": str(self.refunded_amount),
            "reversed": self.reversed,
            "written_off": self.written_off,
            "shipping": str(self.shipping),
            "handling": str(self.handling),
            "lines": [
                {
                    "product_code": line.product_code,
                    "description": line.description,
                    "unit_price": str(line.unit_price),
                    "quantity": line.quantity,
                }
                for line in self.lines
            ],
            "schedule": [
                {
                    "scheduled_payment_id": s.scheduled_payment_id,
                    "amount": str(s.amount),
                    "reversed": s.reversed,
                }
                for s in self.schedule
            ],
            "invoice_date": self.invoice_date.isoformat(),
            "due_date": self.due_date.isoformat(),
            "description": self.description,
            "events": list(self.events),
        }


@dataclass(slots=True)
class BillingLog:
    key: str
    cycle_name: str
    status: int
    seq: int
    run_name: str | None = None
    billing_type: str | None = None
    billing_date: datetime | None = None
    effective_date: datetime | None = None
    accounting_method: int = CASH
    party_id: str | None = None
    auto_pay_option: int = 0
    original_key: str | None = None
    batch_id: str | None = None
    information: str | None = None
    do_not_apply_credits: bool = False
    do_not_prorate: bool = False
    history: list[tuple[int, datetime]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An invoice a bill run will create when its batch is posted."""

    party_id: str
    lines: tuple[Line, ...]
    accounting_method: int
    description: str
    effective_date: datetime


@dataclass(slots=True)
class Batch:
    batch_id: str
    billing_log_key: str | None
    status: str  # Open, Ready, Posted, Deleted
    drafts: list[InvoiceDraft] = field(default_factory=list)
    invoice_ids: list[str] = field(default_factory=list)
    posting_error: str | None = None
    posted_at: datetime | None = None

    @property
    def transaction_count(self) -> int:
        return len(self.drafts)


# --------------------------------------------------------------------------------------------
# Commands (what wire.py parses requests into)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineAdjustment:
    """PartialInvoiceLine / PartialOrderLine."""

    product_code: str
    is_removed: bool = False
    original_unit_price: Decimal | None = None
    new_unit_price: Decimal | None = None
    adjustment_price: Decimal | None = None
    original_quantity: int | None = None
    new_quantity: int | None = None
    is_new_line: bool = False
    product_name: str | None = None


@dataclass(frozen=True, slots=True)
class InvoiceAction:
    """The data object of an Invoice/_execute Process* / Update* operation."""

    invoice_id: str
    adjustment_date: datetime
    reason: str | None = None
    do_not_cancel_membership: bool = False
    lines: tuple[LineAdjustment, ...] = ()
    original_shipping: Decimal | None = None
    new_shipping: Decimal | None = None
    original_handling: Decimal | None = None
    new_handling: Decimal | None = None
    refund_amount: Decimal | None = None
    payment_method_id: str | None = None
    scheduled_payment_id: str | None = None
    reverse_all: bool | None = None
    new_bill_to_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReverseAction:
    """TaskDefinitionActionAdhocReverseInvoiceData: exactly one of the two scopes."""

    original_key: str | None = None
    invoice_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BillGeneration:
    """TaskDefinitionActionAdHocBillGenerationData with its LegacyBillingData."""

    cycle_name: str
    effective_date: datetime | None = None
    run_name: str | None = None
    billing_log_key: str | None = None
    auto_pay_option: int = 0
    party_id: str | None = None
    original_key: str | None = None
    is_renewal: bool = True
    auto_post: bool = False


@dataclass(frozen=True, slots=True)
class TaskRequest:
    reverse: ReverseAction | None = None
    generate: BillGeneration | None = None


@dataclass(slots=True)
class TaskRecord:
    task_log_id: str
    request: TaskRequest
    progress_log_key: str | None
    original_key: str | None
    status: str = "Running"  # Running, Completed, AwaitingPost, Failed, BatchDeleted, Stalled, Cancelled
    reversed_invoice_ids: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    batch_id: str | None = None
    rebill: dict[str, Any] | None = None
    thread: threading.Thread | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "task_log_id": self.task_log_id,
            "status": self.status,
            "progress_log_key": self.progress_log_key,
            "original_key": self.original_key,
            "reverse": None if self.request.reverse is None else asdict(self.request.reverse),
            "generate": None
            if self.request.generate is None
            else {
                k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self.request.generate).items()
            },
            "reversed_invoice_ids": list(self.reversed_invoice_ids),
            "refused": list(self.refused),
            "batch_id": self.batch_id,
        }


@dataclass(frozen=True, slots=True)
class SeededBilling:
    """What `seed_billing` / `seed_examples` created, for tests to plan against."""

    original_key: str
    other_keys: tuple[str, ...]
    invoice_ids: tuple[str, ...]
    cycle_name: str
    open_count: int
    paid_count: int
    part_paid_count: int
    accounting_method: int = CASH
    seed: int | None = None
    open_invoice_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()
    # Parties whose every invoice of the billing is open and unpaid: the ones a full
    # reverse-and-rebill bills again.
    rebill_party_ids: tuple[str, ...] = ()
    # Open invoices of the older billings: no reverse-and-rebill of `original_key` may touch them.
    other_open_invoice_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------
# Query filters (`?Property=operation:value`)
# --------------------------------------------------------------------------------------------

FILTER_OPERATIONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "contains", "startswith", "in", "between"})


@dataclass(frozen=True, slots=True)
class Filter:
    field: str  # as the client spelled it
    operation: str  # lower case, one of FILTER_OPERATIONS
    values: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, raw: str) -> Filter:
        op, sep, rest = raw.partition(":")
        if sep and op.lower() in FILTER_OPERATIONS:
            operation = op.lower()
            if operation in ("in", "between"):
                parts = rest.split("|") if "|" in rest else rest.split(",")
                return cls(name, operation, tuple(p.strip() for p in parts))
            return cls(name, operation, (rest,))
        return cls(name, "eq", (raw,))


Getter = Callable[[Any], Any]
_NAMED_ACCOUNTING = {"cash": CASH, "accrual": ACCRUAL}


def _coerce(kind: type, raw: str, field_name: str) -> Any:
    try:
        if kind is Decimal:
            return Decimal(raw)
        if kind is int:
            if raw.strip().lower() in _NAMED_ACCOUNTING:
                return _NAMED_ACCOUNTING[raw.strip().lower()]
            return int(raw)
    except (ArithmeticError, ValueError):
        raise BadRequest(f"'{raw}' is not a valid value for {field_name}", field_name) from None
    return raw.lower()


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b[0]),
    "ne": lambda a, b: bool(a != b[0]),
    "gt": lambda a, b: bool(a > b[0]),
    "ge": lambda a, b: bool(a >= b[0]),
    "lt": lambda a, b: bool(a < b[0]),
    "le": lambda a, b: bool(a <= b[0]),
    "in": lambda a, b: a in b,
    "between": lambda a, b: bool(b[0] <= a <= b[1]),
    "contains": lambda a, b: str(b[0]).lower() in str(a).lower(),
    "startswith": lambda a, b: str(a).lower().startswith(str(b[0]).lower()),
}


@dataclass(frozen=True, slots=True)
class _CompiledFilter:
    getter: Getter
    lower: bool
    compare: Callable[[Any, Any], bool]
    args: tuple[Any, ...]
    operation: str

    def __call__(self, item: Any) -> bool:
        value = self.getter(item)
        if value is None:
            return self.operation == "ne"
        if self.lower:
            value = value.lower()
        return self.compare(value, self.args)


def _compile(flt: Filter, kind: type, getter: Getter) -> _CompiledFilter:
    args = tuple(_coerce(kind, v, flt.field) for v in flt.values)
    if flt.operation == "between" and len(args) != 2:
        raise BadRequest(f"between needs two values for {flt.field}", flt.field)
    return _CompiledFilter(getter, kind is str, _COMPARE[flt.operation], args, flt.operation)


INVOICE_FILTERS: dict[str, tuple[type, Getter]] = {
    "billinglogkey": (str, lambda i: i.billing_log_key),
    "invoiceid": (str, lambda i: i.invoice_id),
    "invoicenumber": (int, lambda i: i.number),
    "billtopartyid": (str, lambda i: i.bill_to),
    "soldtopartyid": (str, lambda i: i.sold_to),
    "balance": (Decimal, lambda i: i.balance),
    "invoiceamount": (Decimal, lambda i: i.amount),
    "paymentamount": (Decimal, lambda i: i.payment_amount),
    "pendingpaymentamount": (Decimal, lambda i: i.pending_payment_amount),
    "accountingmethod": (int, lambda i: i.accounting_method),
    "sourcesystem": (str, lambda i: i.source.value),
}

BILLING_LOG_FILTERS: dict[str, tuple[type, Getter]] = {
    "billinglogkey": (str, lambda b: b.key),
    "billingcyclename": (str, lambda b: b.cycle_name),
    "billingrunname": (str, lambda b: b.run_name),
    "originalbillinglogkey": (str, lambda b: b.original_key),
    "status": (int, lambda b: b.status),
    "billingpartyid": (str, lambda b: b.party_id),
    "accountingmethod": (int, lambda b: b.accounting_method),
    "batchid": (str, lambda b: b.batch_id),
}


def _apply_filters(
    items: Iterable[Any], filters: Sequence[Filter], table: Mapping[str, tuple[type, Getter]], entity: str
) -> list[Any]:
    compiled = []
    for flt in filters:
        spec = table.get(flt.field.lower())
        if spec is None:
            raise BadRequest(f"'{flt.field}' is not a filterable property of {entity}", flt.field)
        compiled.append(_compile(flt, *spec))
    if not compiled:
        return list(items)
    if len(compiled) == 1:
        return [item for item in items if compiled[0](item)]
    return [item for item in items if all(check(item) for check in compiled)]


# --------------------------------------------------------------------------------------------
# Seeding helpers
# --------------------------------------------------------------------------------------------

_PRICES = (Decimal("95.00"), Decimal("120.00"), Decimal("150.00"), Decimal("185.50"), Decimal("250.00"))
_FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
_LAST = ("Nguyen", "Smith", "Garcia", "Okafor", "Kowalski", "Haddad", "Larsen", "Moreau", "Tanaka", "Reyes")


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _dues_lines(rng: random.Random) -> list[Line]:
    lines = [Line("DUES", "Membership dues", rng.choice(_PRICES))]
    if rng.random() < 0.3:
        lines.append(Line("JOUR", "Journal subscription", Decimal("45.00")))
    return lines


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


@dataclass(slots=True)
class _PlannedInvoice:
    invoice_id: str
    number: int
    party_id: str
    lines: list[Line]
    status: Literal["open", "paid", "part"]
    payment: Decimal


@dataclass(slots=True)
class _PlannedLog:
    key: str
    effective_date: datetime
    invoices: list[_PlannedInvoice]


# --------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------


class ImisState:
    """One simulated iMIS tenant. Thread-safe; background tasks run in daemon threads."""

    def __init__(
        self,
        username: str = "admin",
        password: str = "secret",  # noqa: S107 - the simulator's documented default login
        faults: Faults | None = None,
        rng_seed: int = 0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.rng_seed = rng_seed
        self.faults = FaultInjector(faults, rng or random.Random(rng_seed))
        self.lock = threading.RLock()
        self.traffic = RequestCounters()
        self._stop = threading.Event()
        self._init_entities()
        self._init_counters()
        self._tokens: dict[str, float] = {}

    def _init_entities(self) -> None:
        self._ids = random.Random(f"imis-ids:{self.rng_seed}")
        self._seq = 0
        self._next_number = 500_000
        self._next_batch = 1
        self.parties: dict[str, Party] = {}
        self.invoices: dict[str, Invoice] = {}
        self._by_number: dict[int, Invoice] = {}
        self._by_log: dict[str, list[Invoice]] = {}
        self.billing_logs: dict[str, BillingLog] = {}
        self.batches: dict[str, Batch] = {}
        self.tasks: dict[str, TaskRecord] = {}

    def _init_counters(self) -> None:
        self._reversals: Counter[str] = Counter()
        self._refused_second = 0
        self._refused = 0
        self._rebills: list[dict[str, Any]] = []
        self._tokens_issued = 0

    # ---------------------------------------------------------------- lifecycle

    def close(self, timeout: float = 5.0) -> None:
        """Stop background tasks (they end where they are) and join their threads."""
        self._stop.set()
        self.wait_for_tasks(timeout)

    def __enter__(self) -> ImisState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for_tasks(self, timeout: float | None = 10.0) -> bool:
        """Join every background task thread; True when none is still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            threads = [t.thread for t in self.tasks.values() if t.thread is not None]
        for thread in threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in threads)

    def reset(self) -> None:
        """Forget every entity and counter (tokens and fault settings are kept)."""
        self.close()
        with self.lock:
            self._init_entities()
            self.reset_counters()
            self._stop.clear()

    # ---------------------------------------------------------------- ids and small helpers

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def new_guid(self) -> str:
        with self.lock:
            return _guid(self._ids)

    def _allocate_number(self) -> int:
        while self._next_number in self._by_number:
            self._next_number += 1
        number = self._next_number
        self._next_number += 1
        return number

    def _ensure_party(self, party_id: str, name: str | None = None) -> Party:
        party = self.parties.get(party_id)
        if party is None:
            party = Party(party_id, name or f"Contact {party_id}")
            self.parties[party_id] = party
        return party

    def _add_invoice(self, invoice: Invoice) -> Invoice:
        if invoice.invoice_id in self.invoices:
            raise Conflict(f"Invoice {invoice.invoice_id} already exists")
        if invoice.number in self._by_number:
            raise Conflict(f"Invoice number {invoice.number} already exists")
        self.invoices[invoice.invoice_id] = invoice
        self._by_number[invoice.number] = invoice
        if invoice.billing_log_key is not None:
            self._by_log.setdefault(invoice.billing_log_key, []).append(invoice)
        return invoice

    def _add_log(self, log: BillingLog, at: datetime | None = None) -> BillingLog:
        if log.key in self.billing_logs:
            raise Conflict(f"A billing log with BillingLogKey {log.key} already exists", "BillingLogKey")
        log.history.append((log.status, at or datetime.now(UTC)))
        self.billing_logs[log.key] = log
        return log

    def _set_status(self, log: BillingLog, status: int, information: str | None = None) -> None:
        log.status = status
        if information is not None:
            log.information = information
        if not log.history or log.history[-1][0] != status:
            log.history.append((status, datetime.now(UTC)))

    # ---------------------------------------------------------------- auth

    def issue_token(self, username: str, password: str) -> tuple[str, float]:
        """Returns (access_token, lifetime seconds); raises InvalidGrant."""
        if not secrets.compare_digest(username.encode(), self.username.encode()) or not (
            secrets.compare_digest(password.encode(), self.password.encode())
        ):
            raise InvalidGrant("The user name or password is incorrect.")
        lifetime = self.faults.settings.token_lifetime_seconds
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self.lock:
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + lifetime
            self._tokens_issued += 1
        return token, lifetime

    def token_valid(self, token: str) -> bool:
        expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def expire_tokens(self) -> int:
        """Make every issued token invalid (the next call gets 401); returns how many there were."""
        with self.lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    # ---------------------------------------------------------------- counters

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self.traffic.snapshot(),
                "reversals": {k: v for k, v in self._reversals.items() if v > 0},
                "refused_second_reversals": self._refused_second,
                "refused_reversals": self._refused,
                "rebills": [dict(r) for r in self._rebills],
                "tokens_issued": self._tokens_issued,
            }

    def reset_counters(self) -> None:
        """Zero the counters and the concurrency peak; entities are kept."""
        with self.lock:
            self.traffic.reset()
            self._init_counters()

    # ---------------------------------------------------------------- seeding

    def seed_billing(
        self,
        invoices: int,
        seed: int,
        cycle_name: str = DEFAULT_CYCLE,
        accounting_method: int | str = CASH,
        effective_date: datetime = DEFAULT_EFFECTIVE_DATE,
        other_billings: int = 1,
    ) -> SeededBilling:
        """Add one completed billing of `invoices` invoices (plus `other_billings` older ones).

        The same arguments give the same keys, ids and amounts on a fresh simulator. Seeding the
        same seed again in one simulator adds another, independent billing (new keys).
        """
        if invoices < 0 or other_billings < 0:
            raise ValueError("invoices and other_billings must not be negative")
        method = _accounting_method(accounting_method)
        with self.lock:
            attempt = 0
            while True:
                plan = self._plan_billing(invoices, seed, attempt, method, effective_date, other_billings)
                if plan is not None:
                    break
                attempt += 1
            return self._apply_billing_plan(plan, seed, cycle_name, method)

    def _plan_billing(
        self,
        n: int,
        seed: int,
        attempt: int,
        method: int,
        effective_date: datetime,
        other_billings: int,
    ) -> tuple[_PlannedLog, list[_PlannedLog], dict[str, str]] | None:
        rng = random.Random(f"imis-billing:{seed}:{attempt}")
        original_key = _guid(rng)
        other_keys = [_guid(rng) for _ in range(other_billings)]
        if original_key in self.billing_logs or any(k in self.billing_logs for k in other_keys):
            return None
        doubles = 0 if n < 4 else max(1, n // 40)
        party_count = n - doubles
        party_base = rng.randrange(100_000, 90_000_000)
        party_ids = [str(party_base + i) for i in range(party_count)]
        if any(p in self.parties for p in party_ids):
            return None
        names = {p: _name(rng) for p in party_ids}
        owners = party_ids + rng.sample(party_ids, doubles)
        rng.shuffle(owners)
        paid = round(n * 0.10)
        part = round(n * 0.05)
        if n >= 3:
            paid, part = max(paid, 1), max(part, 1)
        statuses: list[Literal["open", "paid", "part"]] = ["paid"] * paid
        statuses += ["part"] * part
        statuses += ["open"] * (n - paid - part)
        rng.shuffle(statuses)
        older_sizes = [max(2, n // 10) for _ in other_keys]
        total = n + sum(older_sizes)
        number_base = rng.randrange(10_000, 2_000_000_000 - total)
        numbers = list(range(number_base, number_base + total))
        if any(num in self._by_number or str(num) in self.invoices for num in numbers):
            return None
        legacy = 0
        if method == CASH and n >= 10:
            legacy = max(1, round(n * 0.02))
        legacy_positions = set(rng.sample(range(n), legacy))
        planned: list[_PlannedInvoice] = []
        for i in range(n):
            party = owners[i]
            number = numbers[i]
            invoice_id = f"CASH:{party}:{_guid(rng)}" if i in legacy_positions else str(number)
            lines = _dues_lines(rng)
            amount = sum((line.total for line in lines), ZERO)
            status = statuses[i]
            payment = ZERO
            if status == "paid":
                payment = amount
            elif status == "part":
                payment = (amount * Decimal(rng.randint(10, 90)) / 100).quantize(CENT)
            planned.append(_PlannedInvoice(invoice_id, number, party, lines, status, payment))
        original = _PlannedLog(original_key, effective_date, planned)
        others: list[_PlannedLog] = []
        cursor = n
        for j, key in enumerate(other_keys):
            size = older_sizes[j]
            pool = (
                party_ids
                if len(party_ids) >= size
                else party_ids + [str(party_base + party_count + k) for k in range(size - len(party_ids))]
            )
            for extra in pool:
                names.setdefault(extra, _name(rng))
            chosen = rng.sample(pool, size)
            older: list[_PlannedInvoice] = []
            for k, party in enumerate(chosen):
                number = numbers[cursor]
                cursor += 1
                lines = _dues_lines(rng)
                amount = sum((line.total for line in lines), ZERO)
                is_open = k == 0 or rng.random() < 0.3
                older.append(
                    _PlannedInvoice(
                        str(number),
                        number,
                        party,
                        lines,
                        "open" if is_open else "paid",
                        ZERO if is_open else amount,
                    )
                )
            others.append(_PlannedLog(key, _years_before(effective_date, j + 1), older))
        if any(p in self.parties for p in names):
            return None
        return original, others, names

    def _apply_billing_plan(
        self,
        plan: tuple[_PlannedLog, list[_PlannedLog], dict[str, str]],
        seed: int,
        cycle_name: str,
        method: int,
    ) -> SeededBilling:
        original, others, names = plan
        for party_id, name in names.items():
            self._ensure_party(party_id, name)
        other_open: list[str] = []
        # Older billings first, so creation order (and therefore list order) is chronological.
        for older in reversed(others):
            self._create_seeded_log(older, cycle_name, method)
            other_open += [p.invoice_id for p in older.invoices if p.status == "open"]
        self._create_seeded_log(original, cycle_name, method)
        by_party: dict[str, list[_PlannedInvoice]] = {}
        for p in original.invoices:
            by_party.setdefault(p.party_id, []).append(p)
        return SeededBilling(
            original_key=original.key,
            other_keys=tuple(o.key for o in others),
            invoice_ids=tuple(p.invoice_id for p in original.invoices),
            cycle_name=cycle_name,
            open_count=sum(p.status == "open" for p in original.invoices),
            paid_count=sum(p.status == "paid" for p in original.invoices),
            part_paid_count=sum(p.status == "part" for p in original.invoices),
            accounting_method=method,
            seed=seed,
            open_invoice_ids=tuple(p.invoice_id for p in original.invoices if p.status == "open"),
            party_ids=tuple(by_party),
            rebill_party_ids=tuple(
                party for party, items in by_party.items() if all(p.status == "open" for p in items)
            ),
            other_open_invoice_ids=tuple(other_open),
        )

    def _create_seeded_log(self, planned: _PlannedLog, cycle_name: str, method: int) -> BillingLog:
        billing_date = planned.effective_date - timedelta(days=17, hours=-9)
        batch_id = self._new_batch_id()
        log = self._add_log(
            BillingLog(
                key=planned.key,
                cycle_name=cycle_name,
                status=COMPLETED,
                seq=self._next_seq(),
                run_name=f"{cycle_name} {planned.effective_date:%Y-%m}",
                billing_type="A",
                billing_date=billing_date,
                effective_date=planned.effective_date,
                accounting_method=method,
                auto_pay_option=0,
                batch_id=batch_id,
            ),
            at=billing_date,
        )
        batch = Batch(batch_id, log.key, "Posted", posted_at=billing_date)
        self.batches[batch_id] = batch
        for p in planned.invoices:
            invoice = self._add_invoice(
                Invoice(
                    invoice_id=p.invoice_id,
                    number=p.number,
                    accounting_method=method,
                    source=Source.DUES,
                    bill_to=p.party_id,
                    sold_to=p.party_id,
                    lines=p.lines,
                    billing_log_key=log.key,
                    invoice_date=billing_date,
                    due_date=planned.effective_date,
                    description=f"{cycle_name} {planned.effective_date:%Y}",
                    seq=self._next_seq(),
                    payment_amount=p.payment,
                )
            )
            batch.drafts.append(
                InvoiceDraft(p.party_id, tuple(p.lines), method, invoice.description, planned.effective_date)
            )
            batch.invoice_ids.append(invoice.invoice_id)
        return log

    def seed_examples(self, invoice_8158: Literal["cash", "accrual", "order"] = "cash") -> SeededBilling:
        """Create exactly what the seed pages' examples refer to.

        - billing `a9f0db70-…` (cycle "Regular Membership Fees", cash, completed) with party 101's open
          invoice 8158 (DUES 250 + JOUR 95 + INSIDMAG 25) and a mix: 8159 open (102), 8160 paid (103),
          8161 part-paid (104), 8162 pending payment (105), 8163+8164 open (106), 8165 open + 8166
          paid (107), and the legacy cash invoice `CASH:23415:…` open (23415);
        - an older completed billing of the same cycle: 7001 paid (101), 7002 open (108), never touched;
        - accrual billing of "Chapter Dues" with invoice 2317 (InvoiceNumber 2317, party 102, open);
        - 8200, party 101's fundraising pledge (600.00 in four scheduled payments of 150.00);
        - 8300, party 101's event invoice; party 23500 (Acme Corporation) as its new bill-to;
        - an unposted (Status 4) "Chapter Dues" run whose batch `DUES-2025-10-RB` is Ready (two
          invoices, for 103 and 104, once posted): what `batch_post.json` posts.

        The adjusting page sends every Process* example for invoice 8158, whatever its kind:
        `invoice_8158` picks which kind 8158 is ("accrual" keeps it in the billing as an accrual
        invoice, "order" makes it a commerce order outside any billing).
        """
        with self.lock:
            keys = (EXAMPLE_ORIGINAL_KEY, EXAMPLE_OLDER_KEY, EXAMPLE_ACCRUAL_KEY, EXAMPLE_UNPOSTED_KEY)
            if any(k in self.billing_logs for k in keys):
                raise Conflict("seed_examples() was already called on this simulator")
            return self._seed_examples(invoice_8158)

    def _seed_examples(self, invoice_8158: str) -> SeededBilling:
        cycle = DEFAULT_CYCLE
        effective = DEFAULT_EFFECTIVE_DATE
        billed = datetime(2025, 8, 15, 9, 30, tzinfo=UTC)
        for party_id, name in (
            ("101", "Alex Member"),
            ("102", "Blair Okafor"),
            ("103", "Casey Larsen"),
            ("104", "Dana Moreau"),
            ("105", "Emery Tanaka"),
            ("106", "Frankie Reyes"),
            ("107", "Gale Haddad"),
            ("108", "Harper Smith"),
            ("23415", "Indigo Kowalski"),
            ("23500", "Acme Corporation"),
        ):
            self._ensure_party(party_id, name)

        def log(key: str, cycle_name: str, method: int, eff: datetime, at: datetime) -> BillingLog:
            batch_id = self._new_batch_id()
            self.batches[batch_id] = Batch(batch_id, key, "Posted", posted_at=at)
            return self._add_log(
                BillingLog(
                    key=key,
                    cycle_name=cycle_name,
                    status=COMPLETED,
                    seq=self._next_seq(),
                    run_name=f"{cycle_name} {eff:%Y-%m}",
                    billing_type="A",
                    billing_date=at,
                    effective_date=eff,
                    accounting_method=method,
                    auto_pay_option=0,
                    batch_id=batch_id,
                ),
                at=at,
            )

        def invoice(
            invoice_id: str,
            party: str,
            lines: list[Line],
            log_key: str | None,
            *,
            number: int | None = None,
            method: int = CASH,
            paid: str = "0.00",
            pending: str = "0.00",
            source: Source = Source.DUES,
            at: datetime = billed,
            description: str = f"{cycle} 2025",
        ) -> Invoice:
            return self._add_invoice(
                Invoice(
                    invoice_id=invoice_id,
                    number=number if number is not None else int(invoice_id),
                    accounting_method=method,
                    source=source,
                    bill_to=party,
                    sold_to=party,
                    lines=lines,
                    billing_log_key=log_key,
                    invoice_date=at,
                    due_date=effective,
                    description=description,
                    seq=self._next_seq(),
                    payment_amount=Decimal(paid),
                    pending_payment_amount=Decimal(pending),
                )
            )

        def dues(price: str = "250.00") -> list[Line]:
            return [Line("DUES", "Membership dues", Decimal(price))]

        older_effective = _years_before(effective, 1)
        older_at = _years_before(billed, 1)
        log(EXAMPLE_OLDER_KEY, cycle, CASH, older_effective, older_at)
        invoice("7001", "101", dues("240.00"), EXAMPLE_OLDER_KEY, paid="240.00", at=older_at)
        invoice("7002", "108", dues("240.00"), EXAMPLE_OLDER_KEY, at=older_at)

        log(EXAMPLE_ORIGINAL_KEY, cycle, CASH, effective, billed)
        lines_8158 = [
            Line("DUES", "Membership dues", Decimal("250.00")),
            Line("JOUR", "Journal subscription", Decimal("95.00")),
            Line("INSIDMAG", "Inside magazine", Decimal("25.00")),
        ]
        if invoice_8158 == "cash":
            invoice("8158", "101", lines_8158, EXAMPLE_ORIGINAL_KEY)
        elif invoice_8158 == "accrual":
            invoice("8158", "101", lines_8158, EXAMPLE_ORIGINAL_KEY, method=ACCRUAL)
        elif invoice_8158 == "order":
            order = invoice(
                "8158",
                "101",
                [Line("BOOK001", "Governance handbook", Decimal("49.95"), quantity=2)],
                None,
                source=Source.ORDER,
                description="Order 8158",
            )
            order.shipping = Decimal("15.00")
            order.handling = Decimal("5.00")
        else:
            raise ValueError(f"invoice_8158 must be cash, accrual or order, not {invoice_8158!r}")
        invoice("8159", "102", dues(), EXAMPLE_ORIGINAL_KEY)
        invoice("8160", "103", dues(), EXAMPLE_ORIGINAL_KEY, paid="250.00")
        invoice("8161", "104", dues(), EXAMPLE_ORIGINAL_KEY, paid="100.00")
        invoice("8162", "105", dues(), EXAMPLE_ORIGINAL_KEY, pending="250.00")
        invoice("8163", "106", dues(), EXAMPLE_ORIGINAL_KEY)
        invoice("8164", "106", [Line("CHAPTER", "Chapter dues", Decimal("40.00"))], EXAMPLE_ORIGINAL_KEY)
        invoice("8165", "107", dues(), EXAMPLE_ORIGINAL_KEY)
        invoice("8166", "107", [Line("CHAPTER", "Chapter dues", Decimal("40.00"))], EXAMPLE_ORIGINAL_KEY, paid="40.00")
        invoice(EXAMPLE_LEGACY_INVOICE_ID, "23415", dues("185.50"), EXAMPLE_ORIGINAL_KEY, number=8167)

        log(EXAMPLE_ACCRUAL_KEY, "Chapter Dues", ACCRUAL, effective, billed)
        invoice("2317", "102", dues("120.00"), EXAMPLE_ACCRUAL_KEY, method=ACCRUAL, description="Chapter Dues 2025")

        # An accrual renewal run left unposted (Status 4): `batch_post.json` posts its batch.
        unposted = self._add_log(
            BillingLog(
                key=EXAMPLE_UNPOSTED_KEY,
                cycle_name="Chapter Dues",
                status=UNPOSTED_BATCH,
                seq=self._next_seq(),
                run_name="Chapter Dues 2025-10",
                billing_type="A",
                billing_date=billed + timedelta(days=30),
                effective_date=datetime(2025, 10, 1, tzinfo=UTC),
                accounting_method=ACCRUAL,
                batch_id=EXAMPLE_BATCH_ID,
                information=f"Batch {EXAMPLE_BATCH_ID} must be posted.",
            ),
            at=billed + timedelta(days=30),
        )
        self.batches[EXAMPLE_BATCH_ID] = Batch(
            EXAMPLE_BATCH_ID,
            unposted.key,
            "Ready",
            drafts=[
                InvoiceDraft(
                    party,
                    (Line("CHAPTER", "Chapter dues", Decimal("120.00")),),
                    ACCRUAL,
                    "Chapter Dues 2025-10",
                    datetime(2025, 10, 1, tzinfo=UTC),
                )
                for party in ("103", "104")
            ],
        )

        pledge = invoice(
            "8200",
            "101",
            [Line("PLEDGE", "Annual fund pledge", Decimal("600.00"))],
            None,
            source=Source.FUNDRAISING,
            description="Annual fund pledge",
        )
        pledge.schedule = [
            ScheduledPayment(str(i), Decimal("150.00"), effective + timedelta(days=90 * (i - 1))) for i in range(1, 5)
        ]
        invoice(
            "8300",
            "101",
            [Line("CONF25", "Annual conference registration", Decimal("495.00"))],
            None,
            source=Source.EVENT,
            description="Annual Conference 2025",
        )
        in_billing = self._by_log[EXAMPLE_ORIGINAL_KEY]
        return SeededBilling(
            original_key=EXAMPLE_ORIGINAL_KEY,
            other_keys=(EXAMPLE_OLDER_KEY,),
            invoice_ids=tuple(i.invoice_id for i in in_billing),
            cycle_name=cycle,
            open_count=sum(i.is_open_unpaid for i in in_billing),
            paid_count=sum(i.balance <= 0 for i in in_billing),
            part_paid_count=sum(0 < i.payment_amount < i.amount for i in in_billing),
            accounting_method=CASH,
            seed=None,
            open_invoice_ids=tuple(i.invoice_id for i in in_billing if i.is_open_unpaid),
            party_ids=tuple(dict.fromkeys(i.bill_to for i in in_billing)),
            rebill_party_ids=tuple(
                p
                for p in dict.fromkeys(i.bill_to for i in in_billing)
                if all(i.is_open_unpaid for i in in_billing if i.bill_to == p)
            ),
            other_open_invoice_ids=("7002",),
        )

    # ---------------------------------------------------------------- reads

    def invoice(self, invoice_id: str) -> Invoice:
        with self.lock:
            found = self.invoices.get(invoice_id)
            if found is None:
                raise NotFound(f"Invoice '{invoice_id}' was not found.")
            return found

    def invoice_by_number(self, number: int) -> Invoice:
        with self.lock:
            found = self._by_number.get(number)
            if found is None:
                raise NotFound(f"No invoice has the reference number {number}.")
            return found

    def invoice_id_for_number(self, number: int) -> str | None:
        found = self._by_number.get(number)
        return None if found is None else found.invoice_id

    def billing_log(self, key: str) -> BillingLog:
        with self.lock:
            found = self.billing_logs.get(key) or self.billing_logs.get(key.lower())
            if found is None:
                raise NotFound(f"BillingLog '{key}' was not found.")
            return found

    def batch(self, batch_id: str) -> Batch:
        with self.lock:
            found = self.batches.get(batch_id)
            if found is None or found.status == "Deleted":
                raise NotFound(f"Batch '{batch_id}' was not found.")
            return found

    def find_invoices(
        self, filters: Sequence[Filter] = (), offset: int = 0, limit: int | None = None
    ) -> tuple[list[Invoice], int]:
        """Invoices matching every filter, in creation order: (page, total count)."""
        with self.lock:
            candidates: Iterable[Invoice] = self.invoices.values()
            rest = list(filters)
            for flt in filters:
                if flt.field.lower() == "billinglogkey" and flt.operation == "eq":
                    candidates = self._by_log.get(flt.values[0].lower(), [])
                    rest.remove(flt)  # answered by the index
                    break
            matched = _apply_filters(candidates, rest, INVOICE_FILTERS, "InvoiceSummary")
            end = None if limit is None else offset + limit
            return matched[offset:end], len(matched)

    def find_billing_logs(
        self, filters: Sequence[Filter] = (), offset: int = 0, limit: int | None = None
    ) -> tuple[list[BillingLog], int]:
        with self.lock:
            matched = _apply_filters(self.billing_logs.values(), filters, BILLING_LOG_FILTERS, "BillingLog")
            end = None if limit is None else offset + limit
            return matched[offset:end], len(matched)

    def billing_log_history(self, key: str) -> list[tuple[int, datetime]]:
        with self.lock:
            return list(self.billing_log(key).history)

    def dump_invoices(self, billing_log_key: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if billing_log_key is None:
                return [i.dump() for i in self.invoices.values()]
            return [i.dump() for i in self._by_log.get(billing_log_key.lower(), [])]

    # ---------------------------------------------------------------- writes: billing logs, payments

    def create_billing_log(self, log: BillingLog) -> BillingLog:
        """POST /api/BillingLog: keeps a client-provided key, else generates one; 409 on a duplicate."""
        with self.lock:
            if not log.key:
                log.key = _guid(self._ids)
            log.key = log.key.lower()
            log.seq = self._next_seq()
            if log.billing_date is None:
                log.billing_date = datetime.now(UTC)
            return self._add_log(log)

    def apply_payment(self, invoice_id: str, amount: Decimal, *, pending: bool = False) -> Invoice:
        """Record a (pending) payment, e.g. one made after the client planned its run."""
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice.reversed:
                raise Refused(f"Invoice {invoice_id} has been reversed; it cannot take payments.")
            if amount <= 0:
                raise BadRequest("amount must be positive", "amount")
            amount = amount.quantize(CENT)
            if pending:
                invoice.pending_payment_amount += amount
            else:
                invoice.payment_amount += amount
            invoice.record({"operation": "Payment", "amount": str(amount), "pending": pending})
            return invoice

    # ---------------------------------------------------------------- Invoice/_execute

    def can_cash_invoice_be_reversed(self, invoice_id: str) -> bool:
        with self.lock:
            invoice = self.invoice(invoice_id)
            return invoice.accounting_method == CASH and invoice.source == Source.DUES and invoice.is_open_unpaid

    def can_invoice_be_reversed(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.accounting_method == ACCRUAL and invoice.source == Source.DUES and invoice.is_open_unpaid

    def can_order_invoice_be_adjusted(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.source == Source.ORDER and not invoice.reversed

    def can_dues_invoice_be_adjusted(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.source == Source.DUES and not invoice.reversed and not invoice.written_off

    def can_invoice_be_refunded(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.accounting_method == ACCRUAL and invoice.balance < 0

    def _check_reversible(self, invoice: Invoice, operation: str) -> None:
        if invoice.reversed:
            self._refused_second += 1
            raise Refused(f"Invoice {invoice.invoice_id} has already been reversed.")
        if invoice.payment_amount != 0:
            raise Refused(f"Invoice {invoice.invoice_id} cannot be reversed because payments have been applied to it.")
        if invoice.pending_payment_amount != 0:
            raise Refused(f"Invoice {invoice.invoice_id} cannot be reversed because it has pending payments.")
        if invoice.balance <= 0 or invoice.balance != invoice.amount:
            raise Refused(f"Invoice {invoice.invoice_id} has no open balance to reverse.")

    def _reverse(self, invoice: Invoice, operation: str, action: InvoiceAction | None) -> None:
        amount = invoice.balance
        invoice.credit_amount += amount
        invoice.reversed = True
        for scheduled in invoice.schedule:
            scheduled.reversed = True
        self._reversals[invoice.invoice_id] += 1
        invoice.record(_event(operation, action, amount=-amount))

    def reverse_invoice(self, operation: str, action: InvoiceAction) -> None:
        """ProcessCashReversal / ProcessAccrualReversal / ProcessOrderReversal /
        ProcessFundraisingReversal; raises Refused."""
        with self.lock:
            try:
                invoice = self.invoice(action.invoice_id)
            except NotFound as exc:
                self._refused += 1
                raise Refused(exc.message) from None
            try:
                self._check_kind_for_reversal(invoice, operation)
                partial = action.scheduled_payment_id is not None and not action.reverse_all
                if operation == "ProcessFundraisingReversal" and partial:
                    self._reverse_scheduled_payment(invoice, action)
                    return
                self._check_reversible(invoice, operation)
            except Refused:
                self._refused += 1
                raise
            self._reverse(invoice, operation, action)

    def _check_kind_for_reversal(self, invoice: Invoice, operation: str) -> None:
        iid = invoice.invoice_id
        if operation == "ProcessCashReversal":
            if invoice.accounting_method != CASH:
                raise Refused(f"Invoice {iid} is an accrual invoice; use ProcessAccrualReversal.")
            if invoice.source != Source.DUES:
                raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
        elif operation == "ProcessAccrualReversal":
            if invoice.accounting_method != ACCRUAL:
                raise Refused(f"Invoice {iid} is a cash invoice; use ProcessCashReversal.")
            if invoice.source != Source.DUES:
                raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
        elif operation == "ProcessOrderReversal":
            if invoice.source != Source.ORDER:
                raise Refused(f"Invoice {iid} is not a commerce order invoice.")
        elif operation == "ProcessFundraisingReversal" and invoice.source != Source.FUNDRAISING:
            raise Refused(f"Invoice {iid} is not a fundraising invoice.")

    def _reverse_scheduled_payment(self, invoice: Invoice, action: InvoiceAction) -> None:
        if invoice.reversed:
            self._refused_second += 1
            raise Refused(f"Invoice {invoice.invoice_id} has already been reversed.")
        wanted = action.scheduled_payment_id
        scheduled = next((s for s in invoice.schedule if s.scheduled_payment_id == wanted), None)
        if scheduled is None:
            raise Refused(f"Invoice {invoice.invoice_id} has no scheduled payment '{wanted}'.")
        if scheduled.reversed:
            raise Refused(f"Scheduled payment {wanted} of invoice {invoice.invoice_id} is already reversed.")
        if invoice.balance < scheduled.amount:
            raise Refused(f"Scheduled payment {wanted} has already been paid.")
        scheduled.reversed = True
        invoice.credit_amount += scheduled.amount
        if all(s.reversed for s in invoice.schedule):
            invoice.reversed = True
            self._reversals[invoice.invoice_id] += 1
        invoice.record(_event("ProcessFundraisingReversal", action, amount=-scheduled.amount))

    def write_off(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.reversed:
                raise Refused(f"Invoice {invoice.invoice_id} has been reversed.")
            if invoice.balance <= 0:
                raise Refused(f"Invoice {invoice.invoice_id} has no balance to write off.")
            amount = invoice.balance
            invoice.credit_amount += amount
            invoice.written_off = True
            invoice.record(_event("ProcessWriteOff", action, amount=-amount))

    def record_refund(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            amount = action.refund_amount
            if amount is None or amount <= 0:
                raise Refused("RefundAmount must be a positive amount.")
            if not action.payment_method_id:
                raise Refused("PaymentMethodId is required for a refund.")
            if invoice.payment_amount < amount:
                raise Refused(
                    f"Invoice {invoice.invoice_id} has {invoice.payment_amount} in payments; "
                    f"{amount} cannot be refunded."
                )
            invoice.payment_amount -= amount
            invoice.refunded_amount += amount
            invoice.record(_event("ProcessRecordRefund", action, amount=amount))

    def adjust_invoice(self, operation: str, action: InvoiceAction) -> None:
        """ProcessCashAdjustment / ProcessAccrualAdjustment / ProcessOrderAdjustment."""
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            iid = invoice.invoice_id
            if operation == "ProcessOrderAdjustment":
                if invoice.source != Source.ORDER:
                    raise Refused(f"Invoice {iid} is not a commerce order invoice.")
            else:
                if invoice.source != Source.DUES:
                    raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
                wanted = CASH if operation == "ProcessCashAdjustment" else ACCRUAL
                if invoice.accounting_method != wanted:
                    other = "ProcessAccrualAdjustment" if wanted == CASH else "ProcessCashAdjustment"
                    kind = "an accrual" if wanted == CASH else "a cash"
                    raise Refused(f"Invoice {iid} is {kind} invoice; use {other}.")
            if invoice.reversed:
                raise Refused(f"Invoice {iid} has been reversed and cannot be adjusted.")
            if not action.lines and action.new_shipping is None and action.new_handling is None:
                raise Refused("No adjustments were given.")
            before = invoice.amount
            new_lines = [Line(x.product_code, x.description, x.unit_price, x.quantity) for x in invoice.lines]
            for adj in action.lines:
                _adjust_lines(new_lines, adj, iid)
            shipping, handling = invoice.shipping, invoice.handling
            if action.new_shipping is not None:
                _check_original("OriginalShipping", action.original_shipping, shipping)
                shipping = action.new_shipping
            if action.new_handling is not None:
                _check_original("OriginalHandling", action.original_handling, handling)
                handling = action.new_handling
            invoice.lines, invoice.shipping, invoice.handling = new_lines, shipping, handling
            invoice.record(_event(operation, action, amount=invoice.amount - before))

    def adjust_fundraising(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.source != Source.FUNDRAISING:
                raise Refused(f"Invoice {invoice.invoice_id} is not a fundraising invoice.")
            if invoice.reversed:
                raise Refused(f"Invoice {invoice.invoice_id} has been reversed and cannot be adjusted.")
            invoice.record(_event("ProcessFundraisingAdjustment", action, amount=ZERO))

    def update_event_bill_to(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.source != Source.EVENT:
                raise Refused(f"Invoice {invoice.invoice_id} is not an event invoice.")
            new_id = action.new_bill_to_id
            if not new_id or new_id not in self.parties:
                raise Refused(f"Contact '{new_id}' was not found.")
            old = invoice.bill_to
            invoice.bill_to = new_id
            invoice.record(_event("UpdateEventInvoiceBillToId", action, amount=ZERO) | {"from": old, "to": new_id})

    def _invoice_or_refuse(self, invoice_id: str) -> Invoice:
        try:
            return self.invoice(invoice_id)
        except NotFound as exc:
            raise Refused(exc.message) from None

    def refuse_by_fault(self, operation: str, invoice_id: str) -> Refused:
        """`fail_invoices[...] == "refuse"`: the refusal to answer (counted like a real one)."""
        with self.lock:
            if operation in REVERSAL_OPERATIONS:
                self._refused += 1
        return Refused(f"Invoice {invoice_id} cannot be processed at this time (simulated refusal).")

    # ---------------------------------------------------------------- TaskDefinition/_execute

    def submit_task(self, request: TaskRequest) -> str:
        """Validate and start a reverse-and-rebill task in the background; returns its TaskLogId."""
        with self.lock:
            if request.reverse is None and request.generate is None:
                raise BadRequest("The task has no actions.", "Actions")
            original_key = self._validate_task(request)
            task = TaskRecord(_guid(self._ids), request, None, original_key)
            gen = request.generate
            if gen is not None:
                log = self._progress_log(gen, original_key, REVERSING if request.reverse else PROCESSING)
                task.progress_log_key = log.key
                log.information = None
                if request.reverse is None:
                    self._start_generation(task)
                task.rebill = {
                    "task_log_id": task.task_log_id,
                    "original_key": gen.original_key or original_key,
                    "progress_log_key": log.key,
                    "party_id": gen.party_id,
                    "auto_post": gen.auto_post,
                    "with_reverse_action": request.reverse is not None,
                    "invoices_created": 0,
                    "outcome": None,
                }
                self._rebills.append(task.rebill)
            self.tasks[task.task_log_id] = task
            thread = threading.Thread(
                target=self._run_task, args=(task,), name=f"imis-task-{task.task_log_id[:8]}", daemon=True
            )
            task.thread = thread
            thread.start()
            return task.task_log_id

    def _validate_task(self, request: TaskRequest) -> str | None:
        """Raise BadRequest for a malformed task; return the original billing's key (if any)."""
        original_key: str | None = None
        rev = request.reverse
        if rev is not None:
            if (rev.original_key is None) == (not rev.invoice_ids):
                raise BadRequest(
                    "ReverseInvoice needs either OriginalBillingLogKey or ListOfInvoiceActionDuesReversalData, "
                    "not both and not neither.",
                    "OriginalBillingLogKey",
                )
            if rev.original_key is not None:
                original_key = self._known_log(rev.original_key, "OriginalBillingLogKey").key
            for invoice_id in rev.invoice_ids:
                invoice = self.invoices.get(invoice_id)
                if invoice is None:
                    raise BadRequest(f"Invoice '{invoice_id}' was not found.", "ListOfInvoiceActionDuesReversalData")
                original_key = original_key or invoice.billing_log_key
        gen = request.generate
        if gen is not None:
            if not gen.cycle_name:
                raise BadRequest("BillGenerationData.BillingCycleId is required.", "BillingCycleId")
            if not any(log.cycle_name == gen.cycle_name for log in self.billing_logs.values()):
                raise BadRequest(f"Billing cycle '{gen.cycle_name}' was not found.", "BillingCycleId")
            if gen.original_key is not None:
                original = self._known_log(gen.original_key, "AdditionalOption.OriginalBillingLogKey")
                if rev is not None and rev.original_key is not None and rev.original_key.lower() != original.key:
                    raise BadRequest(
                        "ReverseInvoice.OriginalBillingLogKey and AdditionalOption.OriginalBillingLogKey differ.",
                        "OriginalBillingLogKey",
                    )
                if original.cycle_name != gen.cycle_name:
                    raise BadRequest(
                        f"BillingCycleId '{gen.cycle_name}' is not the cycle of the original billing "
                        f"('{original.cycle_name}').",
                        "BillingCycleId",
                    )
                original_key = original.key
            if gen.party_id is not None and gen.party_id not in self.parties:
                raise BadRequest(f"Contact '{gen.party_id}' was not found.", "IndividualBillingPartyId")
            if gen.billing_log_key is not None:
                busy = [
                    t
                    for t in self.tasks.values()
                    if t.progress_log_key == gen.billing_log_key.lower() and t.status == "Running"
                ]
                if busy:
                    raise Conflict(
                        f"BillingLog {gen.billing_log_key} is in use by task {busy[0].task_log_id}.",
                        "BillingLogKey",
                    )
        return original_key

    def _known_log(self, key: str, field_name: str) -> BillingLog:
        log = self.billing_logs.get(key.lower())
        if log is None:
            raise BadRequest(f"BillingLog '{key}' was not found.", field_name)
        return log

    def _progress_log(self, gen: BillGeneration, original_key: str | None, status: int) -> BillingLog:
        """The log the task reports progress on (the named one, else a new one), set to `status`."""
        original = self.billing_logs.get(original_key) if original_key else None
        if gen.billing_log_key is not None:
            existing = self.billing_logs.get(gen.billing_log_key.lower())
            if existing is not None:
                if existing.original_key is None:
                    existing.original_key = original_key
                self._set_status(existing, status)
                return existing
        method = original.accounting_method if original else self._cycle_method(gen.cycle_name)
        return self._add_log(
            BillingLog(
                key=(gen.billing_log_key or _guid(self._ids)).lower(),
                cycle_name=gen.cycle_name,
                status=status,
                seq=self._next_seq(),
                run_name=gen.run_name,
                billing_type="I" if gen.party_id else "A",
                billing_date=datetime.now(UTC),
                effective_date=gen.effective_date or (original.effective_date if original else None),
                accounting_method=method,
                party_id=gen.party_id,
                auto_pay_option=gen.auto_pay_option,
                original_key=original_key,
            )
        )

    def _cycle_method(self, cycle_name: str) -> int:
        for log in self.billing_logs.values():
            if log.cycle_name == cycle_name:
                return log.accounting_method
        return CASH

    def _run_task(self, task: TaskRecord) -> None:
        request = task.request
        try:
            if request.reverse is not None:
                if self._stop.wait(self.faults.settings.task_step_seconds):
                    task.status = "Cancelled"
                    return
                with self.lock:
                    self._task_reverse(task, request.reverse)
                    if request.generate is None:
                        task.status = "Completed"
                        return
                    self._start_generation(task)
            if request.generate is not None:
                if self._stop.wait(self.faults.settings.task_step_seconds):
                    task.status = "Cancelled"
                    return
                with self.lock:
                    self._task_generate(task, request.generate)
        except Exception as exc:  # pragma: no cover - a bug in the simulator; make it visible
            task.status = "Crashed"
            task.refused.append({"invoice_id": "", "message": f"simulator error: {exc!r}"})
            raise

    def _task_reverse(self, task: TaskRecord, action: ReverseAction) -> None:
        if action.original_key is not None:
            targets = [i for i in self._by_log.get(action.original_key.lower(), []) if i.is_open_unpaid]
        else:
            targets = [self.invoices[i] for i in action.invoice_ids]
        for invoice in targets:
            try:
                self._check_reversible(invoice, "ReverseInvoice")
            except Refused as exc:
                self._refused += 1
                task.refused.append({"invoice_id": invoice.invoice_id, "message": exc.message})
                continue
            self._reverse(invoice, "ReverseInvoice", None)
            task.reversed_invoice_ids.append(invoice.invoice_id)

    def _start_generation(self, task: TaskRecord) -> None:
        """Status 1, and an Open batch that the bill run fills (BatchId is on the log from now on)."""
        log = self.billing_logs[task.progress_log_key or ""]
        self._set_status(log, PROCESSING)
        batch = Batch(self._new_batch_id(), log.key, "Open")
        self.batches[batch.batch_id] = batch
        log.batch_id = batch.batch_id
        task.batch_id = batch.batch_id

    def _task_generate(self, task: TaskRecord, gen: BillGeneration) -> None:
        log = self.billing_logs[task.progress_log_key or ""]
        batch = self.batches[task.batch_id or ""]
        outcome = self.faults.settings.rebill_outcome
        rebill = task.rebill or {}
        rebill["outcome"] = outcome
        if outcome == "stall":  # the log stays at 1 and the batch Open, forever
            task.status = "Stalled"
            return
        if outcome == "fail":
            reason = "Billing failed: the bill generation process stopped (simulated)."
            batch.posting_error = reason
            self._set_status(log, FAILED, reason)
            task.status = "Failed"
            return
        batch.drafts = self._rebill_drafts(gen, task.original_key, log)
        batch.status = "Ready"
        if outcome == "batch_deleted":
            batch.status = "Deleted"
            self._set_status(log, BATCH_DELETED, f"Batch {batch.batch_id} was deleted without invoices being created.")
            task.status = "BatchDeleted"
            return
        if gen.auto_post:
            self._post(batch)
            task.status = "Completed"
        else:
            self._set_status(log, UNPOSTED_BATCH, f"Batch {batch.batch_id} must be posted.")
            task.status = "AwaitingPost"

    def _rebill_drafts(self, gen: BillGeneration, original_key: str | None, log: BillingLog) -> list[InvoiceDraft]:
        """Who gets a new renewal invoice, and for what (the products of their reference invoices)."""
        reference: dict[str, list[Invoice]] = {}
        if original_key is not None:
            for invoice in self._by_log.get(original_key, []):
                reference.setdefault(invoice.bill_to, []).append(invoice)
        if gen.original_key is not None:
            # Only IDs billed in the original billing, and only those whose invoices there were all
            # reversed (a party with a paid or part-paid invoice left as-is is not billed again).
            parties = [p for p, invoices in reference.items() if invoices and all(i.reversed for i in invoices)]
        elif gen.party_id is not None:
            parties = [gen.party_id]
        else:
            # An unrestricted renewal run: everyone billed in this cycle who owes nothing in it.
            owing: set[str] = set()
            seen: dict[str, None] = {}
            for other in self.billing_logs.values():
                if other.cycle_name != gen.cycle_name or other.key == log.key:
                    continue
                for invoice in self._by_log.get(other.key, []):
                    seen.setdefault(invoice.bill_to)
                    if not invoice.reversed and invoice.balance > 0:
                        owing.add(invoice.bill_to)
            parties = [p for p in seen if p not in owing]
        if gen.party_id is not None:
            parties = [p for p in parties if p == gen.party_id]
        effective = gen.effective_date or log.effective_date or datetime.now(UTC)
        drafts = []
        for party in parties:
            lines = [line for invoice in reference.get(party, []) for line in invoice.lines]
            if not lines:
                lines = self._latest_cycle_lines(party, gen.cycle_name)
            drafts.append(
                InvoiceDraft(
                    party,
                    tuple(Line(x.product_code, x.description, x.unit_price, x.quantity) for x in lines),
                    log.accounting_method,
                    f"{gen.cycle_name} {effective:%Y} (rebill)",
                    effective,
                )
            )
        return drafts

    def _latest_cycle_lines(self, party: str, cycle_name: str) -> list[Line]:
        for invoice in reversed(list(self.invoices.values())):
            log = self.billing_logs.get(invoice.billing_log_key or "")
            if invoice.bill_to == party and log is not None and log.cycle_name == cycle_name:
                return invoice.lines
        return [Line("DUES", "Membership dues", Decimal("250.00"))]

    # ---------------------------------------------------------------- batches

    def _new_batch_id(self) -> str:
        batch_id = f"BATCH-{self._next_batch:06d}"
        self._next_batch += 1
        return batch_id

    def post_batch(self, batch_id: str) -> Batch:
        """BatchSummary Post: create the batch's invoices; raises Refused."""
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.status == "Deleted":
                raise Refused(f"Batch '{batch_id}' was not found.")
            if batch.status == "Posted":
                raise Refused(f"Batch '{batch_id}' has already been posted.")
            if batch.status != "Ready":
                raise Refused(f"Batch '{batch_id}' is not ready to be posted ({batch.status}).")
            self._post(batch)
            return batch

    def _post(self, batch: Batch) -> None:
        now = datetime.now(UTC)
        for draft in batch.drafts:
            number = self._allocate_number()
            invoice = self._add_invoice(
                Invoice(
                    invoice_id=str(number),
                    number=number,
                    accounting_method=draft.accounting_method,
                    source=Source.DUES,
                    bill_to=draft.party_id,
                    sold_to=draft.party_id,
                    lines=[Line(x.product_code, x.description, x.unit_price, x.quantity) for x in draft.lines],
                    billing_log_key=batch.billing_log_key,
                    invoice_date=now,
                    due_date=draft.effective_date,
                    description=draft.description,
                    seq=self._next_seq(),
                )
            )
            batch.invoice_ids.append(invoice.invoice_id)
        batch.status = "Posted"
        batch.posted_at = now
        log = self.billing_logs.get(batch.billing_log_key or "")
        if log is not None:
            self._set_status(log, COMPLETED)
            log.information = None
        for task in self.tasks.values():
            if task.batch_id == batch.batch_id:
                task.status = "Completed"
                if task.rebill is not None:
                    task.rebill["invoices_created"] = len(batch.invoice_ids)

    # ---------------------------------------------------------------- misc

    @contextmanager
    def locked(self) -> Iterator[ImisState]:
        with self.lock:
            yield self


EXAMPLE_ORIGINAL_KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
EXAMPLE_PROGRESS_KEY = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
EXAMPLE_OLDER_KEY = "0c6b7e3e-5f1a-4c1e-9d2b-6a8f3e2d1c00"
EXAMPLE_ACCRUAL_KEY = "5d2f9a41-7c3b-4e8a-b1f0-2e6c8d9a7b11"
EXAMPLE_UNPOSTED_KEY = "7e1c3b5a-2d4f-4a6b-9c8d-0e1f2a3b4c5d"
EXAMPLE_BATCH_ID = "DUES-2025-10-RB"
EXAMPLE_LEGACY_INVOICE_ID = "CASH:23415:3f2b8c4e-9a1d-4e6f-8b7c-1d2e3f4a5b6c"


def _accounting_method(value: int | str) -> int:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _NAMED_ACCOUNTING:
            return _NAMED_ACCOUNTING[lowered]
        if lowered.isdigit():
            value = int(lowered)
        else:
            raise ValueError(f"accounting method must be cash/accrual or 0/1, not {value!r}")
    if value not in (CASH, ACCRUAL):
        raise ValueError(f"accounting method must be 0 (cash) or 1 (accrual), not {value!r}")
    return value


def _event(operation: str, action: InvoiceAction | None, *, amount: Decimal) -> dict[str, Any]:
    return {
        "operation": operation,
        "amount": str(amount),
        "adjustment_date": None if action is None else action.adjustment_date.isoformat(),
        "reason": None if action is None else action.reason,
        "at": datetime.now(UTC).isoformat(),
    }


def _check_original(name: str, given: Decimal | None, actual: Decimal) -> None:
    if given is not None and given != actual:
        raise Refused(f"{name} {given} does not match the invoice ({actual}).")


def _adjust_lines(lines: list[Line], adj: LineAdjustment, invoice_id: str) -> None:
    line = next((x for x in lines if x.product_code == adj.product_code), None)
    if adj.is_new_line:
        if adj.new_unit_price is None:
            raise Refused(f"NewUnitPrice is required for the new line {adj.product_code}.")
        lines.append(
            Line(adj.product_code, adj.product_name or adj.product_code, adj.new_unit_price, adj.new_quantity or 1)
        )
        return
    if line is None:
        raise Refused(f"Invoice {invoice_id} has no line with product code {adj.product_code}.")
    if adj.is_removed:
        lines.remove(line)
        return
    if adj.adjustment_price is not None:
        new_total = line.total + adj.adjustment_price
        line.unit_price = (new_total / line.quantity).quantize(CENT)
    else:
        _check_original(f"OriginalUnitPrice of {adj.product_code}", adj.original_unit_price, line.unit_price)
        if adj.new_unit_price is not None:
            line.unit_price = adj.new_unit_price
    if adj.new_quantity is not None:
        if adj.original_quantity is not None and adj.original_quantity != line.quantity:
            raise Refused(f"OriginalQuantity of {adj.product_code} does not match the invoice ({line.quantity}).")
        line.quantity = adj.new_quantity
    if line.unit_price < 0 or line.quantity < 0:
        raise Refused(f"The adjustment of {adj.product_code} would make the line negative.")
