"""The ports the services need; adapters implement them, tests use fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from orchestrator.domain.billing import (
    ApiCall,
    Batch,
    BillingLog,
    Invoice,
    InvoicePage,
    Rebill,
    Reversal,
    ServerSideReversal,
)

CallObserver = Callable[[ApiCall], None]


class BillingProvider(Protocol):
    """One billing platform tenant. Every method raises `ProviderError` subclasses only.

    Implementations are thread-safe: one instance serves every worker thread of a process.
    """

    name: str

    def get_billing_log(self, key: str) -> BillingLog:
        """Raises ProviderNotFound when the platform does not know the key."""
        ...

    def find_billing_logs(self, *, original_key: str) -> list[BillingLog]:
        """Every billing log whose OriginalBillingLogKey is `original_key`."""
        ...

    def create_tracking_log(self, original: BillingLog, *, key: str, run_name: str) -> BillingLog:
        """Record a 'Reversing invoices' (5) billing log pointing at `original`, under our own `key`."""
        ...

    def iter_invoice_pages(
        self, billing_key: str, *, party_id: str | None = None, start_offset: int = 0
    ) -> Iterator[InvoicePage]:
        """Stream a billing's invoices page by page, from `start_offset`, never all at once."""
        ...

    def get_invoice(self, invoice_id: str) -> Invoice: ...

    def can_reverse(self, invoice: Invoice) -> bool:
        """Ask the platform (CanCashInvoiceBeReversed / CanInvoiceBeReversed)."""
        ...

    def reverse(self, reversal: Reversal) -> None:
        """Reverse one invoice. Not idempotent on the platform: settle unknown outcomes by reading."""
        ...

    def submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> str:
        """Start a server-side task (rebill, reversal, or both); returns the platform's task id."""
        ...

    def post_batch(self, batch_id: str) -> None: ...

    def get_batch(self, batch_id: str) -> Batch: ...


class ProviderFactory(Protocol):
    def __call__(self, observer: CallObserver | None = None) -> BillingProvider: ...
