"""Moving a run forward from what the ledger says, never from what the broker delivered."""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.domain.run import ItemState, ReasonCode, Run, RunState
from orchestrator.services.context import Context

log = logging.getLogger(__name__)


def stop_run(
    ctx: Context, run_id: str, *, was: RunState, to: RunState, code: ReasonCode, reason: str, **fields: Any
) -> bool:
    """Leave `was` for a resting state with the reason an operator will read; False if the run moved meanwhile."""
    return ctx.ledger.transition(
        run_id, from_states={was}, to=to, now=ctx.clock(), reason_code=code, reason=reason, **fields
    )


def dispatch_ready_chunks(ctx: Context, run: Run) -> int:
    """Keep at most the dispatch window of the run's provider in the broker for this run."""
    window = ctx.tuning.window_for(run.provider)
    chunk_ids = ctx.ledger.take_chunks_to_dispatch(run.id, window=window, now=ctx.clock())
    for chunk_id in chunk_ids:
        ctx.dispatcher.reverse_chunk(run.id, chunk_id)
    return len(chunk_ids)


def advance(ctx: Context, run_id: str) -> None:
    """Once every item is terminal, decide what follows: exactly one caller wins the transition."""
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state is not RunState.REVERSING or not run.planned:
        return
    if ctx.ledger.has_open_items(run_id):
        return  # the common case after a chunk: stop before counting the whole run
    counts = ctx.ledger.item_counts(run_id)
    failed = counts.get(ItemState.FAILED, 0)
    reversed_count = counts.get(ItemState.REVERSED, 0)
    now = ctx.clock()
    if run.options.dry_run:
        if ctx.ledger.transition(run_id, from_states={RunState.REVERSING}, to=RunState.DRY_RUN, now=now):
            log.info("run %s: dry run previewed every eligible invoice", run_id)
        return
    if failed and not run.options.allow_partial:
        stop_run(
            ctx,
            run_id,
            was=RunState.REVERSING,
            to=RunState.NEEDS_ATTENTION,
            code=ReasonCode.FAILED_ITEMS,
            reason=f"{failed} invoice(s) could not be reversed, so the run stopped before its rebill. "
            f"See `rebill report {run_id} --failed`, fix the cause, then `rebill retry {run_id}`.",
        )
        return
    if reversed_count == 0:
        stop_run(
            ctx,
            run_id,
            was=RunState.REVERSING,
            to=RunState.NEEDS_ATTENTION,
            code=ReasonCode.NOTHING_TO_REVERSE,
            reason="no invoice was reversed (each one is paid, settled or was already reversed), "
            "so there is nobody to rebill",
        )
        return
    if ctx.ledger.transition(run_id, from_states={RunState.REVERSING}, to=RunState.REBILLING, now=now):
        log.info(
            "run %s: every invoice settled (%s reversed, %s failed); following up",
            run_id,
            reversed_count,
            failed,
        )
        ctx.dispatcher.rebill(run_id)
