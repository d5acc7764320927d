"""`--wait`: follow a run from the ledger (never the broker), through worker, broker and ledger loss."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.adapters.ledger.database import LEDGER_UNREACHABLE, unreachable_reason
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import OPEN_ITEM_STATES, ItemState, Run, RunState
from orchestrator.services.reports import run_summary

T = TypeVar("T")

_REFRESH_SECONDS = 0.5
_LEDGER_RETRY_SECONDS = 1.0
#: How long `--wait` waits out a ledger it cannot read before it gives up (exit 2); the run goes on regardless.
LEDGER_PATIENCE_SECONDS = 120.0


def outcome_code(run: Run) -> int:
    """0 only for a completed run (the provider completes a run only once its platform says it is done),
    or a dry run that previewed everything."""
    return 0 if run.state in (RunState.COMPLETED, RunState.DRY_RUN) else 1


def through_ledger_outages(read: Callable[[], T], *, run_id: str, patience_seconds: float) -> T:
    """`read()`, again and again while the ledger is unreachable: say so once, and when it is back.

    Past `patience_seconds` of outage, a ConfigurationError naming REBILL_DATABASE_URL (exit 2).
    """
    down_since: float | None = None
    while True:
        try:
            value = read()
        except LEDGER_UNREACHABLE as error:
            now = time.monotonic()
            if down_since is None:
                down_since = now
                click.echo(
                    f"waiting for the ledger ({unreachable_reason(error)}); the run goes on in the workers", err=True
                )
            elif now - down_since >= patience_seconds:
                raise ConfigurationError(
                    f"the ledger has been unreachable for {now - down_since:.0f} s ({unreachable_reason(error)}): "
                    f"check REBILL_DATABASE_URL; the run goes on in the workers, `rebill status {run_id}` shows it"
                ) from None
            time.sleep(_LEDGER_RETRY_SECONDS)
            continue
        if down_since is not None:
            click.echo(f"the ledger is back after {time.monotonic() - down_since:.0f} s", err=True)
        return value


def _observe(container: Container, run_id: str) -> tuple[Run, dict[ItemState, int], str]:
    ledger = container.ledger
    run = ledger.get_run(run_id)
    if run is None:
        raise click.ClickException(f"run {run_id} vanished from the ledger")
    path = " → ".join(event.code for event in ledger.status_events(run_id))
    return run, ledger.item_counts(run_id), path


def follow(
    container: Container,
    run_id: str,
    *,
    quiet: bool = False,
    ledger_patience_seconds: float = LEDGER_PATIENCE_SECONDS,
) -> int:
    """Live progress until the run rests; a ledger outage is waited out (see `through_ledger_outages`)."""
    interactive = sys.stdout.isatty() and not quiet
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[note]}"), disable=not interactive) as progress:
        planning = progress.add_task("planning", total=None, note="")
        reversing = progress.add_task("reversing", total=None, note="")
        rebilling = progress.add_task("rebill", total=None, note="")
        last_state: RunState | None = None
        while True:
            run, counts, path = through_ledger_outages(
                lambda: _observe(container, run_id), run_id=run_id, patience_seconds=ledger_patience_seconds
            )
            open_items = sum(counts.get(state, 0) for state in OPEN_ITEM_STATES)
            progress.update(planning, completed=run.invoice_count, total=run.invoice_count if run.planned else None)
            progress.update(
                reversing,
                completed=run.plan_count - open_items,
                total=run.plan_count if run.planned else None,
                note=", ".join(f"{state.value.lower()} {n}" for state, n in sorted(counts.items()) if n),
            )
            progress.update(rebilling, note=f"status {path}" if path else "")
            if run.state is not last_state:
                last_state = run.state
                if not interactive and not quiet:
                    click.echo(f"{run.state.value.lower()}" + (f": {run.reason}" if run.reason else ""))
            if run.state.is_final:
                break
            time.sleep(_REFRESH_SECONDS)
    if quiet:
        return outcome_code(run)
    summary = through_ledger_outages(
        lambda: run_summary(container.context, run), run_id=run_id, patience_seconds=ledger_patience_seconds
    )
    click.echo(f"run {run.id}: {run.state.value}" + (f": {run.reason}" if run.reason else ""))
    items = summary["items"]
    click.echo(
        f"  reversed {items['REVERSED']}, skipped {items['SKIPPED']}, failed {items['FAILED']}; "
        f"status {' → '.join(str(e['status']) for e in summary['status_history']) or '-'}"
    )
    return outcome_code(run)
