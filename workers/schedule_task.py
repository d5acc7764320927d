"""The body of `rebill.fire_schedule`: read the schedule file, then let the scheduling service fire the slot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator.adapters.schedule_file import Schedule, load_schedule
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services import schedule_firing
from orchestrator.services.ports import FiringOutcome, ScheduleFiring


def schedule_of(container: Container) -> Schedule:
    path = container.settings.schedule_file
    if path is None:
        raise ConfigurationError("REBILL_SCHEDULE_FILE is not set: there are no schedules")
    return load_schedule(Path(path))


def fire(container: Container, name: str, slot: str) -> ScheduleFiring:
    """Fire schedule `name` for `slot` (UTC ISO time; empty: the slot `now` falls in)."""
    ctx = container.context
    firings = container.firing_log
    now = ctx.clock()
    try:
        schedule = schedule_of(container)
    except ConfigurationError as error:
        slot_at = datetime.fromisoformat(slot) if slot else now
        return schedule_firing.record_unfired(
            ctx, firings, schedule=name, slot_at=slot_at, outcome=FiringOutcome.FAILED, reason=str(error)
        )
    entry = schedule.get(name)
    if entry is None or not entry.enabled:
        slot_at = datetime.fromisoformat(slot) if slot else now
        what = "is disabled" if entry is not None else "is not"
        return schedule_firing.record_unfired(
            ctx,
            firings,
            schedule=name,
            slot_at=slot_at,
            outcome=FiringOutcome.SKIPPED,
            reason=f"schedule {name!r} {what} in {schedule.path} (REBILL_SCHEDULE_FILE) on this worker",
        )
    slot_at = datetime.fromisoformat(slot) if slot else (entry.timing.slot_at(now) or now)
    return schedule_firing.fire(
        ctx,
        firings,
        schedule=name,
        slot_at=slot_at.astimezone(UTC),
        provider=entry.provider,
        choice=entry.choice,
        options=container.settings.run_options(**entry.options),
        provider_options=entry.provider_options,
    )
