"""Send the rebill exactly once per run.

The send is claimed in the ledger first (NOT_SENT -> SENDING). A reply that never came leaves the
phase UNKNOWN: the run then watches the progress BillingLog for a while and only a sign of life
there counts as sent. Nothing is ever sent twice on a guess; after the settle window the run asks
for attention instead.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from orchestrator.domain.billing import BillingLogStatus, Rebill, Reversal, ServerSideReversal
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderNotFound,
    TransientProviderError,
)
from orchestrator.domain.run import (
    ItemState,
    ReasonCode,
    RebillPhase,
    Run,
    RunMode,
    RunState,
    rebill_run_name,
    retry_delay,
)
from orchestrator.services.context import Context
from orchestrator.services.progress import stop_run

log = logging.getLogger(__name__)


def rebill_request(run: Run) -> Rebill:
    return Rebill(
        original=run.original,
        run_name=rebill_run_name(run.original.cycle_name, run.party_id),
        tracking_log_key=run.tracking_log_key,
        auto_post_batch=run.options.automatically_post_batch,
        party_id=run.party_id,
    )


def native_reversal(ctx: Context, run: Run) -> ServerSideReversal:
    """Native mode: the whole billing by key, or the single contact's planned invoices by id."""
    if run.party_id is None:
        return ServerSideReversal(billing_key=run.original_key)
    today = ctx.clock().date()
    return ServerSideReversal(
        invoices=tuple(
            Reversal(
                invoice_id=item.invoice.invoice_id,
                invoice_number=item.invoice.number,
                accounting_method=item.invoice.accounting_method,
                adjustment_date=run.options.adjustment_date or today,
                reason=run.options.adjustment_reason,
                do_not_cancel_membership=run.options.do_not_cancel_membership,
            )
            for item in ctx.ledger.iter_items(run.id, states={ItemState.PENDING})
        )
    )


def send_rebill(ctx: Context, run_id: str) -> None:
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state is not RunState.REBILLING:
        return
    if run.rebill_phase is RebillPhase.SENT:
        _start_polling(ctx, run, run.rebill_log_key)
        return
    if run.rebill_phase in (RebillPhase.SENDING, RebillPhase.UNKNOWN):
        settle_rebill(ctx, run)
        return
    with ctx.recorder.collect() as calls:
        if not run.tracking_log_key:
            # Without a tracking log the server names the progress log: remember what existed before.
            known = tuple(log.key for log in ctx.provider.find_billing_logs(original_key=run.original_key))
            ctx.ledger.update_run(run_id, now=ctx.clock(), known_log_keys=known)
        if not ctx.ledger.claim_rebill(run_id, now=ctx.clock(), from_phases={RebillPhase.NOT_SENT}):
            return
        reversal = native_reversal(ctx, run) if run.options.mode is RunMode.NATIVE else None
        try:
            task_id = ctx.provider.submit(rebill=rebill_request(run), reversal=reversal)
        except (TransientProviderError, PermanentProviderError) as error:
            ctx.ledger.record_calls(run_id, calls)
            _send_failed(ctx, run, error)
            return
    ctx.ledger.record_calls(run_id, calls)
    ctx.ledger.update_run(run_id, now=ctx.clock(), rebill_phase=RebillPhase.SENT, rebill_task_id=task_id)
    log.info("run %s: rebill submitted (task %s)", run_id, task_id)
    _start_polling(ctx, run, run.tracking_log_key)


def _send_failed(ctx: Context, run: Run, error: TransientProviderError | PermanentProviderError) -> None:
    now = ctx.clock()
    if error.may_have_applied:
        ctx.ledger.update_run(run.id, now=now, rebill_phase=RebillPhase.UNKNOWN)
        log.warning("run %s: rebill outcome unknown (%s); settling by reading", run.id, error)
        ctx.dispatcher.rebill(run.id, countdown=run.options.poll_interval_seconds)
    elif isinstance(error, TransientProviderError):
        ctx.ledger.update_run(run.id, now=now, rebill_phase=RebillPhase.NOT_SENT)
        delay = retry_delay(
            1,
            base=run.options.retry_backoff_seconds,
            cap=run.options.retry_backoff_max_seconds,
            retry_after=error.retry_after,
        )
        ctx.dispatcher.rebill(run.id, countdown=delay)
    else:
        stop_run(
            ctx,
            run.id,
            was=RunState.REBILLING,
            to=RunState.FAILED,
            code=ReasonCode.REBILL_REFUSED,
            reason=f"{ctx.provider.name} refused the rebill: {error.message}",
            rebill_phase=RebillPhase.NOT_SENT,
        )


def settle_rebill(ctx: Context, run: Run) -> None:
    """Was the rebill applied although no reply came? Only the progress log can say."""
    applied_log = sign_of_rebill(ctx, run)
    now = ctx.clock()
    if applied_log is not None:
        ctx.ledger.update_run(run.id, now=now, rebill_phase=RebillPhase.SENT)
        _start_polling(ctx, run, applied_log)
        return
    sent_at = run.rebill_sent_at or now
    if now - sent_at < timedelta(seconds=ctx.runtime.rebill_settle_seconds):
        ctx.dispatcher.rebill(run.id, countdown=run.options.poll_interval_seconds)
        return
    stop_run(
        ctx,
        run.id,
        was=RunState.REBILLING,
        to=RunState.NEEDS_ATTENTION,
        code=ReasonCode.REBILL_OUTCOME_UNKNOWN,
        reason="the rebill request got no answer and its BillingLog shows no sign of it after "
        f"{int(ctx.runtime.rebill_settle_seconds)} s; check iMIS, then `rebill retry {run.id}` "
        "(it reads the log again before sending anything)",
    )


def sign_of_rebill(ctx: Context, run: Run) -> str | None:
    with ctx.recorder.collect() as calls:
        try:
            if run.tracking_log_key:
                tracking = ctx.provider.get_billing_log(run.tracking_log_key)
                moved = tracking.status is not BillingLogStatus.REVERSING or tracking.batch_id
                return run.tracking_log_key if moved else None
            new = [
                found.key
                for found in ctx.provider.find_billing_logs(original_key=run.original_key)
                if found.key not in run.known_log_keys
            ]
            return new[0] if new else None
        except (TransientProviderError, ProviderNotFound):
            return None
        finally:
            ctx.ledger.record_calls(run.id, calls)


def _start_polling(ctx: Context, run: Run, log_key: str | None) -> None:
    now = ctx.clock()
    if ctx.ledger.transition(
        run.id,
        from_states={RunState.REBILLING},
        to=RunState.POLLING,
        now=now,
        rebill_log_key=log_key,
        next_poll_at=None,
        last_status_change_at=now,
    ):
        ctx.dispatcher.poll(run.id)
