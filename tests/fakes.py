"""Fakes of the ports for service tests: state in memory, behaviour scripted, assertions on state."""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrator.domain.billing import (
    AccountingMethod,
    Batch,
    BatchStatus,
    BillingLog,
    BillingLogStatus,
    Invoice,
    InvoicePage,
    Rebill,
    Reversal,
    ServerSideReversal,
)
from orchestrator.domain.errors import ProviderError, ProviderNotFound, ProviderRefused
from orchestrator.services import planning, poller, rebill, reversal
from orchestrator.services.context import Context

ORIGINAL_KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeProvider:
    """A tenant in memory. `faults[(operation, invoice_id)]` is a list of errors raised in turn."""

    name: str = "imis"
    logs: dict[str, BillingLog] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    reversals: Counter[str] = field(default_factory=Counter)
    submitted: list[tuple[Rebill | None, ServerSideReversal | None]] = field(default_factory=list)
    posted_batches: list[str] = field(default_factory=list)
    batches: dict[str, BatchStatus] = field(default_factory=dict)
    faults: dict[tuple[str, str], list[ProviderError]] = field(default_factory=lambda: defaultdict(list))
    calls: Counter[str] = field(default_factory=Counter)
    page_size: int = 7
    walks: dict[str, list[BillingLogStatus]] = field(default_factory=dict)
    on_submit: Callable[[FakeProvider], None] | None = None

    def fail(self, operation: str, key: str, *errors: ProviderError) -> None:
        self.faults[(operation, key)].extend(errors)

    def _enter(self, operation: str, key: str = "") -> None:
        self.calls[operation] += 1
        queued = self.faults.get((operation, key))
        if queued:
            raise queued.pop(0)

    # --- seeding ---
    def seed(self, *, open_count: int = 20, paid: int = 3, part_paid: int = 2) -> BillingLog:
        original = BillingLog(
            key=ORIGINAL_KEY,
            cycle_name="Regular Membership Fees",
            status=BillingLogStatus.COMPLETED,
            effective_date=datetime(2025, 9, 1, tzinfo=UTC),
        )
        self.logs[original.key] = original
        number = 1000
        for kind, count in (("open", open_count), ("paid", paid), ("part", part_paid)):
            for _ in range(count):
                number += 1
                amount = Decimal("95.00")
                payment = {"open": Decimal("0"), "paid": amount, "part": Decimal("20.00")}[kind]
                self.invoices[str(number)] = Invoice(
                    invoice_id=str(number),
                    accounting_method=AccountingMethod.CASH,
                    amount=amount,
                    balance=amount - payment,
                    payment_amount=payment,
                    number=number,
                    party_id=f"P{number}",
                    billing_log_key=original.key,
                )
        return original

    # --- the port ---
    def get_billing_log(self, key: str) -> BillingLog:
        self._enter("BillingLog.get", key)
        if key not in self.logs:
            raise ProviderNotFound(f"no BillingLog {key}", operation="BillingLog.get", status_code=404)
        if self.walks.get(key):
            self.set_status(key, self.walks[key].pop(0), batch_id=self.logs[key].batch_id)
        return self.logs[key]

    def find_billing_logs(self, *, original_key: str) -> list[BillingLog]:
        self._enter("BillingLog.list", original_key)
        return [log for log in self.logs.values() if log.original_key == original_key]

    def create_tracking_log(self, original: BillingLog, *, key: str, run_name: str) -> BillingLog:
        self._enter("BillingLog.create", key)
        if key in self.logs:
            raise ProviderRefused("exists", operation="BillingLog.create", status_code=409)
        created = dataclasses.replace(
            original, key=key, run_name=run_name, status=BillingLogStatus.REVERSING, original_key=original.key
        )
        self.logs[key] = created
        return created

    def iter_invoice_pages(
        self, billing_key: str, *, party_id: str | None = None, start_offset: int = 0
    ) -> Iterator[InvoicePage]:
        chosen = [
            i
            for i in self.invoices.values()
            if i.billing_log_key == billing_key and (party_id is None or i.party_id == party_id)
        ]
        offset = start_offset
        while offset < len(chosen):
            self._enter("InvoiceSummary.list", str(offset))
            page = tuple(chosen[offset : offset + self.page_size])
            following = offset + len(page)
            yield InvoicePage(page, offset, following if following < len(chosen) else None, len(chosen))
            offset = following

    def get_invoice(self, invoice_id: str) -> Invoice:
        self._enter("InvoiceSummary.get", invoice_id)
        return self.invoices[invoice_id]

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def can_reverse(self, invoice: Invoice) -> bool:
        self._enter("Invoice.CanCashInvoiceBeReversed", invoice.invoice_id)
        return self.invoices[invoice.invoice_id].skip_reason() is None

    def reverse(self, reversal_: Reversal) -> None:
        self._enter("Invoice.ProcessCashReversal", reversal_.invoice_id)
        current = self.invoices[reversal_.invoice_id]
        if current.skip_reason() is not None:
            raise ProviderRefused("cannot be reversed", operation="Invoice.ProcessCashReversal", status_code=200)
        self.reversals[reversal_.invoice_id] += 1
        self.invoices[reversal_.invoice_id] = dataclasses.replace(current, balance=Decimal("0"))

    def applied_then_lost(self, operation: str, invoice_id: str, error: ProviderError) -> None:
        """The next `operation` on the invoice takes effect, then raises `error` (the reply was lost)."""
        original = getattr(self, {"Invoice.ProcessCashReversal": "reverse"}[operation])

        def lossy(reversal_: Reversal) -> None:
            original(reversal_)
            if reversal_.invoice_id == invoice_id and not getattr(lossy, "fired", False):
                lossy.fired = True  # type: ignore[attr-defined]
                raise error

        self.reverse = lossy  # type: ignore[method-assign]

    def submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> str:
        self._enter("TaskDefinition.execute", "")
        self.submitted.append((rebill, reversal))
        if self.on_submit:
            self.on_submit(self)
        return f"task-{len(self.submitted)}"

    def preview_submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> dict[str, Any]:
        return {"rebill": rebill is not None, "reversal": reversal is not None}

    def post_batch(self, batch_id: str) -> None:
        self._enter("BatchSummary.Post", batch_id)
        self.posted_batches.append(batch_id)
        self.batches[batch_id] = BatchStatus.POSTED

    def get_batch(self, batch_id: str) -> Batch:
        self._enter("BatchSummary.get", batch_id)
        return Batch(batch_id, self.batches.get(batch_id, BatchStatus.READY))

    # --- test helpers ---
    def set_status(self, key: str, status: BillingLogStatus, *, batch_id: str | None = None) -> None:
        self.logs[key] = dataclasses.replace(self.logs[key], status=status, batch_id=batch_id)

    def walk(self, key: str, *statuses: BillingLogStatus) -> None:
        """Each following read of the log shows the next status (the last one stays)."""
        self.walks[key] = list(statuses)

    def pay(self, invoice_id: str, amount: Decimal) -> None:
        current = self.invoices[invoice_id]
        self.invoices[invoice_id] = dataclasses.replace(
            current, balance=current.balance - amount, payment_amount=current.payment_amount + amount
        )


@dataclass
class FakeDispatcher:
    """Records messages; `deliver` runs them through the services as a worker would."""

    sent: list[tuple[str, tuple[Any, ...], float]] = field(default_factory=list)
    copies: int = 1  # >1: every message is delivered that many times, as an at-least-once broker may

    def _queue(self, name: str, args: tuple[Any, ...], countdown: float) -> None:
        self.sent.extend([(name, args, countdown)] * self.copies)

    def plan(self, run_id: str) -> None:
        self._queue("plan", (run_id,), 0)

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None:
        self._queue("reverse_chunk", (run_id, chunk_id), countdown)

    def rebill(self, run_id: str, *, countdown: float = 0) -> None:
        self._queue("rebill", (run_id,), countdown)

    def poll(self, run_id: str, *, countdown: float = 0) -> None:
        self._queue("poll", (run_id,), countdown)

    def deliver(self, ctx: Context, *, clock: FakeClock | None = None, limit: int = 10_000) -> int:
        """Run every message (and those they send) in order; countdowns advance the fake clock."""
        handlers: dict[str, Callable[..., None]] = {
            "plan": lambda run_id: planning.plan_run(ctx, run_id),
            "reverse_chunk": lambda run_id, chunk_id: reversal.process_chunk(ctx, run_id, chunk_id),
            "rebill": lambda run_id: rebill.send_rebill(ctx, run_id),
            "poll": lambda run_id: poller.poll_run(ctx, run_id),
        }
        delivered = 0
        while self.sent and delivered < limit:
            self.sent.sort(key=lambda message: message[2])
            name, args, countdown = self.sent.pop(0)
            if clock is not None and countdown:
                clock.advance(countdown)
                self.sent = [(n, a, max(0.0, c - countdown)) for n, a, c in self.sent]
            handlers[name](*args)
            delivered += 1
        return delivered

    def count(self, name: str) -> int:
        return sum(1 for sent in self.sent if sent[0] == name)
