"""`rebill schedule list|check|history`: the schedule file, its next times, and what its firings did."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from orchestrator.adapters.schedule_file import Schedule, ScheduleEntry, load_schedule
from orchestrator.config import load_settings
from orchestrator.domain.errors import ConfigurationError
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
    return {
        "name": entry.name,
        "enabled": entry.enabled,
        "provider": entry.provider,
        "cycle": entry.choice.get("cycle"),
        "billing": entry.describe(),
        "when": entry.timing.describe(),
        "timezone": schedule.timezone,
        "next": [moment.isoformat() for moment in times],
        "options": {k: str(v) for k, v in {**entry.options, **entry.provider_options}.items()},
    }


@click.group()
def schedule() -> None:
    """Scheduled runs per billing cycle (REBILL_SCHEDULE_FILE, driven by `rebill beat`)."""


@schedule.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path | None) -> None:
    """Validate a schedule file (default REBILL_SCHEDULE_FILE); exit 2 naming the line at fault."""
    loaded = _schedule(path)
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
        for moment in row["next"]:
            local = datetime.fromisoformat(moment)
            click.echo(f"  next {local:%Y-%m-%d %H:%M} UTC")
        last = row["last_firing"]
        if last is not None:
            what = last["run_id"] or last["reason"] or ""
            click.echo(f"  last {last['slot_at'][:16]} {last['outcome']} {what}")


@schedule.command()
@click.argument("name", required=False)
@click.option("--limit", type=params.LISTED, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history(name: str | None, limit: int, as_json: bool) -> None:
    """Recorded firings (newest first): the run each started, or why it was skipped."""
    firings = _firing_log()
    found = firings.recent_firings(schedule=name, limit=limit)
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
