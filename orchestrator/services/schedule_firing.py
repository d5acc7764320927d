"""Scheduled runs: one firing of a schedule slot finds its billing and starts at most one run.

A firing is identified by its slot, `<schedule>@<slot time, UTC ISO>`. The run it creates carries
the slot in the ledger's unique `schedule_slot` column and the firing is recorded under the same
unique slot, so two schedulers (or a redelivered message) firing the same slot make one run.

A firing that finds its billing already reverse-and-rebilled (a run of rebill holds or completed
it, or the tenant has a completed billing pointing at it) is recorded as SKIPPED with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.domain.errors import PermanentProviderError, RunRefused
from orchestrator.domain.run import Run, RunOptions, RunState, Selection
from orchestrator.services import planning
from orchestrator.services.context import Context
from orchestrator.services.ports import FiringLog, FiringOutcome, ScheduleFiring

log = logging.getLogger(__name__)


def slot_key(schedule: str, slot_at: datetime) -> str:
    """`<schedule>@2026-12-01T06:00:00Z`: the same for every scheduler that fires this slot."""
    moment = slot_at.astimezone(UTC).replace(microsecond=0)
    return f"{schedule}@{moment.isoformat().replace('+00:00', 'Z')}"


def fire(
    ctx: Context,
    firings: FiringLog,
    *,
    schedule: str,
    slot_at: datetime,
    provider: str,
    choice: Mapping[str, Any],
    options: RunOptions,
    provider_options: Mapping[str, Any] | None = None,
) -> ScheduleFiring:
    """Fire one slot: start the run, or record why not. Safe to call any number of times per slot.

    Transient provider errors propagate (the caller retries the same slot later); anything else
    ends as a recorded firing.
    """
    slot = slot_key(schedule, slot_at)
    earlier = firings.get_firing(slot)
    if earlier is not None and earlier.outcome is not FiringOutcome.FAILED:
        log.info("slot %s already fired (%s); nothing to do", slot, earlier.outcome.value)
        return earlier

    def record(
        outcome: FiringOutcome, *, run_id: str | None = None, key: str | None = None, reason: str = ""
    ) -> ScheduleFiring:
        stored = firings.record_firing(
            ScheduleFiring(
                slot=slot,
                schedule=schedule,
                slot_at=slot_at.astimezone(UTC),
                outcome=outcome,
                fired_at=ctx.clock(),
                run_id=run_id,
                selected=key,
                reason=reason or None,
            )
        )
        log.info("slot %s: %s %s", slot, stored.outcome.value, stored.reason or stored.run_id or "")
        return stored

    already = firings.run_for_slot(slot)
    if already is not None:  # an earlier delivery of this firing created the run, then died
        return record(FiringOutcome.STARTED, run_id=already, reason="run created by an earlier firing of the slot")

    try:
        platform = ctx.provider(provider)
        chosen = platform.choose_scheduled(choice)
        if chosen.selector is None:
            return record(FiringOutcome.SKIPPED, key=chosen.key, reason=chosen.reason or "nothing to run")
        selection = platform.open(chosen.selector, provider_options or {}, options).selection
        reason = _already_done(ctx, selection) or chosen.done_on_platform
        if reason is not None:
            winner = firings.run_for_slot(slot)
            if winner is not None:  # the run in the way is this slot's own, made by a duplicate firing
                return record(FiringOutcome.STARTED, run_id=winner, key=chosen.key)
            return record(FiringOutcome.SKIPPED, key=chosen.key, reason=reason)
        try:
            run = planning.start_run(
                ctx, provider, chosen.selector, options, provider_options=provider_options, schedule_slot=slot
            )
        except RunRefused as refused:
            winner = firings.run_for_slot(slot)
            if winner is not None:  # another scheduler fired the same slot a moment earlier
                return record(FiringOutcome.STARTED, run_id=winner, key=chosen.key)
            return record(FiringOutcome.SKIPPED, key=chosen.key, reason=str(refused))
    except RunRefused as refused:
        return record(FiringOutcome.SKIPPED, reason=str(refused))
    except PermanentProviderError as error:
        return record(FiringOutcome.FAILED, reason=f"the tenant refused: {error}")
    return record(FiringOutcome.STARTED, run_id=run.id, key=chosen.key)


def record_unfired(
    ctx: Context, firings: FiringLog, *, schedule: str, slot_at: datetime, outcome: FiringOutcome, reason: str
) -> ScheduleFiring:
    """Record a firing that never reached its billing (unknown or disabled schedule, unreadable file)."""
    stored = firings.record_firing(
        ScheduleFiring(
            slot=slot_key(schedule, slot_at),
            schedule=schedule,
            slot_at=slot_at.astimezone(UTC),
            outcome=outcome,
            fired_at=ctx.clock(),
            reason=reason,
        )
    )
    log.warning("slot %s: %s %s", stored.slot, stored.outcome.value, stored.reason)
    return stored


def _already_done(ctx: Context, selection: Selection) -> str | None:
    """Why the selection must not be reverse-and-rebilled again by this slot, or None."""
    for run in sorted(ctx.ledger.find_runs_by_scope(selection.scope), key=lambda r: r.created_at, reverse=True):
        if run.options.dry_run or run.state is RunState.CANCELLED:
            continue
        return f"{selection.label} {_taken_by(run)}"
    return None


def _taken_by(run: Run) -> str:
    if not run.selection.whole:
        return f"has a partial run {run.id} ({run.selection.label}, {run.state.value})"
    if run.state is RunState.COMPLETED:
        return f"was already reverse-and-rebilled by run {run.id} (COMPLETED)"
    if run.state.is_final:
        return f"is held by run {run.id} ({run.state.value}): resolve it (`rebill status {run.id[:8]}`, `rebill retry`)"
    return f"is being reverse-and-rebilled by run {run.id} ({run.state.value})"
