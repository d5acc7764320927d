"""The entities of the simulated iMIS tenant: parties, invoices, billing logs, batches, tasks.

Plain dataclasses with the few properties the rules read (an invoice's amount, balance and whether
it is open with no payments); the rules that change them live in `state.py` and `tasks.py`. Money
is `Decimal`, rounded to cents.
"""

from __future__ import annotations

import enum
import random
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from simulators.imis.commands import TaskRequest

CASH = 0
ACCRUAL = 1
#: How a seed request or a query filter may name an accounting method.
ACCOUNTING_METHODS = {"cash": CASH, "accrual": ACCRUAL}
ZERO = Decimal("0.00")
CENT = Decimal("0.01")

# BillingLog Status values (seed page, step 2).
PENDING, PROCESSING, COMPLETED, FAILED, UNPOSTED_BATCH, REVERSING, BATCH_DELETED = range(7)


class Source(enum.StrEnum):
    """What produced the invoice (InvoiceSummary `SourceSystem`)."""

    DUES = "DUES"
    ORDER = "ORDER"
    FUNDRAISING = "FR"
    EVENT = "MEETING"


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


@dataclass(slots=True)
class TaskRecord:
    """A submitted task (`tasks.py` runs it): where it stands and what it did; `rebill` is its
    entry in the counters' rebills."""

    task_log_id: str
    request: TaskRequest
    progress_log_key: str | None
    original_key: str | None
    status: str = "Running"  # Completed, AwaitingPost, Failed, BatchDeleted, Stalled, Cancelled, Crashed
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


def guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from `rng` (iMIS keys and task ids are GUIDs; seeded, they repeat)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
