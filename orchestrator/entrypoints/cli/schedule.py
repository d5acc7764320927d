"""`rebill schedule list|check|history`: the schedule file, its next times, and what its firings did."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from orchestrator.adapters.schedule_file import Schedule, ScheduleEntry, ScheduleFileError, load_schedule, zone
from orchestrator.config import load_settings
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.user_input import quoted
from orchestrator.entrypoints.cli import params
from orchestrator.services.ports import ScheduleFiring


def _schedule(path: Path | None) -> Schedule:
    if path is None:
        configured = load_settings().schedule_file
        if configured is None:
            raise ConfigurationError("no schedule file: pass one or set REBILL_SCHEDULE_FILE")
        path = Path(configured)
    return load_schedule(path)


def _firing_log() -> Any:
    """The recorded firings; ConfigurationError when the ledger is missing (never created here) or unreachable."""
    from orchestrator.adapters.ledger.database import create_engines, migrate
    from orchestrator.adapters.ledger.firings import SqlFiringLog
    from orchestrator.bootstrap import database_url
    from orchestrator.entrypoints.cli.reading import require_ledger

    settings = load_settings()
    require_ledger(settings)
    engines = create_engines(database_url(settings))
    migrate(engines)
    return SqlFiringLog(engines.read, write_engine=engines.write)


def _known(name: str) -> bool:
    """Whether the schedule file (when there is one) names this schedule."""
    configured = load_settings().schedule_file
    if configured is None:
        return False
    try:
        return load_schedule(Path(configured)).get(name) is not None
    except ConfigurationError:  # a broken file names nothing; `schedule check` says what is wrong
        return False


def _firing_json(firing: ScheduleFiring | None) -> dict[str, Any] | None:
    if firing is None:
        return None
    return {
        "slot": firing.slot,
        "slot_at": firing.slot_at.isoformat(),
        "fired_at": firing.fired_at.isoformat(),
        "outcome": firing.outcome.value,
        "run_id": firing.run_id,
        "billing_log_key": firing.selected,
        "reason": firing.reason,
    }


def _entry_json(entry: ScheduleEntry, schedule: Schedule, now: datetime, count: int) -> dict[str, Any]:
    times = entry.next_times(now, count) if entry.enabled else []
    local = zone(schedule.timezone)
    return {
        "name": entry.name,
        "enabled": entry.enabled,
        "provider": entry.provider,
        "cycle": entry.choice.get("cycle"),
        "billing": entry.describe(),
        "when": entry.timing.describe(),
        "timezone": schedule.timezone,
        "next": [moment.isoformat() for moment in times],
        "next_local": [moment.astimezone(local).isoformat() for moment in times],
        "options": {**entry.options, **entry.provider_options},  # as the file has them: numbers, booleans, text
    }


@click.group()
def schedule() -> None:
    """Scheduled runs per billing cycle (REBILL_SCHEDULE_FILE, driven by `rebill beat`)."""


@schedule.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path | None) -> None:
    """Validate a schedule file (default REBILL_SCHEDULE_FILE); exit 2 listing every mistake with its line."""
    try:
        loaded = _schedule(path)
    except ScheduleFileError as error:
        for problem in error.described():
            click.echo(f"error: {problem}", err=True)
        click.echo(f"{len(error.problems)} problem(s) in {error.path}", err=True)
        sys.exit(2)
    enabled = len(loaded.enabled)
    click.echo(f"{loaded.path}: {len(loaded.entries)} schedule(s), {enabled} enabled, timezone {loaded.timezone}: OK")


@schedule.command(name="list")
@click.option("--count", type=params.BoundedInt(1, 50), default=3, show_default=True, help="Next times shown.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), help="Default: REBILL_SCHEDULE_FILE.")
def list_schedules(count: int, as_json: bool, path: Path | None) -> None:
    """Each schedule: its cycle, which billing it takes, its next times and its last firing."""
    loaded = _schedule(path)
    now = datetime.now(UTC)
    try:
        firings = _firing_log()
    except ConfigurationError:
        firings = None  # the file is still shown
    rows = []
    for entry in loaded.entries.values():
        row = _entry_json(entry, loaded, now, count)
        last = firings.recent_firings(schedule=entry.name, limit=1) if firings is not None else []
        row["last_firing"] = _firing_json(last[0] if last else None)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{loaded.path}: no schedules")
    for row in rows:
        state = "" if row["enabled"] else "  (disabled)"
        click.echo(f"{row['name']}{state}: {row['billing']}, {row['when']}")
        for utc, local in zip(row["next"], row["next_local"], strict=True):
            at, there = datetime.fromisoformat(utc), datetime.fromisoformat(local)
            own = "" if loaded.timezone.upper() == "UTC" else f" ({there:%Y-%m-%d %H:%M} {loaded.timezone})"
            click.echo(f"  next {at:%Y-%m-%d %H:%M} UTC{own}")
        last = row["last_firing"]
        if last is not None:
            what = last["run_id"] or last["reason"] or ""
            click.echo(f"  last {last['slot_at'][:16]} {last['outcome']} {what}")


@schedule.command()
@click.argument("name", required=False)
@click.option("--limit", type=params.LISTED, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history(name: str | None, limit: int, as_json: bool) -> None:
    """Recorded firings (newest first): the run each started, or why it was skipped. Exit 1 for a NAME
    that is neither in the schedule file nor in any recorded firing."""
    firings = _firing_log()
    found = firings.recent_firings(schedule=name, limit=limit)
    if name is not None and not found and not _known(name):
        click.echo(f"error: no schedule {quoted(name)}: not in the schedule file, and no firing recorded", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([_firing_json(f) for f in found], indent=2))
        return
    if not found:
        click.echo("no firing recorded" + (f" for {name}" if name else ""))
    for firing in found:
        what = firing.run_id or ""
        if firing.reason:
            what = f"{what} {firing.reason}".strip()
        click.echo(f"{firing.slot}  {firing.outcome.value:<7}  {what}")
