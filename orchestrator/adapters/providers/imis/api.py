"""iMIS in its own types over the client: seed-page envelopes out, wire replies mapped to `model`.

The mapping functions (`to_billing_log`, `to_invoice`, `to_batch`) are pure; `ImisApi` holds no
state of its own besides the shared, thread-safe `ImisClient`. The port (`provider.py`) drives runs
through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from orchestrator.adapters.providers.imis import envelopes
from orchestrator.adapters.providers.imis.client import ImisClient, next_page_offset
from orchestrator.adapters.providers.imis.errors import protocol_error
from orchestrator.adapters.providers.imis.model import (
    AccountingMethod,
    Batch,
    BillingLog,
    BillingLogStatus,
    ImisInvoice,
    InvoicePage,
    Rebill,
    Reversal,
    ServerSideReversal,
)
from orchestrator.adapters.providers.imis.wire import (
    BatchSummaryData,
    BillingLogData,
    InvoiceSummaryData,
    parse_batch_status,
)
from orchestrator.domain.errors import RunRefused

__all__ = ["ImisApi", "to_batch", "to_billing_log", "to_invoice"]


def to_billing_log(data: BillingLogData) -> BillingLog:
    return BillingLog(
        key=data.BillingLogKey,
        cycle_name=data.BillingCycleName or "",
        status=data.Status,
        run_name=data.BillingRunName,
        billing_type=data.BillingType,
        billing_date=data.BillingDate,
        effective_date=data.EffectiveDate,
        accounting_method=data.AccountingMethod,
        party_id=data.BillingPartyId,
        auto_pay_option=data.AutoPayOption,
        original_key=data.OriginalBillingLogKey,
        batch_id=data.BatchId,
        information=data.Information,
    )


def to_invoice(data: InvoiceSummaryData) -> ImisInvoice:
    party = data.BillToParty or data.SoldToParty
    return ImisInvoice(
        invoice_id=data.InvoiceId,
        accounting_method=data.AccountingMethod,
        amount=data.InvoiceAmount.value,
        balance=data.Balance.value,
        payment_amount=data.PaymentAmount.value,
        pending_payment_amount=data.PendingPaymentAmount.value,
        number=data.InvoiceNumber,
        party_id=party.party_id if party is not None else None,
        party_name=party.Name if party is not None else None,
        billing_log_key=data.BillingLogKey,
    )


def to_batch(data: BatchSummaryData) -> Batch:
    return Batch(
        batch_id=data.BatchId,
        status=parse_batch_status(data.BatchStatus),
        transaction_count=data.TransactionCount,
        posting_error=data.PostingError,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ImisApi:
    """One iMIS tenant in iMIS's own types. Thread-safe; raises `ProviderError` subclasses, and
    `RunRefused` when a billing log lacks what a rebill needs."""

    def __init__(self, client: ImisClient, *, page_size: int = 500, now: Callable[[], datetime] = _utc_now) -> None:
        self._client = client
        self._page_size = page_size
        self._now = now

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    # --- billing logs --------------------------------------------------------------------------------------

    def get_billing_log(self, key: str) -> BillingLog:
        return to_billing_log(self._client.get_billing_log(key))

    def find_billing_logs(self, *, original_key: str) -> list[BillingLog]:
        return [to_billing_log(log) for log in self._client.iter_billing_logs(original_key=original_key)]

    def billing_logs_of_cycle(self, cycle_name: str) -> list[BillingLog]:
        return [to_billing_log(log) for log in self._client.iter_billing_logs(cycle_name=cycle_name)]

    def create_tracking_log(self, original: BillingLog, *, key: str, run_name: str) -> BillingLog:
        """POST a 'Reversing invoices' (5) log that points at `original` and copies its billing options."""
        body = envelopes.billing_log_body(
            key=key,
            run_name=run_name,
            cycle_name=original.cycle_name,
            billing_type=original.billing_type,
            billing_date=self._now(),
            effective_date=original.effective_date,
            status=BillingLogStatus.REVERSING,
            accounting_method=original.accounting_method,
            auto_pay_option=original.auto_pay_option,
            original_key=original.key,
        )
        return to_billing_log(self._client.create_billing_log(body))

    # --- invoices ------------------------------------------------------------------------------------------

    def iter_invoice_pages(
        self, billing_key: str, *, party_id: str | None = None, start_offset: int = 0
    ) -> Iterator[InvoicePage]:
        offset = start_offset
        for page in self._client.iter_invoice_pages(
            billing_log_key=billing_key,
            bill_to_party_id=party_id,
            page_size=self._page_size,
            start_offset=start_offset,
        ):
            next_offset = next_page_offset(page, offset, "InvoiceSummary.list")
            yield InvoicePage(
                invoices=tuple(to_invoice(item) for item in page.Items),
                offset=offset,
                next_offset=next_offset,
                total_count=page.TotalCount,
            )
            if next_offset is None:
                return
            offset = next_offset

    def has_invoices(self, billing_key: str, *, party_id: str) -> bool:
        """Whether the billing holds any invoice billed to `party_id` (one page of one invoice)."""
        pages = self._client.iter_invoice_pages(billing_log_key=billing_key, bill_to_party_id=party_id, page_size=1)
        for page in pages:
            return bool(page.Items)
        return False

    def get_invoice(self, invoice_id: str) -> ImisInvoice:
        return to_invoice(self._client.get_invoice(invoice_id))

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return self._client.one_slot()

    def can_reverse(self, invoice: ImisInvoice) -> bool:
        """Cash: CanCashInvoiceBeReversed by id. Accrual: CanInvoiceBeReversed by InvoiceNumber (read
        from iMIS when the invoice at hand lacks it)."""
        if invoice.accounting_method is AccountingMethod.CASH:
            return self._client.can_cash_invoice_be_reversed(invoice.invoice_id)
        number = invoice.number
        if number is None:
            number = self._client.get_invoice(invoice.invoice_id).InvoiceNumber
        if number is None:
            raise protocol_error(
                "Invoice.CanInvoiceBeReversed",
                mutating=False,
                what=f"accrual invoice {invoice.invoice_id} has no InvoiceNumber to ask about",
            )
        return self._client.can_invoice_be_reversed(number)

    def reverse(self, reversal: Reversal) -> None:
        """ProcessCashReversal or ProcessAccrualReversal, by accounting method."""
        if reversal.accounting_method is AccountingMethod.CASH:
            self._client.process_cash_reversal(
                reversal.invoice_id,
                adjustment_date=reversal.adjustment_date,
                reason=reversal.reason or None,
                do_not_cancel_membership=reversal.do_not_cancel_membership,
            )
        else:
            self._client.process_accrual_reversal(
                reversal.invoice_id,
                adjustment_date=reversal.adjustment_date,
                reason=reversal.reason or None,
                do_not_cancel_membership=reversal.do_not_cancel_membership,
            )

    # --- server-side task, batches -------------------------------------------------------------------------

    def submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> str:
        """One TaskAdhocRequest: the reverse action, the bill-generation action, or both; the TaskLogId."""
        return self.submit_body(self.preview_submit(rebill=rebill, reversal=reversal))

    def submit_body(self, body: dict[str, Any]) -> str:
        """A TaskAdhocRequest built before (by `preview_submit`, kept with the run's step); the TaskLogId."""
        return self._client.execute_task(body)

    def preview_submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> dict[str, Any]:
        """The TaskAdhocRequest body `submit` would POST, for dry runs; calls nothing."""
        if rebill is None and reversal is None:
            raise ValueError("submit needs a rebill, a server-side reversal, or both")
        reverse_action = _reverse_action(reversal) if reversal is not None else None
        bill_action = _bill_action(rebill) if rebill is not None else None
        return envelopes.task_adhoc_request(reverse=reverse_action, bill=bill_action)

    def post_batch(self, batch_id: str) -> None:
        self._client.post_batch(batch_id)

    def get_batch(self, batch_id: str) -> Batch:
        return to_batch(self._client.get_batch(batch_id))

    def describe_tenant(self) -> str:
        """Sign in and read one page of billing logs: proof the settings work."""
        first = next(iter(self._client.iter_billing_logs(page_size=1)), None)
        seen = f"latest billing log {first.BillingLogKey}" if first is not None else "no billing log yet"
        return f"signed in as {self._client.username} at {self._client.base_url}; {seen}"


def _reverse_action(reversal: ServerSideReversal) -> dict[str, Any]:
    if reversal.invoices and reversal.billing_key is not None:
        raise ValueError("a server-side reversal names a billing or a list of invoices, not both")
    if reversal.invoices:
        return envelopes.reverse_invoice_action(
            invoices=[
                envelopes.dues_reversal_data(
                    invoice_id=item.invoice_id,
                    adjustment_date=item.adjustment_date,
                    reason=item.reason or None,
                    do_not_cancel_membership=item.do_not_cancel_membership,
                )
                for item in reversal.invoices
            ]
        )
    if reversal.billing_key is None:
        raise ValueError("a server-side reversal needs a billing_key or invoices")
    return envelopes.reverse_invoice_action(original_billing_log_key=reversal.billing_key)


def _bill_action(rebill: Rebill) -> dict[str, Any]:
    original = rebill.original
    if original.effective_date is None:
        raise RunRefused(
            f"billing log {original.key} has no EffectiveDate; iMIS needs it to rebill the cycle "
            f"{original.cycle_name!r}"
        )
    if not original.cycle_name:
        raise RunRefused(f"billing log {original.key} has no BillingCycleName; iMIS needs it to rebill")
    return envelopes.bill_generation_action(
        cycle_name=original.cycle_name,
        effective_date=original.effective_date,
        run_name=rebill.run_name,
        billing_log_key=rebill.tracking_log_key,
        auto_pay_option=original.auto_pay_option,
        original_billing_log_key=original.key,
        individual_party_id=rebill.party_id,
        automatically_post_batch=rebill.auto_post_batch,
    )
