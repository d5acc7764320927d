"""Which invoices of a selection may be voided, by the contract's rules, in their order.

An invoice is eligible when all hold; otherwise it is skipped with the first failing reason
(`../shared/reference/salesforce-billing-api.md`, "Selection and eligibility"):

1. its `Status` is Posted (`not_posted`);
2. no payment is applied (`paid`); 3. no credit is applied (`credited`);
4. its `Balance` equals its `TotalAmountWithTax` (`balance_mismatch`);
5. on each of its billing schedules no other invoice in Posted or Void In Progress has a later
   `PostedDate` (`not_latest_on_schedule`).

Salesforce itself refuses voids that break 1, 4 or 5; 2 and 3 are ours (a paid or credited invoice
is left for an operator to unapply first).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal

from orchestrator.adapters.providers.salesforce.wire import InvoiceRecord

# Invoice statuses the run reads (the contract's picklist has more; any other one is "not posted").
POSTED = "Posted"
DRAFT = "Draft"
ERROR = "Error"
VOID_IN_PROGRESS = "Void In Progress"
VOIDED = "Voided"
#: What a void that went through shows: at once, then after recalculation.
VOIDING = frozenset({VOID_IN_PROGRESS, VOIDED})

# Billing schedule statuses the run acts on; any other value means the schedule is idle.
PROCESSING = "Processing"

#: The invoice fields planning selects (and settling reads again).
INVOICE_FIELDS = (
    "Id",
    "InvoiceNumber",
    "Status",
    "BillingAccountId",
    "PostedDate",
    "TotalAmountWithTax",
    "Balance",
    "NetPaymentsApplied",
    "NetCreditsApplied",
)

_ZERO = Decimal("0")


class SkipReason(enum.StrEnum):
    NOT_POSTED = "not_posted"
    PAID = "paid"
    CREDITED = "credited"
    BALANCE_MISMATCH = "balance_mismatch"
    NOT_LATEST_ON_SCHEDULE = "not_latest_on_schedule"


def open_to_void(invoice: InvoiceRecord) -> SkipReason | None:
    """Rules 1 to 4: what the invoice alone says."""
    if invoice.Status != POSTED:
        return SkipReason.NOT_POSTED
    if (invoice.NetPaymentsApplied or _ZERO) != 0:
        return SkipReason.PAID
    if (invoice.NetCreditsApplied or _ZERO) != 0:
        return SkipReason.CREDITED
    if invoice.Balance != invoice.TotalAmountWithTax:
        return SkipReason.BALANCE_MISMATCH
    return None


def skip_reason(invoice: InvoiceRecord, on_its_schedules: Iterable[InvoiceRecord]) -> SkipReason | None:
    """Why `invoice` is not voided, or None when it is eligible; `on_its_schedules` are the other
    invoices with a line on one of its billing schedules (Status and PostedDate read)."""
    reason = open_to_void(invoice)
    if reason is not None:
        return reason
    posted = invoice.PostedDate
    for other in on_its_schedules:
        if (
            other.Id != invoice.Id
            and other.Status in (POSTED, VOID_IN_PROGRESS)
            and other.PostedDate is not None
            and posted is not None
            and other.PostedDate > posted
        ):
            return SkipReason.NOT_LATEST_ON_SCHEDULE
    return None
