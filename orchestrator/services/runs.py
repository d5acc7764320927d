"""Operator actions on a run: cancel, retry, and the read side (status, report)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.domain.errors import RunRefused
from orchestrator.domain.run import (
    ACTIVE_RUN_STATES,
    Item,
    ItemState,
    ReasonCode,
    RebillPhase,
    Run,
    RunState,
)
from orchestrator.services.context import Context
from orchestrator.services.progress import advance, dispatch_ready_chunks
from orchestrator.services.rebill import sign_of_rebill
from orchestrator.services.reconciler import reconcile_run


def find_run(ctx: Context, run_id: str) -> Run:
    resolved = ctx.ledger.resolve_run_id(run_id.strip())
    run = ctx.ledger.get_run(resolved) if resolved else None
    if run is None:
        raise RunRefused(f"no run {run_id!r} in this ledger (see `rebill runs`)")
    return run


def cancel_run(ctx: Context, run_id: str) -> str:
    run = find_run(ctx, run_id)
    if run.state.is_closed:
        return f"run {run.id} is already {run.state.value}; nothing to cancel"
    if run.rebill_phase is not RebillPhase.NOT_SENT:
        raise RunRefused(
            f"run {run.id} already sent its rebill to {run.provider}; it can no longer be cancelled "
            "and keeps following the rebill's BillingLog"
        )
    cancellable = ACTIVE_RUN_STATES | {RunState.NEEDS_ATTENTION, RunState.STALLED, RunState.FAILED}
    if not ctx.ledger.transition(
        run.id,
        from_states=cancellable,
        to=RunState.CANCELLED,
        now=ctx.clock(),
        reason_code=ReasonCode.CANCELLED,
        reason="cancelled by an operator; invoices already reversed stay reversed",
        release_guard=True,
    ):
        return cancel_run(ctx, run.id)  # it moved meanwhile: look again
    return (
        f"run {run.id} cancelled: no more invoices will be dispatched; reversals already in flight "
        "finish and are recorded"
    )


@dataclass(frozen=True, slots=True)
class RetryResult:
    message: str
    resumed: bool


def retry_run(ctx: Context, run_id: str) -> RetryResult:
    """Resume a run from where it stopped, touching nothing that already succeeded."""
    run = find_run(ctx, run_id)
    now = ctx.clock()
    if run.state is RunState.COMPLETED:
        return RetryResult(f"run {run.id} is COMPLETED; a completed run is never re-run", False)
    if run.state.is_closed:
        return RetryResult(f"run {run.id} is {run.state.value}; start a new run instead", False)
    if run.state in ACTIVE_RUN_STATES:
        done = reconcile_run(ctx, run)
        return RetryResult(
            f"run {run.id} is still {run.state.value}; re-sent what looked lost "
            f"({done.chunks} chunk(s), {done.plans + done.rebills + done.polls} step(s))",
            True,
        )
    code = run.reason_code
    if code is ReasonCode.FAILED_ITEMS:
        reset = ctx.ledger.reset_failed_items(run.id, now=now)
        ctx.ledger.transition(run.id, from_states={run.state}, to=RunState.REVERSING, now=now)
        chunks = dispatch_ready_chunks(ctx, run.id)
        advance(ctx, run.id)
        return RetryResult(f"run {run.id}: re-dispatched {chunks} chunk(s) holding {reset} failed invoice(s)", True)
    if code in (ReasonCode.UNPOSTED_BATCH, ReasonCode.STALLED):
        ctx.ledger.transition(
            run.id,
            from_states={run.state},
            to=RunState.POLLING,
            now=now,
            next_poll_at=None,
            last_status_change_at=now,
        )
        ctx.dispatcher.poll(run.id)
        return RetryResult(f"run {run.id}: following its BillingLog again", True)
    if code is ReasonCode.REBILL_OUTCOME_UNKNOWN:
        if sign_of_rebill(ctx, run) is not None:
            ctx.ledger.transition(run.id, from_states={run.state}, to=RunState.REBILLING, now=now)
            ctx.dispatcher.rebill(run.id)
            return RetryResult(f"run {run.id}: the rebill did reach {run.provider}; following it", True)
        return _resend_rebill(ctx, run, "its BillingLog still shows no sign of the first one")
    if code is ReasonCode.REBILL_REFUSED:
        return _resend_rebill(ctx, run, "it was refused before")
    if code is ReasonCode.PLANNING_FAILED:
        ctx.ledger.transition(run.id, from_states={run.state}, to=RunState.PLANNING, now=now)
        ctx.dispatcher.plan(run.id)
        return RetryResult(f"run {run.id}: planning resumes where it stopped", True)
    if code is ReasonCode.BILLING_FAILED:
        raise RunRefused(
            f"run {run.id}: {run.reason}. The rebill itself failed in {run.provider}; "
            "check it there: sending it again could bill members twice"
        )
    return RetryResult(f"run {run.id} is {run.state.value} ({run.reason}); nothing to retry", False)


def _resend_rebill(ctx: Context, run: Run, why: str) -> RetryResult:
    ctx.ledger.transition(
        run.id,
        from_states={run.state},
        to=RunState.REBILLING,
        now=ctx.clock(),
        rebill_phase=RebillPhase.NOT_SENT,
    )
    ctx.dispatcher.rebill(run.id)
    return RetryResult(f"run {run.id}: sending the rebill again ({why})", True)


def run_summary(ctx: Context, run: Run) -> dict[str, Any]:
    counts = ctx.ledger.item_counts(run.id)
    events = ctx.ledger.status_events(run.id)
    calls = ctx.ledger.call_counts(run.id)
    return {
        "run_id": run.id,
        "state": run.state.value,
        "reason_code": run.reason_code.value if run.reason_code else None,
        "reason": run.reason,
        "provider": run.provider,
        "billing_log_key": run.original_key,
        "billing_cycle": run.original.cycle_name,
        "party_id": run.party_id,
        "mode": run.options.mode.value,
        "dry_run": run.options.dry_run,
        "planned": run.planned,
        "invoices": run.invoice_count,
        "items": {state.value: counts.get(state, 0) for state in ItemState},
        "tracking_log_key": run.tracking_log_key,
        "rebill_log_key": run.progress_log_key,
        "rebill_phase": run.rebill_phase.value,
        "batch_id": run.batch_id,
        "batch_posted": run.batch_posted,
        "billing_log_status_history": [
            {
                "billing_log_key": event.billing_log_key,
                "status": int(event.status),
                "label": event.status.label,
                "at": event.observed_at.isoformat(),
            }
            for event in events
        ],
        "api_calls": [
            {"operation": operation, "outcome": outcome, "count": count}
            for (operation, outcome), count in sorted(calls.items())
        ],
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


REPORT_FIELDS = (
    "invoice_id",
    "party_id",
    "party_name",
    "amount",
    "outcome",
    "reason",
    "attempts",
    "last_error",
)


def report_rows(ctx: Context, run: Run) -> Iterator[dict[str, Any]]:
    """One row per invoice of the run, streamed."""
    for item in ctx.ledger.iter_items(run.id):
        yield _report_row(item)


def _report_row(item: Item) -> dict[str, Any]:
    invoice = item.invoice
    return {
        "invoice_id": invoice.invoice_id,
        "party_id": invoice.party_id,
        "party_name": invoice.party_name,
        "amount": invoice.amount,
        "outcome": item.state.value,
        "reason": item.reason,
        "attempts": item.attempts,
        "last_error": item.last_error,
    }


def money(value: Decimal) -> str:
    return f"{value:.2f}"
