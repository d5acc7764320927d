"""How runs look on a terminal, and the report files."""

from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

import click
from rich.console import Console
from rich.table import Table

from orchestrator.domain.billing import money
from orchestrator.domain.run import Run
from orchestrator.services import reports
from orchestrator.services.context import Context

console = Console(highlight=False)


def status_path(history: list[dict[str, Any]]) -> str:
    return " → ".join(str(event["status"]) for event in history) or "-"


def print_status(summary: dict[str, Any]) -> None:
    console.print(f"[bold]run[/] {summary['run_id']}  [bold]{summary['state']}[/]")
    if summary["reason"]:
        console.print(f"  {summary['reason']}")
    if summary["notice"]:
        console.print(f"  [yellow]{summary['notice']}[/]")
    console.print(f"  {summary['provider']:<9} {summary['selection']}")
    items = summary["items"]
    console.print(
        "  invoices  "
        + ", ".join(f"{state.lower()} {count}" for state, count in items.items() if count)
        + f" (of {summary['invoices']} planned{'' if summary['planned'] else ' so far'})"
    )
    for key, value in summary["details"].items():
        if value not in (None, "", False):
            console.print(f"  {key.replace('_', ' '):<9} {value}")
    for step in summary["steps"]:
        console.print(
            f"  step      {step['key']}: {step['phase'].lower()}" + (f" ({step['ref']})" if step["ref"] else "")
        )
    console.print(f"  status    {status_path(summary['status_history'])}")
    for event in summary["status_history"]:
        console.print(f"            {event['at']}  {event['status']} {event['label']}")


def print_runs(runs: list[Run]) -> None:
    table = Table("run", "provider", "state", "selection", "created", box=None)
    for run in runs:
        table.add_row(
            run.id,
            run.provider,
            run.state.value,
            run.selection.label,
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def print_dry_run(ctx: Context, run: Run, *, as_json: bool) -> None:
    """The whole plan, its counts and money, and what the follow-up would send, as nothing was written."""
    plan = reports.dry_run_plan(ctx, run)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    console.print(f"[bold]dry run[/] {run.id}: nothing was written to {run.provider}")
    console.print(f"  selection   {run.selection.label}")
    console.print(f"  invoices    {plan['invoices']}")
    console.print(f"  to reverse  {plan['to_reverse']} (total {plan['amount_to_reverse']})")
    if "previewed" in plan:
        console.print(
            f"  would bill  {plan['new_amount']} for {plan['previewed']} invoice(s) (difference {plan['difference']})"
        )
    for reason, count in sorted(plan["skipped"].items(), key=lambda pair: -pair[1]):
        console.print(f"  left as-is  {count}: {reason}")
    for request in plan["follow_up"]:
        console.print("  the rebill request that would be sent:")
        click.echo(json.dumps(request, indent=2))


def write_report(ctx: Context, run: Run, fmt: str, handle: TextIO) -> None:
    rows = reports.report_rows(ctx, run)
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=reports.REPORT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: money(value) if isinstance(value, Decimal) else value for key, value in row.items()})
        return
    for row in rows:
        handle.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)
