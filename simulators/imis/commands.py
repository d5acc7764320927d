"""The commands of the simulated iMIS tenant: what `wire.py` parses requests into, `state.py` obeys.

Frozen dataclasses named after the data contracts they carry (`InvoiceAction` is the data object of
an `Invoice/_execute` operation, `TaskRequest` a `TaskAdhocRequest`'s actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# The Invoice/_execute operations that reverse an invoice (counted in the reversal counters).
REVERSAL_OPERATIONS = frozenset(
    {"ProcessCashReversal", "ProcessAccrualReversal", "ProcessOrderReversal", "ProcessFundraisingReversal"}
)


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
