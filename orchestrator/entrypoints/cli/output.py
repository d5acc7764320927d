"""How runs look on a terminal, and the report files.

Values from the ledger (reasons, platform messages) are printed as plain text, never as rich markup.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TextIO

import click
from rich.console import Console
from rich.markup import escape

from orchestrator.bootstrap import Container
from orchestrator.domain.billing import money
from orchestrator.domain.run import ItemState, Run
from orchestrator.entrypoints.cli.reading import run_views
from orchestrator.services import reports, runs
from orchestrator.services.context import Context
from orchestrator.services.views import RunHeadline, shown_duration, shown_money, shown_time

#: Failure groups `rebill status` shows (its `--json` has every group).
TOP_REASONS = 5
_SHORT_ID = 8


def console(*, width: int | None = None) -> Console:
    """A console for this call: its width is read now (COLUMNS, or the terminal's; 80 when piped)."""
    return Console(highlight=False, width=width)


def status_path(history: list[dict[str, Any]]) -> str:
    return " → ".join(str(event["status"]) for event in history) or "-"


def print_status(summary: dict[str, Any]) -> None:
    out = console()

    def line(label: str, text: str) -> None:
        out.print(f"  [bold]{label:<9}[/] {escape(text)}", soft_wrap=True)

    out.print(f"[bold]run[/] {summary['run_id']}  [bold]{summary['state']}[/]")
    if summary["reason"]:
        out.print(f"  {escape(summary['reason'])}", soft_wrap=True)
    if summary["notice"]:
        out.print(f"  [yellow]{escape(summary['notice'])}[/]", soft_wrap=True)
    line(summary["provider"], summary["selection"])
    items = summary["items"]
    counted = ", ".join(f"{_outcome_word(state)} {count:,}" for state, count in items.items() if count)
    line("invoices", f"{summary['invoices']:,}" + (f": {counted}" if counted else "") + _planned(summary))
    line("money", _money_line(summary["money"]))
    finished = summary["finished_at"]
    line(
        "took",
        f"{shown_duration(summary['duration_seconds'])} (from {_time(summary['created_at'])}"
        + (f" to {_time(finished)})" if finished else ", still going)"),
    )
    if not finished and summary["eta_seconds"] is not None:
        line("pace", f"{summary['rate_per_second']:g}/s, about {shown_duration(summary['eta_seconds'])} left")
    _print_failures(summary, line)
    for key, value in summary["details"].items():
        if value not in (None, "", False):
            line(key.replace("_", " "), str(value))
    for step in summary["steps"]:
        line("step", f"{step['key']}: {step['phase'].lower()}" + (f" ({step['ref']})" if step["ref"] else ""))
    line("status", status_path(summary["status_history"]))
    for event in summary["status_history"]:
        note = f" ({event['note']})" if event.get("note") else ""
        line("", f"{_time(event['at'])}  {event['status']} {event['label']}{note}")
    line("API calls", _calls_line(summary))


def _outcome_word(state: str) -> str:
    return "left as-is" if state == ItemState.SKIPPED.value else state.lower().replace("_", " ")


def _planned(summary: dict[str, Any]) -> str:
    return "" if summary["planned"] else " (planning: more to come)"


def _money_line(amounts: dict[str, str | None]) -> str:
    shown = [
        f"reversed {_amount(amounts['reversed'])}",
        f"left as-is {_amount(amounts['left_as_is'])}",
        f"failed {_amount(amounts['failed'])}",
    ]
    if amounts["open"] and Decimal(amounts["open"]):
        shown.append(f"still open {_amount(amounts['open'])}")
    if amounts["billed_anew"] is not None:
        shown.append(f"billed anew {_amount(amounts['billed_anew'])}")
    return ", ".join(shown)


def _amount(text: str | None) -> str:
    return shown_money(Decimal(text)) if text is not None else "-"


def _time(text: str) -> str:
    return shown_time(datetime.fromisoformat(text))


def _print_failures(summary: dict[str, Any], line: Any) -> None:
    groups = summary["failures"]
    for index, group in enumerate(groups[:TOP_REASONS]):
        error = f": {group['example_error']}" if group["example_error"] else ""
        line(
            "failures" if index == 0 else "",
            f"{group['count']:,} invoice(s): {group['reason']} ({_amount(group['amount'])}); "
            f"e.g. invoice {group['example_invoice']}{error}",
        )
    if len(groups) > TOP_REASONS:
        more = sum(group["count"] for group in groups[TOP_REASONS:])
        line("", f"and {more:,} more in {len(groups) - TOP_REASONS} other group(s): `rebill status --json`")
    if groups:
        line("", f"list them: `rebill report {summary['run_id'][:_SHORT_ID]} --failed`")


def _calls_line(summary: dict[str, Any]) -> str:
    by_operation: dict[str, list[str]] = defaultdict(list)
    for call in summary["api_calls"]:
        by_operation[call["operation"]].append(f"{call['outcome']} {call['count']:,}")
    parts = [f"{operation} {', '.join(outcomes)}" for operation, outcomes in by_operation.items()]
    return f"{summary['api_calls_total']:,}" + (f": {'; '.join(parts)}" if parts else "")


_RUN_COLUMNS = ("run", "provider", "state", "started", "took", "rev/left/failed", "reversed", "reason")
_RIGHT_ALIGNED = frozenset({"took", "rev/left/failed", "reversed"})
_REASON_ROOM = 20  # fewer columns than this left for the reason: it goes on a line of its own


def print_runs(runs: tuple[RunHeadline, ...], *, wide: bool) -> None:
    """The runs as a table that fits the terminal (80 columns when piped): the provider has a column when
    runs of several are listed and it fits (else it leads the reason); a reason left no room goes on a
    line of its own, cut short. `wide`: every column, full ids and reasons, however long the lines."""
    if not runs:
        click.echo("no run matches")
        return
    now = datetime.now(UTC)
    total = console().width
    columns, rows = list(_RUN_COLUMNS), [_run_row(run, now, wide=wide) for run in runs]
    several = len({run.provider for run in runs}) > 1
    if not wide and (not several or _width(columns, rows) > total):
        columns.remove("provider")
        rows = [[row[0], *row[2:-1], f"{row[1]}: {row[-1]}".rstrip(": ") if several else row[-1]] for row in rows]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns[:-1])]
    room = total - sum(widths) - len(widths)
    for cells in [columns, *rows]:
        shown = " ".join(
            cell.rjust(width) if column in _RIGHT_ALIGNED else cell.ljust(width)
            for column, cell, width in zip(columns, cells, widths, strict=False)
        )
        reason = cells[-1]
        if wide or len(reason) <= room:
            click.echo(f"{shown} {reason}".rstrip())
        elif room >= _REASON_ROOM:
            click.echo(f"{shown} {reason[: room - 1]}…")
        else:
            indent = " " * (widths[0] + 1)
            click.echo(shown.rstrip())
            click.echo(indent + (reason if len(indent + reason) <= total else reason[: total - len(indent) - 1] + "…"))


def _width(columns: list[str], rows: list[list[str]]) -> int:
    """The width of every column but the reason, with the spaces between them."""
    return sum(max(len(column), *(len(row[i]) for row in rows)) + 1 for i, column in enumerate(columns[:-1]))


def _run_row(run: RunHeadline, now: datetime, *, wide: bool) -> list[str]:
    outcomes = run.outcomes
    return [
        run.id if wide else run.id[:_SHORT_ID],
        run.provider,
        run.state.value,
        run.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M" if wide else "%m-%d %H:%M"),
        shown_duration(run.duration_seconds(now)),
        "/".join(f"{outcomes.count(s):,}" for s in (ItemState.REVERSED, ItemState.SKIPPED, ItemState.FAILED)),
        shown_money(outcomes.reversed),
        " ".join((run.reason or "").split()),
    ]


def print_dry_run(ctx: Context, run: Run, *, as_json: bool) -> None:
    """The whole plan, its counts and money, and what the follow-up would send, as nothing was written."""
    plan = reports.dry_run_plan(ctx, run)
    if as_json:
        click.echo(json.dumps(plan, indent=2))
        return
    out = console()
    out.print(f"[bold]dry run[/] {run.id}: nothing was written to {run.provider}")
    out.print(f"  selection   {escape(run.selection.label)}", soft_wrap=True)
    out.print(f"  invoices    {plan['invoices']}")
    out.print(f"  to reverse  {plan['to_reverse']} (total {plan['amount_to_reverse']})")
    if "previewed" in plan:
        out.print(
            f"  would bill  {plan['new_amount']} for {plan['previewed']} invoice(s) (difference {plan['difference']})"
        )
    for reason, count in sorted(plan["skipped"].items(), key=lambda pair: -pair[1]):
        out.print(f"  left as-is  {count}: {escape(reason)}", soft_wrap=True)
    for request in plan["follow_up"]:
        out.print("  the rebill request that would be sent:")
        click.echo(json.dumps(request, indent=2))


REPORT_FORMATS = ("csv", "json", "jsonl", "html")


def write_report(container: Container, run_id: str, fmt: str, handle: TextIO, *, failed_only: bool = False) -> None:
    """`csv`: one line per invoice; `jsonl`: one JSON object per invoice with every call and earlier
    outcome; `json`: one document, the run's summary and its invoices (streamed, never all in memory)."""
    ctx, views = container.context, run_views(container)
    summary = reports.run_summary(ctx, views, runs.find_run(ctx, run_id))
    rows = reports.report_rows(views, summary["run_id"], failed_only=failed_only)
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=reports.REPORT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(value) for key, value in reports.flat_report_row(row).items()})
        return
    if fmt == "jsonl":
        for row in rows:
            handle.write(json.dumps(row, default=_json_default) + "\n")
        return
    document = {"report": "invoices" if not failed_only else "failed invoices", "run": summary}
    handle.write(json.dumps(document, default=_json_default, indent=2)[:-2] + ',\n  "invoices": [')
    for index, row in enumerate(rows):
        handle.write(("," if index else "") + "\n    " + json.dumps(row, default=_json_default))
    handle.write("\n  ]\n}\n")


def _csv_value(value: object) -> object:
    return money(value) if isinstance(value, Decimal) else value


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)
