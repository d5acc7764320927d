"""How runs look on a terminal."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from orchestrator.domain.run import ItemState, Run, RunMode
from orchestrator.services.context import Context
from orchestrator.services.rebill import native_reversal, rebill_request
from orchestrator.services.runs import money

console = Console(highlight=False)


def status_path(history: list[dict[str, Any]]) -> str:
    return " → ".join(str(event["status"]) for event in history) or "-"


def print_status(summary: dict[str, Any]) -> None:
    console.print(f"[bold]run[/] {summary['run_id']}  [bold]{summary['state']}[/]")
    if summary["reason"]:
        console.print(f"  {summary['reason']}")
    party = f", party {summary['party_id']}" if summary["party_id"] else ""
    console.print(f"  billing   {summary['billing_log_key']} ({summary['billing_cycle']}{party}), {summary['mode']}")
    items = summary["items"]
    console.print(
        "  invoices  "
        + ", ".join(f"{state.lower()} {count}" for state, count in items.items() if count)
        + f" (of {summary['invoices']} planned{'' if summary['planned'] else ' so far'})"
    )
    console.print(f"  rebill    log {summary['rebill_log_key'] or '-'}, {summary['rebill_phase'].lower()}")
    if summary["batch_id"]:
        console.print(f"  batch     {summary['batch_id']} ({'posted' if summary['batch_posted'] else 'not posted'})")
    console.print(f"  status    {status_path(summary['billing_log_status_history'])}")
    for event in summary["billing_log_status_history"]:
        console.print(f"            {event['at']}  {event['status']} {event['label']}")


def print_runs(runs: list[Run]) -> None:
    table = Table("run", "state", "billing", "party", "created", box=None)
    for run in runs:
        table.add_row(
            run.id,
            run.state.value,
            f"{run.original_key} ({run.original.cycle_name})",
            run.party_id or "",
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def print_dry_run(ctx: Context, run: Run, *, as_json: bool) -> None:
    """The whole plan, its counts and the rebill request, as nothing was sent."""
    to_reverse = 0
    amount = Decimal("0")
    skipped: Counter[str] = Counter()
    for item in ctx.ledger.iter_items(run.id):
        if item.state is ItemState.PENDING:
            to_reverse += 1
            amount += item.invoice.amount
        else:
            skipped[item.reason or "skipped"] += 1
    reversal = native_reversal(ctx, run) if run.options.mode is RunMode.NATIVE else None
    request = ctx.provider.preview_submit(rebill=rebill_request(run), reversal=reversal)
    plan = {
        "run_id": run.id,
        "billing_log_key": run.original_key,
        "billing_cycle": run.original.cycle_name,
        "invoices": run.invoice_count,
        "to_reverse": to_reverse,
        "amount_to_reverse": money(amount),
        "skipped": dict(skipped),
        "rebill_request": request,
    }
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    console.print(f"[bold]dry run[/] {run.id}: nothing was sent to {run.provider}")
    console.print(f"  billing     {run.original_key} ({run.original.cycle_name})")
    console.print(f"  invoices    {run.invoice_count}")
    console.print(f"  to reverse  {to_reverse} (total {money(amount)})")
    for reason, count in skipped.most_common():
        console.print(f"  left as-is  {count}: {reason}")
    console.print("  the rebill request that would be sent:")
    click.echo(json.dumps(request, indent=2))
