"""`--wait`: follow a run from the ledger (never the broker), through worker and broker loss."""

from __future__ import annotations

import sys
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.bootstrap import Container
from orchestrator.domain.run import OPEN_ITEM_STATES, Run, RunState
from orchestrator.services.reports import run_summary

_REFRESH_SECONDS = 0.5


def outcome_code(run: Run) -> int:
    """0 only for a completed run (the provider completes a run only once its platform says it is done),
    or a dry run that previewed everything."""
    return 0 if run.state in (RunState.COMPLETED, RunState.DRY_RUN) else 1


def follow(container: Container, run_id: str, *, quiet: bool = False) -> int:
    ledger = container.ledger
    interactive = sys.stdout.isatty() and not quiet
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[note]}"), disable=not interactive) as progress:
        planning = progress.add_task("planning", total=None, note="")
        reversing = progress.add_task("reversing", total=None, note="")
        rebilling = progress.add_task("rebill", total=None, note="")
        last_state: RunState | None = None
        while True:
            run = ledger.get_run(run_id)
            if run is None:
                raise click.ClickException(f"run {run_id} vanished from the ledger")
            counts = ledger.item_counts(run_id)
            open_items = sum(counts.get(state, 0) for state in OPEN_ITEM_STATES)
            progress.update(planning, completed=run.invoice_count, total=run.invoice_count if run.planned else None)
            progress.update(
                reversing,
                completed=run.plan_count - open_items,
                total=run.plan_count if run.planned else None,
                note=", ".join(f"{state.value.lower()} {n}" for state, n in sorted(counts.items()) if n),
            )
            path = " → ".join(event.code for event in ledger.status_events(run_id))
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
    summary = run_summary(container.context, run)
    click.echo(f"run {run.id}: {run.state.value}" + (f": {run.reason}" if run.reason else ""))
    items = summary["items"]
    click.echo(
        f"  reversed {items['REVERSED']}, skipped {items['SKIPPED']}, failed {items['FAILED']}; "
        f"status {' → '.join(str(e['status']) for e in summary['status_history']) or '-'}"
    )
    return outcome_code(run)
