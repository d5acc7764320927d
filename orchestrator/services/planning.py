"""The coordinator: check the original billing, open a run, then stream its invoices into the ledger.

Planning writes one page at a time together with the cursor that follows it, so a coordinator
killed mid-way resumes where the last committed page ended, and chunks are dispatched as soon as
they fill: the first reversals start long before a large billing is fully planned.
"""

from __future__ import annotations

import logging
import re
import uuid

from orchestrator.domain.billing import BillingLog, BillingLogStatus
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderNotFound,
    ProviderRefused,
    RunRefused,
)
from orchestrator.domain.run import (
    PlannedItem,
    ReasonCode,
    Run,
    RunMode,
    RunOptions,
    RunState,
    rebill_run_name,
)
from orchestrator.services.context import Context
from orchestrator.services.ports import NewRun
from orchestrator.services.progress import advance, dispatch_ready_chunks

log = logging.getLogger(__name__)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def parse_billing_log_key(value: str) -> str:
    key = value.strip().strip("{}")
    if not _GUID.match(key):
        raise RunRefused(
            f"{value!r} is not a BillingLogKey: expected a GUID such as a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        )
    return key.lower()


def check_original(ctx: Context, key: str) -> BillingLog:
    """The original billing, or RunRefused saying why it cannot be reversed and rebilled."""
    try:
        original = ctx.provider.get_billing_log(key)
    except ProviderNotFound:
        raise RunRefused(f"no BillingLog {key} on this {ctx.provider.name} tenant") from None
    if original.status is not BillingLogStatus.COMPLETED:
        raise RunRefused(
            f"BillingLog {key} ({original.run_name or original.cycle_name}) is "
            f"{original.status.label} ({int(original.status)}), not Completed (2): "
            "only a completed billing can be reversed and rebilled"
        )
    return original


def start_run(ctx: Context, billing_log_key: str, options: RunOptions, *, schedule_slot: str | None = None) -> Run:
    """Validate, record the run, and hand planning to a worker (or plan here for a dry run)."""
    key = parse_billing_log_key(billing_log_key)
    original = check_original(ctx, key)
    _refuse_overlapping(ctx, key, options)
    run = ctx.ledger.create_run(
        NewRun(
            id=str(uuid.uuid4()),
            provider=ctx.provider.name,
            original=original,
            options=options,
            state=RunState.PLANNING,
            tracking_log_key=str(uuid.uuid4()) if options.tracking_log and not options.dry_run else None,
            guard_key=None if options.dry_run else _guard_key(ctx, key, options.party_id),
            created_at=ctx.clock(),
            schedule_slot=schedule_slot,
        )
    )
    log.info("run %s created for billing %s (%s)", run.id, key, original.cycle_name)
    if options.dry_run:
        plan_run(ctx, run.id)
    else:
        ctx.dispatcher.plan(run.id)
    refreshed = ctx.ledger.get_run(run.id)
    assert refreshed is not None
    return refreshed


def _guard_key(ctx: Context, key: str, party_id: str | None) -> str:
    return f"{ctx.provider.name}:{key}" + (f":party:{party_id}" if party_id else "")


def _refuse_overlapping(ctx: Context, key: str, options: RunOptions) -> None:
    """A whole-billing run and single-contact runs of the same billing would bill people twice."""
    if options.dry_run:
        return
    for other in ctx.ledger.find_runs_by_billing(key):
        if other.options.dry_run or other.state is RunState.CANCELLED:
            continue
        if options.party_id is None and other.party_id is not None:
            raise RunRefused(
                f"billing {key} already has a single-contact run {other.id} (party {other.party_id}, "
                f"{other.state.value}); a whole-billing run would bill that contact twice"
            )
        if options.party_id is not None and other.party_id is None:
            raise RunRefused(
                f"billing {key} is already taken by run {other.id} ({other.state.value}) for the whole billing"
            )


def plan_run(ctx: Context, run_id: str) -> None:
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state is not RunState.PLANNING:
        return
    options = run.options
    try:
        if run.tracking_log_key and not run.tracking_log_created:
            _ensure_tracking_log(ctx, run)
        offset = _stream_plan(ctx, run)
    except PermanentProviderError as error:
        ctx.ledger.transition(
            run_id,
            from_states={RunState.PLANNING},
            to=RunState.FAILED,
            now=ctx.clock(),
            reason_code=ReasonCode.PLANNING_FAILED,
            reason=f"planning stopped: {error}",
        )
        if options.dry_run:
            raise
        return
    if offset is None:
        return  # another planner owns the cursor
    target = (
        RunState.DRY_RUN
        if options.dry_run
        else (RunState.REBILLING if options.mode is RunMode.NATIVE else RunState.REVERSING)
    )
    if not ctx.ledger.finish_planning(run_id, expected_offset=offset, now=ctx.clock(), to=target):
        return
    log.info("run %s planned", run_id)
    if target is RunState.REVERSING:
        dispatch_ready_chunks(ctx, run_id)
        advance(ctx, run_id)
    elif target is RunState.REBILLING:
        ctx.dispatcher.rebill(run_id)


def _stream_plan(ctx: Context, run: Run) -> int | None:
    """Write the plan page by page from the run's cursor; the final cursor, or None if we lost it."""
    options = run.options
    chunk_size = 0 if (options.dry_run or options.mode is RunMode.NATIVE) else options.chunk_size
    offset = run.plan_offset
    with ctx.recorder.collect() as calls:
        pages = ctx.provider.iter_invoice_pages(run.original_key, party_id=run.party_id, start_offset=offset)
        for page in pages:
            next_offset = page.next_offset if page.next_offset is not None else page.offset + len(page.invoices)
            planned = [PlannedItem.from_invoice(invoice) for invoice in page.invoices]
            if not ctx.ledger.record_plan_page(
                run.id,
                planned,
                expected_offset=offset,
                next_offset=next_offset,
                chunk_size=chunk_size,
                now=ctx.clock(),
            ):
                return None
            ctx.ledger.record_calls(run.id, ctx.recorder.drain(calls))
            offset = next_offset
            if chunk_size:
                dispatch_ready_chunks(ctx, run.id)
    return offset


def _ensure_tracking_log(ctx: Context, run: Run) -> None:
    """POST the 'Reversing invoices' log under our own key; a lost reply is settled by reading it."""
    key = run.tracking_log_key
    assert key is not None
    with ctx.recorder.collect() as calls:
        try:
            ctx.provider.get_billing_log(key)
        except ProviderNotFound:
            try:
                ctx.provider.create_tracking_log(
                    run.original, key=key, run_name=rebill_run_name(run.original.cycle_name, run.party_id)
                )
            except ProviderRefused:
                ctx.provider.get_billing_log(key)  # a 409: it exists after all; anything else re-raises
    ctx.ledger.record_calls(run.id, calls)
    now = ctx.clock()
    ctx.ledger.update_run(run.id, now=now, tracking_log_created=True)
    ctx.ledger.record_status(
        run.id, billing_log_key=key, status=BillingLogStatus.REVERSING, at=now, note="tracking log created"
    )
