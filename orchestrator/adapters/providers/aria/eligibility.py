"""Which invoices an Aria run may rebill, and why the others are left alone (pure).

The contract's rules, checked in this order (reference/aria-api.md, "Eligibility"):

1. not voided (`voiding_event_no` empty), else `voided`: Aria cannot rebill a voided invoice;
2. not a rebill itself (`invoice_type_cd` R), else `rebill_invoice`;
3. not rebilled already (history `rb_no` / `rb_status`, details `rb_status`), else `already_rebilled`;
4. no payment: `paid_date` empty and `total_due == amount > 0`, else `paid`. gen_rb_m would rebill a
   paid invoice and refund the payment, so the run leaves it alone itself.

A header (the object query's record) does not say whether an invoice was rebilled, but a rebilled
original's credit memo brings its `total_due` to 0: only a header that fails rule 4 needs the
history to tell `already_rebilled` from `paid` (`rebill_unknown`). A header without `total_due`
cannot show that nothing was paid, so it is `paid` too.
"""

from __future__ import annotations

import enum

from orchestrator.adapters.providers.aria.wire import InvoiceHeader

__all__ = ["SkipReason", "rebill_unknown", "unpaid", "verdict"]


class SkipReason(enum.StrEnum):
    VOIDED = "voided"
    REBILL_INVOICE = "rebill_invoice"
    ALREADY_REBILLED = "already_rebilled"
    PAID = "paid"
    NOT_FOUND = "not_found"  # a number of an invoices file that Aria does not know


def unpaid(header: InvoiceHeader) -> bool:
    return header.paid_date is None and header.total_due is not None and header.total_due == header.amount > 0


def rebill_unknown(header: InvoiceHeader) -> bool:
    """Whether the verdict on `header` depends on whether it was rebilled (read the history for it)."""
    return not header.voided and not header.is_rebill and not unpaid(header)


def verdict(header: InvoiceHeader, *, rebilled: bool) -> SkipReason | None:
    """Why the invoice is left alone, or None when it is to be rebilled."""
    if header.voided:
        return SkipReason.VOIDED
    if header.is_rebill:
        return SkipReason.REBILL_INVOICE
    if rebilled:
        return SkipReason.ALREADY_REBILLED
    if not unpaid(header):
        return SkipReason.PAID
    return None
