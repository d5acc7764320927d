"""Scheduled runs: one firing of a schedule slot finds its billing and starts at most one run.

A firing is identified by its slot, `<schedule>@<slot time, UTC ISO>`. The run it creates carries
the slot in the ledger's unique `schedule_slot` column and the firing is recorded under the same
unique slot, so two schedulers (or a redelivered message) firing the same slot make one run.

A firing that finds its billing already reverse-and-rebilled (a run of rebill holds or completed
it, or the tenant has a completed billing pointing at it) is recorded as SKIPPED with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.domain.billing import BillingLog, BillingLogStatus
from orchestrator.domain.errors import PermanentProviderError, RunRefused
from orchestrator.domain.run import Run, RunOptions, RunState
from orchestrator.services import planning
from orchestrator.services.context import Context
from orchestrator.services.ports import FiringLog, FiringOutcome, ScheduleFiring

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BillingChoice:
    """Which billing of a cycle a schedule takes."""

    cycle_name: str
    run_name: str | None = None  # None: the latest completed billing of the cycle

    def describe(self) -> str:
        if self.run_name is None:
            return f"the latest completed billing of cycle {self.cycle_name!r}"
        return f"the completed billing {self.run_name!r} of cycle {self.cycle_name!r}"


def slot_key(schedule: str, slot_at: datetime) -> str:
    """`<schedule>@2026-12-01T06:00:00Z`: the same for every scheduler that fires this slot."""
    moment = slot_at.astimezone(UTC).replace(microsecond=0)
    return f"{schedule}@{moment.isoformat().replace('+00:00', 'Z')}"


def choose_billing(ctx: Context, choice: BillingChoice) -> BillingLog | None:
    """The billing the choice names, among the cycle's completed original billings (not rebills)."""
    candidates = [
        found
        for found in ctx.provider.billing_logs_of_cycle(choice.cycle_name)
        if found.status is BillingLogStatus.COMPLETED
        and found.original_key is None  # a rebill's own log is the result, not something to redo
        and found.party_id is None
        and (choice.run_name is None or found.run_name == choice.run_name)
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda found: (found.billing_date or _EPOCH, found.effective_date or _EPOCH))


def fire(
    ctx: Context,
    firings: FiringLog,
    *,
    schedule: str,
    slot_at: datetime,
    choice: BillingChoice,
    options: RunOptions,
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
                billing_log_key=key,
                reason=reason or None,
            )
        )
        log.info("slot %s: %s %s", slot, stored.outcome.value, stored.reason or stored.run_id or "")
        return stored

    already = firings.run_for_slot(slot)
    if already is not None:  # an earlier delivery of this firing created the run, then died
        return record(FiringOutcome.STARTED, run_id=already, reason="run created by an earlier firing of the slot")

    try:
        billing = choose_billing(ctx, choice)
        if billing is None:
            return record(FiringOutcome.SKIPPED, reason=f"no billing found: {choice.describe()} does not exist")
        reason = _already_done(ctx, billing)
        if reason is not None:
            winner = firings.run_for_slot(slot)
            if winner is not None:  # the run in the way is this slot's own, made by a duplicate firing
                return record(FiringOutcome.STARTED, run_id=winner, key=billing.key)
            return record(FiringOutcome.SKIPPED, key=billing.key, reason=reason)
        try:
            run = planning.start_run(ctx, billing.key, options, schedule_slot=slot)
        except RunRefused as refused:
            winner = firings.run_for_slot(slot)
            if winner is not None:  # another scheduler fired the same slot a moment earlier
                return record(FiringOutcome.STARTED, run_id=winner, key=billing.key)
            return record(FiringOutcome.SKIPPED, key=billing.key, reason=str(refused))
    except PermanentProviderError as error:
        return record(FiringOutcome.FAILED, reason=f"the tenant refused: {error}")
    return record(FiringOutcome.STARTED, run_id=run.id, key=billing.key)


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


def _already_done(ctx: Context, billing: BillingLog) -> str | None:
    """Why the billing must not be reverse-and-rebilled again, or None."""
    label = f"billing {billing.key} ({billing.run_name or billing.cycle_name})"
    for run in sorted(ctx.ledger.find_runs_by_billing(billing.key), key=lambda r: r.created_at, reverse=True):
        if run.options.dry_run or run.state is RunState.CANCELLED:
            continue
        return f"{label} {_taken_by(run)}"
    for other in ctx.provider.find_billing_logs(original_key=billing.key):
        if other.status is BillingLogStatus.COMPLETED:
            return (
                f"{label} was already reverse-and-rebilled on the tenant: completed BillingLog {other.key} "
                f"({other.run_name or other.cycle_name}) points at it"
            )
    return None


def _taken_by(run: Run) -> str:
    if run.party_id is not None:
        return f"has a single-contact run {run.id} (party {run.party_id}, {run.state.value})"
    if run.state is RunState.COMPLETED:
        return f"was already reverse-and-rebilled by run {run.id} (COMPLETED)"
    if run.state.is_final:
        return f"is held by run {run.id} ({run.state.value}): resolve it (`rebill status {run.id[:8]}`, `rebill retry`)"
    return f"is being reverse-and-rebilled by run {run.id} ({run.state.value})"
