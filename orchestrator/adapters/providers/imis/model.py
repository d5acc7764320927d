"""iMIS in its own words: billing logs, invoices with their accounting method and payments, the
requests a reversal and a rebill take. The provider maps these onto the core's neutral types;
nothing outside this package sees them. Money is always `Decimal`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any


class BillingLogStatus(enum.IntEnum):
    """iMIS BillingLog `Status`."""

    PENDING = 0
    PROCESSING = 1
    COMPLETED = 2
    FAILED = 3
    UNPOSTED_BATCH = 4
    REVERSING = 5
    BATCH_DELETED = 6

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]


_STATUS_LABELS = {
    BillingLogStatus.PENDING: "Pending",
    BillingLogStatus.PROCESSING: "Processing",
    BillingLogStatus.COMPLETED: "Completed",
    BillingLogStatus.FAILED: "Failed",
    BillingLogStatus.UNPOSTED_BATCH: "Unposted batch",
    BillingLogStatus.REVERSING: "Reversing invoices",
    BillingLogStatus.BATCH_DELETED: "Batch deleted",
}


class AccountingMethod(enum.IntEnum):
    CASH = 0
    ACCRUAL = 1


class AutoPayOption(enum.IntEnum):
    NOT_DEFINED = 0
    BILL_ALL_CONTACTS = 1
    BILL_ONLY_AUTOPAY_ENROLLMENTS = 2
    BILL_ONLY_NON_AUTOPAY_CONTACTS = 3


@dataclass(frozen=True, slots=True)
class BillingLog:
    """One billing run as the platform recorded it."""

    key: str
    cycle_name: str
    status: BillingLogStatus
    run_name: str | None = None
    billing_type: str | None = None
    billing_date: datetime | None = None
    effective_date: datetime | None = None
    accounting_method: AccountingMethod = AccountingMethod.CASH
    party_id: str | None = None
    auto_pay_option: AutoPayOption = AutoPayOption.NOT_DEFINED
    original_key: str | None = None
    batch_id: str | None = None
    information: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain-JSON snapshot, kept with the run so retries rebill from what was read at start."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("billing_date", "effective_date"):
            value = data[name]
            data[name] = value.isoformat() if value else None
        for name in ("status", "accounting_method", "auto_pay_option"):
            data[name] = int(data[name])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillingLog:
        values = dict(data)
        for name in ("billing_date", "effective_date"):
            values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
        values["status"] = BillingLogStatus(values["status"])
        values["accounting_method"] = AccountingMethod(values["accounting_method"])
        values["auto_pay_option"] = AutoPayOption(values["auto_pay_option"])
        return cls(**values)


class SkipReason(enum.StrEnum):
    """Why an invoice of the billing is left as it is."""

    HAS_PAYMENT = "has a payment applied"
    HAS_PENDING_PAYMENT = "has a pending payment"
    ZERO_BALANCE = "balance is zero (settled or already reversed)"
    NOT_REVERSIBLE = "the platform says it cannot be reversed"
    PAID_SINCE_PLANNING = "a payment was applied after planning"
    REVERSED_OUTSIDE_RUN = "already reversed outside this run"


@dataclass(frozen=True, slots=True)
class ImisInvoice:
    """An InvoiceSummary as the provider reads it."""

    invoice_id: str
    accounting_method: AccountingMethod
    amount: Decimal
    balance: Decimal
    payment_amount: Decimal = Decimal("0")
    pending_payment_amount: Decimal = Decimal("0")
    number: int | None = None
    party_id: str | None = None
    party_name: str | None = None
    billing_log_key: str | None = None

    def skip_reason(self) -> SkipReason | None:
        """None when the invoice is open with no payments, the only kind a reversal may touch."""
        if self.payment_amount != 0:
            return SkipReason.HAS_PAYMENT
        if self.pending_payment_amount != 0:
            return SkipReason.HAS_PENDING_PAYMENT
        if self.balance <= 0:
            return SkipReason.ZERO_BALANCE
        if self.balance != self.amount:
            return SkipReason.HAS_PAYMENT
        return None


@dataclass(frozen=True, slots=True)
class Reversal:
    """Reverse one invoice in full."""

    invoice_id: str
    accounting_method: AccountingMethod
    adjustment_date: date
    reason: str
    do_not_cancel_membership: bool = True
    invoice_number: int | None = None


@dataclass(frozen=True, slots=True)
class Rebill:
    """Bill the members of an original billing again (iMIS: the bill-generation action)."""

    original: BillingLog
    run_name: str
    tracking_log_key: str | None
    auto_post_batch: bool
    party_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerSideReversal:
    """Let the platform reverse the invoices itself (iMIS 20.3.208+ native mode).

    Either every open invoice of `billing_key`, or exactly `invoices`.
    """

    billing_key: str | None = None
    invoices: tuple[Reversal, ...] = field(default_factory=tuple)


class BatchStatus(enum.StrEnum):
    OPEN = "Open"
    READY = "Ready"
    POSTED = "Posted"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    status: BatchStatus
    transaction_count: int | None = None
    posting_error: str | None = None


@dataclass(frozen=True, slots=True)
class InvoicePage:
    """One page of a billing's invoices; `next_offset` is None on the last page."""

    invoices: tuple[ImisInvoice, ...]
    offset: int
    next_offset: int | None
    total_count: int | None = None
