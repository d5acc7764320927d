"""The coordinator: open a run through its provider, then stream its selection into the ledger.

Planning writes one page at a time together with the cursor that follows it, so a coordinator
killed mid-way resumes where the last committed page ended, and chunks are dispatched as soon as
they fill: the first actions start long before a large selection is fully planned.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from orchestrator.domain.errors import PermanentProviderError
from orchestrator.domain.run import ReasonCode, Run, RunOptions, RunState
from orchestrator.services.context import Context
from orchestrator.services.ports import ActionUnit, BillingProvider, NewRun
from orchestrator.services.transitions import advance, dispatch_ready_chunks

log = logging.getLogger(__name__)


def start_run(
    ctx: Context,
    provider_name: str,
    selector: Mapping[str, Any],
    options: RunOptions,
    *,
    provider_options: Mapping[str, Any] | None = None,
    schedule_slot: str | None = None,
) -> Run:
    """Check the request with its provider, record the run (refused when it overlaps another run of
    the same scope), and hand planning to a worker (or plan here for a dry run)."""
    provider = ctx.provider(provider_name)
    opening = provider.open(selector, provider_options or {}, options)
    run = ctx.ledger.create_run(
        NewRun(
            id=str(uuid.uuid4()),
            provider=provider.name,
            opening=opening,
            options=options,
            state=RunState.PLANNING,
            created_at=ctx.clock(),
            schedule_slot=schedule_slot,
        )
    )
    log.info("run %s created on %s for %s", run.id, provider.name, opening.selection.label)
    if options.dry_run:
        plan_run(ctx, run.id)
    else:
        ctx.dispatcher.plan(run.id)
    refreshed = ctx.ledger.get_run(run.id)
    assert refreshed is not None
    return refreshed


def plan_run(ctx: Context, run_id: str) -> None:
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state is not RunState.PLANNING:
        return
    provider = ctx.provider(run.provider)
    if ctx.worker_id is not None:
        ctx.ledger.update_run(run_id, now=ctx.clock(), worker_id=ctx.worker_id)  # taken up at once if we die
    try:
        if not run.options.dry_run:
            run = _prepare(ctx, provider, run)
        offset = _stream_plan(ctx, provider, run)
    except PermanentProviderError as error:
        ctx.ledger.transition(
            run_id,
            from_states={RunState.PLANNING},
            to=RunState.FAILED,
            now=ctx.clock(),
            reason_code=ReasonCode.PLANNING_FAILED,
            reason=f"planning stopped: {error}",
        )
        if run.options.dry_run:
            raise
        return
    if offset is None:
        return  # another planner owns the cursor
    target = _after_planning(provider, run)
    if not ctx.ledger.finish_planning(run_id, expected_offset=offset, now=ctx.clock(), to=target):
        return
    log.info("run %s planned", run_id)
    if target is RunState.REVERSING:
        dispatch_ready_chunks(ctx, run)
        advance(ctx, run_id)
    elif target is RunState.REBILLING:
        ctx.dispatcher.rebill(run_id)


def _after_planning(provider: BillingProvider, run: Run) -> RunState:
    if not _acts_on_items(provider, run):
        return RunState.DRY_RUN if run.options.dry_run else RunState.REBILLING
    return RunState.REVERSING


def _acts_on_items(provider: BillingProvider, run: Run) -> bool:
    """Whether items are worked in chunks: not when the platform acts on the whole selection itself,
    and in a dry run only when the platform can say what each invoice would become."""
    return run.item_actions and (not run.options.dry_run or provider.previews_items)


def _prepare(ctx: Context, provider: BillingProvider, run: Run) -> Run:
    """What the platform needs before any item is touched; the provider makes it safe to repeat."""
    with ctx.recorder.collect() as calls:
        prepared = provider.prepare_run(run)
    ctx.ledger.record_calls(run.id, calls)
    if not prepared.state and prepared.observation is None:
        return run
    now = ctx.clock()
    if prepared.state:
        ctx.ledger.merge_provider_state(run.id, prepared.state, now=now)
    if prepared.observation is not None:
        ctx.ledger.record_status(run.id, prepared.observation, at=now)
    refreshed = ctx.ledger.get_run(run.id)
    assert refreshed is not None
    return refreshed


def _stream_plan(ctx: Context, provider: BillingProvider, run: Run) -> int | None:
    """Write the plan page by page from the run's cursor; the final cursor, or None if we lost it."""
    chunk_size = run.options.chunk_size if _acts_on_items(provider, run) else 0
    # Smaller first chunks bring acting to the tenant's cap sooner; a provider whose one write covers a
    # whole chunk keeps every chunk at the size it promised.
    ramp = ctx.tuning.ramp_chunks.get(run.provider, 0) if provider.unit is ActionUnit.ITEM else 0
    offset = run.plan_offset
    with ctx.recorder.collect() as calls:
        for page in provider.iter_plan(run, cursor=offset):
            next_offset = page.next_cursor if page.next_cursor is not None else page.cursor + len(page.items)
            if not ctx.ledger.record_plan_page(
                run.id,
                page.items,
                expected_offset=offset,
                next_offset=next_offset,
                chunk_size=chunk_size,
                ramp=ramp,
                now=ctx.clock(),
            ):
                return None
            ctx.ledger.record_calls(run.id, ctx.recorder.drain(calls))
            offset = next_offset
            if chunk_size:
                dispatch_ready_chunks(ctx, run)
    return offset
