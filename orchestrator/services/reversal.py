"""Reverse the invoices of one chunk, each exactly once.

An item is claimed with a lease before anything is sent. An item claimed before (a crash, a
timeout, a redelivered message, a retry) may already be reversed: it is settled by reading the
invoice first, and a reversal is only sent when the invoice is still open with no payments.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from orchestrator.domain.billing import Invoice, Reversal, SkipReason
from orchestrator.domain.errors import PermanentProviderError, TransientProviderError
from orchestrator.domain.run import Item, ItemOutcome, ItemState, Run, RunState, retry_delay
from orchestrator.services import logcontext
from orchestrator.services.context import Context
from orchestrator.services.ports import FinishedItem
from orchestrator.services.progress import advance, dispatch_ready_chunks

log = logging.getLogger(__name__)


def process_chunk(ctx: Context, run_id: str, chunk_id: int) -> None:
    started = ctx.clock()
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state not in (RunState.PLANNING, RunState.REVERSING):
        return
    deliveries = ctx.ledger.record_delivery(chunk_id)
    if deliveries > ctx.runtime.max_deliveries:
        failed = ctx.ledger.fail_open_items(
            chunk_id,
            reason=f"chunk delivered {deliveries} times without finishing (a worker died each time)",
            now=ctx.clock(),
        )
        log.error(
            "chunk %s of run %s gave up after %s deliveries (%s items failed)",
            chunk_id,
            run_id,
            deliveries,
            failed,
        )
    else:
        _work_through(ctx, run, chunk_id)
        ctx.ledger.finish_delivery(chunk_id)
    _after_chunk(ctx, run_id, chunk_id)
    _help_with_the_tail(ctx, run, until=started + timedelta(seconds=ctx.runtime.max_countdown_seconds))


def _help_with_the_tail(ctx: Context, run: Run, *, until: datetime) -> None:
    """Once nothing of the run waits in the broker, claim items of chunks other workers are in.

    Each chunk is worked one item after another, so without this a run's last chunks would keep one
    thread each while the other threads and the tenant's slots sat idle. Claims are per item, so a
    helper never works an item another worker holds; the chunk's own task still settles the chunk.
    No new chunk is taken up after `until` (half the broker's visibility timeout after the task
    began), so the task's own message is acknowledged before the broker would deliver it again.
    """
    while ctx.clock() < until and (chunk_id := ctx.ledger.chunk_to_help(run.id, now=ctx.clock())) is not None:
        if not _work_through(ctx, run, chunk_id):
            return
        ctx.ledger.chunk_progress(chunk_id, now=ctx.clock())
        advance(ctx, run.id)


def _work_through(ctx: Context, run: Run, chunk_id: int) -> int:
    """Claim the chunk's items a batch at a time; each batch's outcomes are written, and the next
    batch claimed, in one transaction.

    Outcomes are written after the batch, so a worker killed mid-batch leaves items it may have
    reversed as IN_FLIGHT: their next claim settles them by reading the invoice, as for any crash.
    Returns how many items were worked.
    """
    owner = f"{chunk_id}:{uuid.uuid4().hex}"
    batch = ctx.runtime.claim_batch_size
    now = ctx.clock()
    lease_until = now + ctx.runtime.lease
    items = ctx.ledger.claim_items(chunk_id, owner=owner, now=now, lease_until=lease_until, limit=batch)
    worked = 0
    while items:
        finished: list[FinishedItem] = []
        try:
            for item in items:
                with (
                    logcontext.bound(item_id=item.id, invoice_id=item.invoice.invoice_id),
                    ctx.recorder.collect() as calls,
                ):
                    outcome = reverse_item(ctx, run, item, owner=owner, lease_until=lease_until)
                finished.append(FinishedItem(item, outcome, calls))
        except BaseException:
            ctx.ledger.finish_items(finished, owner=owner, now=ctx.clock())
            raise
        worked += len(finished)
        now = ctx.clock()
        lease_until = now + ctx.runtime.lease
        items = ctx.ledger.finish_and_claim(
            finished, owner=owner, now=now, chunk_id=chunk_id, lease_until=lease_until, limit=batch
        )
    return worked


def _after_chunk(ctx: Context, run_id: str, chunk_id: int) -> None:
    now = ctx.clock()
    progress = ctx.ledger.chunk_progress(chunk_id, now=now)
    if not progress.done and progress.wake_at is not None:
        wake_at = max(progress.wake_at, now)
        if ctx.ledger.requeue_chunk(chunk_id, at=wake_at, now=now):
            ctx.dispatcher.reverse_chunk(run_id, chunk_id, countdown=ctx.countdown_until(wake_at))
    dispatch_ready_chunks(ctx, run_id)
    advance(ctx, run_id)


def reverse_item(ctx: Context, run: Run, item: Item, *, owner: str, lease_until: datetime) -> ItemOutcome:
    """Decide and do what one claimed item needs; never raises for provider errors."""
    if item.attempts > run.options.max_attempts:
        return ItemOutcome(
            ItemState.FAILED,
            reason=f"abandoned {item.attempts - 1} times (worker lost mid-reversal); "
            "`rebill retry` settles it by reading the invoice",
        )
    with ctx.provider.one_invoice_at_a_time():
        return _reverse(ctx, run, item, owner=owner, lease_until=lease_until)


def _reverse(ctx: Context, run: Run, item: Item, *, owner: str, lease_until: datetime) -> ItemOutcome:
    options = run.options
    invoice = item.invoice
    try:
        if item.claimed_before:
            settled = _settle_by_reading(ctx.provider.get_invoice(invoice.invoice_id))
            if settled is not None:
                return settled
        if not ctx.provider.can_reverse(invoice):
            return _why_not_reversible(ctx.provider.get_invoice(invoice.invoice_id), item)
        if not _claim_outlives_the_write(ctx, item, owner=owner, lease_until=lease_until):
            return ItemOutcome(ItemState.IN_FLIGHT, reason="claim lost before the reversal was sent")
        ctx.provider.reverse(
            Reversal(
                invoice_id=invoice.invoice_id,
                invoice_number=invoice.number,
                accounting_method=invoice.accounting_method,
                adjustment_date=options.adjustment_date or ctx.clock().date(),
                reason=options.adjustment_reason,
                do_not_cancel_membership=options.do_not_cancel_membership,
            )
        )
        return ItemOutcome(ItemState.REVERSED)
    except TransientProviderError as error:
        if item.attempts >= options.max_attempts:
            return ItemOutcome(
                ItemState.FAILED,
                reason=f"gave up after {item.attempts} attempts: {error.message}",
                error=repr(error),
            )
        delay = retry_delay(
            item.attempts,
            base=options.retry_backoff_seconds,
            cap=options.retry_backoff_max_seconds,
            retry_after=error.retry_after,
        )
        return ItemOutcome(ItemState.RETRY_WAIT, error=repr(error), next_attempt_at=ctx.clock() + _seconds(delay))
    except PermanentProviderError as error:
        return ItemOutcome(ItemState.FAILED, reason=error.message, error=repr(error))


def _claim_outlives_the_write(ctx: Context, item: Item, *, owner: str, lease_until: datetime) -> bool:
    """The fence before the one call that must never be sent twice.

    Nobody may claim the item before our lease ends, so while the lease outlives the longest write
    call the claim is ours without asking; otherwise it is renewed in the ledger, which fails if
    another worker took the item over after our lease ran out.
    """
    now = ctx.clock()
    if lease_until - now > timedelta(seconds=ctx.runtime.write_budget_seconds):
        return True
    return ctx.ledger.renew_lease(item.id, owner=owner, lease_until=now + ctx.runtime.lease)


def _settle_by_reading(current: Invoice) -> ItemOutcome | None:
    """After an unknown outcome: what the invoice says now, or None when it is still to reverse."""
    if current.payment_amount or current.pending_payment_amount:
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.PAID_SINCE_PLANNING.value, settled_by_read=True)
    if current.balance <= 0:
        return ItemOutcome(
            ItemState.REVERSED,
            reason="confirmed reversed by reading the invoice after an unknown outcome",
            settled_by_read=True,
        )
    return None


def _why_not_reversible(current: Invoice, item: Item) -> ItemOutcome:
    if current.payment_amount or current.pending_payment_amount:
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.PAID_SINCE_PLANNING.value)
    if current.balance <= 0:
        if item.claimed_before:
            return ItemOutcome(
                ItemState.REVERSED,
                reason="confirmed reversed by reading the invoice after an unknown outcome",
                settled_by_read=True,
            )
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.REVERSED_OUTSIDE_RUN.value)
    return ItemOutcome(
        ItemState.FAILED,
        reason="the platform says it cannot be reversed although it is open with no payments",
    )


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
