"""Operator actions on a run: cancel and retry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestrator.domain.errors import RunRefused
from orchestrator.domain.run import ACTIVE_RUN_STATES, ReasonCode, Run, RunState, StepPhase
from orchestrator.domain.user_input import quoted
from orchestrator.services.context import Context
from orchestrator.services.ports import Settlement
from orchestrator.services.reconciler import reconcile_run
from orchestrator.services.transitions import advance, dispatch_ready_chunks


def find_run(ctx: Context, run_id: str) -> Run:
    resolved = ctx.ledger.resolve_run_id(run_id.strip())
    run = ctx.ledger.get_run(resolved) if resolved else None
    if run is None:
        raise RunRefused(f"no run {quoted(run_id)} in this ledger (see `rebill runs`)")
    return run


def cancel_run(ctx: Context, run_id: str) -> str:
    run = find_run(ctx, run_id)
    if run.state.is_closed:
        return f"run {run.id} is already {run.state.value}; nothing to cancel"
    sent = [step.key for step in ctx.ledger.steps(run.id) if step.phase is not StepPhase.RELEASED]
    if sent:
        raise RunRefused(
            f"run {run.id} already sent {', '.join(sent)} to {run.provider}; it can no longer be cancelled "
            "and keeps following the platform"
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
        f"run {run.id} cancelled: no more invoices will be dispatched; actions already in flight "
        "finish and are recorded"
    )


@dataclass(frozen=True, slots=True)
class RetryResult:
    message: str
    resumed: bool


def retry_run(ctx: Context, run_id: str, *, asked: Mapping[str, Any] | None = None) -> RetryResult:
    """Resume a run from where it stopped, touching nothing that already succeeded.

    `asked` is what the operator asks the provider for on this retry (EnergyCAP: re-import the kicked
    out bills); it is kept in the provider's state, where its follow-up reads it.
    """
    run = find_run(ctx, run_id)
    now = ctx.clock()
    if asked and not run.state.is_closed:
        ctx.ledger.merge_provider_state(run.id, asked, now=now)
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
        chunks = dispatch_ready_chunks(ctx, run)
        advance(ctx, run.id)
        return RetryResult(f"run {run.id}: re-dispatched {chunks} chunk(s) holding {reset} failed invoice(s)", True)
    if code in (ReasonCode.AWAITING_OPERATOR, ReasonCode.STALLED):
        _follow_again(ctx, run, RunState.POLLING)
        return RetryResult(f"run {run.id}: following it on {run.provider} again", True)
    if code is ReasonCode.REBILL_OUTCOME_UNKNOWN:
        if _settle_unknown_steps(ctx, run):
            _follow_again(ctx, run, RunState.REBILLING)
            return RetryResult(f"run {run.id}: the rebill did reach {run.provider}; following it", True)
        ctx.ledger.release_steps(run.id, phases={StepPhase.UNKNOWN, StepPhase.SENDING}, now=now)
        _follow_again(ctx, run, RunState.REBILLING)
        return RetryResult(
            f"run {run.id}: sending the rebill again ({run.provider} still shows no sign of the first one)", True
        )
    if code is ReasonCode.REBILL_REFUSED:
        ctx.ledger.release_steps(run.id, phases={StepPhase.FAILED}, now=now)
        _follow_again(ctx, run, RunState.REBILLING)
        return RetryResult(f"run {run.id}: sending the rebill again (it was refused before)", True)
    if code is ReasonCode.CREDENTIALS_REFUSED:
        ctx.ledger.transition(run.id, from_states={run.state}, to=RunState.REVERSING, now=now)
        chunks = dispatch_ready_chunks(ctx, run) + _send_chunks_again(ctx, run)
        advance(ctx, run.id)
        return RetryResult(f"run {run.id}: acting on its invoices again ({chunks} chunk(s) sent)", True)
    if code is ReasonCode.PLANNING_FAILED:
        ctx.ledger.transition(run.id, from_states={run.state}, to=RunState.PLANNING, now=now)
        _send_chunks_again(ctx, run)
        ctx.dispatcher.plan(run.id)
        return RetryResult(f"run {run.id}: planning resumes where it stopped", True)
    if code is ReasonCode.BILLING_FAILED:
        raise RunRefused(
            f"run {run.id}: {run.reason}. The rebill itself failed in {run.provider}; "
            "check it there: sending it again could bill members twice"
        )
    return RetryResult(f"run {run.id} is {run.state.value} ({run.reason}); nothing to retry", False)


def _send_chunks_again(ctx: Context, run: Run) -> int:
    """Chunks dispatched before the run stopped found it stopped and were dropped: send every one still
    holding work again, however recently it moved (duplicates find nothing to claim)."""
    now = ctx.clock()
    chunks = ctx.ledger.stale_chunks(run.id, now=now, quiet_since=now + timedelta(seconds=1))
    for chunk_id in chunks:
        ctx.dispatcher.reverse_chunk(run.id, chunk_id)
    return len(chunks)


def _settle_unknown_steps(ctx: Context, run: Run) -> bool:
    """Read the platform once more for steps whose answer was lost; True when every one applied."""
    provider = ctx.provider(run.provider)
    unknown = [s for s in ctx.ledger.steps(run.id) if s.phase in (StepPhase.UNKNOWN, StepPhase.SENDING)]
    applied = True
    with ctx.recorder.collect() as calls:
        for step in unknown:
            result = provider.settle_step(run, step)
            if result.settlement is Settlement.APPLIED:
                if result.state:
                    ctx.ledger.merge_provider_state(run.id, result.state, now=ctx.clock())
                ctx.ledger.finish_step(run.id, step.key, phase=StepPhase.SENT, now=ctx.clock(), ref=result.ref)
            else:
                applied = False
    ctx.ledger.record_calls(run.id, calls)
    return applied


def _follow_again(ctx: Context, run: Run, state: RunState) -> None:
    now = ctx.clock()
    ctx.ledger.transition(
        run.id, from_states={run.state}, to=state, now=now, next_poll_at=None, last_status_change_at=now
    )
    if state is RunState.POLLING:
        ctx.dispatcher.poll(run.id)
    else:
        ctx.dispatcher.rebill(run.id)
