"""Follow the rebill's BillingLog to the end (5 -> 1 -> 2), one short task per observation.

No worker sleeps: each poll claims the next poll time in the ledger and schedules the next message
with a countdown; duplicates of a poll message find the slot taken and stop.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from orchestrator.domain.billing import BatchStatus, BillingLog
from orchestrator.domain.errors import PermanentProviderError, TransientProviderError
from orchestrator.domain.run import (
    ItemOutcome,
    ItemState,
    PollVerdict,
    ReasonCode,
    Run,
    RunMode,
    RunState,
    judge_poll,
)
from orchestrator.services.context import Context
from orchestrator.services.progress import stop_run

log = logging.getLogger(__name__)

_EARLY_TOLERANCE = timedelta(milliseconds=200)


def poll_run(ctx: Context, run_id: str) -> None:
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state is not RunState.POLLING:
        return
    now = ctx.clock()
    if run.next_poll_at is not None and now + _EARLY_TOLERANCE < run.next_poll_at:
        return  # a duplicate message: the slot belongs to a later one
    interval = timedelta(seconds=run.options.poll_interval_seconds)
    if not ctx.ledger.claim_poll(run_id, expected=run.next_poll_at, next_poll_at=now + interval):
        return
    with ctx.recorder.collect() as calls:
        try:
            verdict = _observe(ctx, run)
        except TransientProviderError as error:
            log.warning("run %s: poll failed transiently (%s); polling again", run_id, error)
            verdict = PollVerdict.KEEP_POLLING
        except PermanentProviderError as error:
            ctx.ledger.record_calls(run_id, calls)
            stop_run(
                ctx,
                run_id,
                was=RunState.POLLING,
                to=RunState.FAILED,
                code=ReasonCode.BILLING_FAILED,
                reason=f"cannot follow the rebill's BillingLog: {error}",
            )
            return
    ctx.ledger.record_calls(run_id, calls)
    if verdict is PollVerdict.KEEP_POLLING:
        ctx.dispatcher.poll(run_id, countdown=min(interval.total_seconds(), ctx.runtime.max_countdown_seconds))


def _observe(ctx: Context, run: Run) -> PollVerdict:
    key = run.progress_log_key or _discover_progress_log(ctx, run)
    if key is None:
        return PollVerdict.KEEP_POLLING
    billing_log = ctx.provider.get_billing_log(key)
    now = ctx.clock()
    changed = ctx.ledger.record_status(
        run.id, billing_log_key=key, status=billing_log.status, at=now, note=billing_log.information
    )
    if billing_log.batch_id and billing_log.batch_id != run.batch_id:
        ctx.ledger.update_run(run.id, now=now, batch_id=billing_log.batch_id)
    since = now if changed else (run.last_status_change_at or run.updated_at)
    verdict = judge_poll(
        billing_log.status,
        post_unposted_batch=run.options.post_unposted_batch,
        batch_already_posted=run.batch_posted,
        seconds_since_change=(now - since).total_seconds(),
        stall_after_seconds=run.options.stall_after_seconds,
    )
    return _act(ctx, run, billing_log, verdict)


def _discover_progress_log(ctx: Context, run: Run) -> str | None:
    """Without a tracking log the server created one: the new log pointing at the original billing."""
    for found in ctx.provider.find_billing_logs(original_key=run.original_key):
        if found.key not in run.known_log_keys:
            ctx.ledger.update_run(run.id, now=ctx.clock(), rebill_log_key=found.key)
            return found.key
    return None


def _act(ctx: Context, run: Run, billing_log: BillingLog, verdict: PollVerdict) -> PollVerdict:
    now = ctx.clock()
    status = billing_log.status
    described = f"BillingLog {billing_log.key} is {status.label} ({int(status)})"
    if verdict is PollVerdict.COMPLETED:
        if run.options.mode is RunMode.NATIVE:
            _verify_native(ctx, run)
        ctx.ledger.transition(run.id, from_states={RunState.POLLING}, to=RunState.COMPLETED, now=now)
        log.info("run %s completed", run.id)
    elif verdict is PollVerdict.POST_BATCH:
        _post_batch(ctx, run, billing_log.batch_id)
        return PollVerdict.KEEP_POLLING
    elif verdict is PollVerdict.NEEDS_ATTENTION:
        stop_run(
            ctx,
            run.id,
            was=RunState.POLLING,
            to=RunState.NEEDS_ATTENTION,
            code=ReasonCode.UNPOSTED_BATCH,
            reason=f"{described}: post batch {billing_log.batch_id} in iMIS (posting was not enabled for this "
            f"run), then `rebill retry {run.id}` to follow it to the end",
        )
    elif verdict is PollVerdict.FAILED:
        detail = f": {billing_log.information}" if billing_log.information else ""
        stop_run(
            ctx,
            run.id,
            was=RunState.POLLING,
            to=RunState.FAILED,
            code=ReasonCode.BILLING_FAILED,
            reason=f"{described}{detail}",
        )
    elif verdict is PollVerdict.STALLED:
        minutes = run.options.stall_after_seconds / 60
        stop_run(
            ctx,
            run.id,
            was=RunState.POLLING,
            to=RunState.STALLED,
            code=ReasonCode.STALLED,
            reason=f"{described} and has not changed for over {minutes:g} min; check iMIS, then "
            f"`rebill retry {run.id}` to resume following it",
        )
    return verdict


def _post_batch(ctx: Context, run: Run, batch_id: str | None) -> None:
    """Post the rebill's batch once: read its status first, so a lost reply never posts it twice."""
    if not batch_id:
        return
    batch = ctx.provider.get_batch(batch_id)
    if batch.status is not BatchStatus.POSTED:
        ctx.provider.post_batch(batch_id)
        log.info("run %s: posted batch %s", run.id, batch_id)
    ctx.ledger.update_run(run.id, now=ctx.clock(), batch_posted=True)


def _verify_native(ctx: Context, run: Run) -> None:
    """The server reversed the invoices itself: read them back and record what it did."""
    planned = {item.invoice.invoice_id: item for item in ctx.ledger.iter_items(run.id, states={ItemState.PENDING})}
    outcomes: list[tuple[int, ItemOutcome]] = []
    for page in ctx.provider.iter_invoice_pages(run.original_key, party_id=run.party_id):
        for invoice in page.invoices:
            item = planned.pop(invoice.invoice_id, None)
            if item is None:
                continue
            if invoice.payment_amount or invoice.pending_payment_amount or invoice.balance > 0:
                outcomes.append((item.id, ItemOutcome(ItemState.SKIPPED, reason="left open by the server-side task")))
            else:
                outcomes.append((item.id, ItemOutcome(ItemState.REVERSED, settled_by_read=True)))
    for item in planned.values():
        outcomes.append((item.id, ItemOutcome(ItemState.SKIPPED, reason="no longer listed in the billing")))
    ctx.ledger.set_item_outcomes(run.id, outcomes, now=ctx.clock())
