"""The read side: what a run looks like to an operator (status, report lines, a dry run's plan).

Status and reports are built from the web view's read port (`RunViews`), so the command line, the
web view and the HTML report answer the same questions from the same queries. Everything here reads
the ledger only, except a dry run's plan, which asks the provider what its follow-up would send (it
calls nothing on the platform).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from orchestrator.domain.billing import money
from orchestrator.domain.errors import ConfigurationError, RunRefused
from orchestrator.domain.run import ItemState, Run
from orchestrator.services.context import Context
from orchestrator.services.follow_up import LedgerFollowView
from orchestrator.services.views import CallView, FailureGroup, InvoiceHistory, Outcomes, RunHeadline, RunViews


def run_summary(ctx: Context, views: RunViews, run: Run) -> dict[str, Any]:
    """Everything `rebill status` shows, as JSON: counts and money per outcome, failures grouped by
    reason with an example, the platform's status path with times, and the API calls made."""
    detail = views.run(run.id)
    if detail is None:
        raise RunRefused(f"run {run.id} is not in this ledger any more")
    outcomes = detail.progress.outcomes
    return {
        "run_id": run.id,
        "state": run.state.value,
        "reason_code": run.reason_code.value if run.reason_code else None,
        "reason": run.reason,
        "notice": run.notice,
        "provider": run.provider,
        "selection": run.selection.label,
        "selector": dict(run.selection.selector),
        "details": _details(ctx, run),
        "dry_run": run.options.dry_run,
        "planned": run.planned,
        "invoices": run.invoice_count,
        "items": {state.value: outcomes.count(state) for state in ItemState},
        "money": money_json(outcomes)
        | {"billed_anew": money(detail.new_amount) if detail.new_amount is not None else None},
        "failures": [_failure(group) for group in detail.failures],
        "run_failures": [call_json(call) for call in detail.run_failures],
        "steps": [
            {"key": step.key, "phase": step.phase.value, "ref": step.ref, "at": step.claimed_at.isoformat()}
            for step in ctx.ledger.steps(run.id)
        ],
        "status_history": [
            {"subject": step.subject, "status": step.status, "label": step.label, "at": step.at.isoformat()}
            | ({"note": step.note} if step.note else {})
            for step in detail.steps
        ],
        "api_calls": [
            {"operation": operation, "outcome": outcome, "count": count}
            for (operation, outcome), count in sorted(detail.calls.items())
        ],
        "api_calls_total": sum(detail.calls.values()),
        "rate_per_second": round(detail.progress.rate_per_second, 2),
        "eta_seconds": None if detail.progress.eta_seconds is None else round(detail.progress.eta_seconds),
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": round(detail.headline.duration_seconds(detail.progress.observed_at), 1),
    }


def money_json(outcomes: Outcomes) -> dict[str, str | None]:
    return {
        "reversed": money(outcomes.reversed),
        "left_as_is": money(outcomes.left),
        "failed": money(outcomes.failed),
        "open": money(outcomes.open),
    }


def headline_json(run: RunHeadline, now: datetime) -> dict[str, Any]:
    """One run as `rebill runs --json` lists it."""
    outcomes = run.outcomes
    return {
        "run_id": run.id,
        "provider": run.provider,
        "selection": run.selection,
        "state": run.state.value,
        "reason_code": run.reason_code.value if run.reason_code else None,
        "reason": run.reason,
        "dry_run": run.dry_run,
        "planned": run.planned,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": round(run.duration_seconds(now), 1),
        "invoices": outcomes.total,
        "items": {state.value: outcomes.count(state) for state in ItemState},
        "money": money_json(outcomes),
    }


def _details(ctx: Context, run: Run) -> dict[str, Any]:
    """The provider's own facts about the run; nothing when it is not configured here."""
    try:
        provider = ctx.provider(run.provider)
    except ConfigurationError:  # reading the ledger must not need the tenant's settings
        return {}
    return dict(provider.summarize(run))


def _failure(group: FailureGroup) -> dict[str, Any]:
    return {
        "reason": group.reason,
        "count": group.count,
        "amount": money(group.amount),
        "example_invoice": group.example_invoice,
        "example_error": group.example_error,
        "example_call": call_json(group.example_call) if group.example_call else None,
    }


def call_json(call: CallView) -> dict[str, Any]:
    return {
        "at": call.started_at.isoformat(),
        "operation": call.operation,
        "outcome": call.outcome,
        "status_code": call.status_code,
        "latency_ms": round(call.latency_ms, 1),
        "error": call.error,
    }


#: The report's columns, one line per invoice (CSV); JSON adds each call and each earlier outcome.
REPORT_FIELDS = (
    "invoice_id",
    "number",
    "party_id",
    "party_name",
    "amount",
    "outcome",
    "reason",
    "result_ref",
    "rebill_ref",
    "new_amount",
    "difference",
    "attempts",
    "attempts_total",
    "settled_by_read",
    "updated_at",
    "last_error",
    "earlier_failures",
    "api_calls",
)


def report_rows(views: RunViews, run_id: str, *, failed_only: bool = False) -> Iterator[dict[str, Any]]:
    """One row per invoice of the run (or per failed one), streamed, with every call and earlier outcome."""
    for history in views.every_invoice(run_id, outcome=ItemState.FAILED if failed_only else None):
        yield report_row(history)


def report_row(history: InvoiceHistory) -> dict[str, Any]:
    line = history.line
    return {
        "invoice_id": line.invoice_id,
        "number": line.number,
        "party_id": line.party_id,
        "party_name": line.party_name,
        "amount": line.amount,
        "outcome": line.outcome.value,
        "reason": line.reason,
        "result_ref": line.result_ref,
        "rebill_ref": line.rebill_ref,
        "new_amount": line.new_amount,
        "difference": line.new_amount - line.amount if line.new_amount is not None else None,
        "attempts": line.attempts,
        "attempts_total": line.attempts_total,
        "settled_by_read": line.settled_by_read,
        "updated_at": line.updated_at.isoformat() if line.updated_at else None,
        "last_error": line.last_error,
        "earlier": [
            {
                "outcome": earlier.outcome.value,
                "reason": earlier.reason,
                "error": earlier.error,
                "attempts": earlier.attempts,
                "settled_at": earlier.settled_at.isoformat(),
                "replaced_at": earlier.replaced_at.isoformat(),
            }
            for earlier in history.earlier
        ],
        "calls": [call_json(call) for call in history.calls],
    }


def flat_report_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A report row as one CSV line: earlier failures as text, the calls counted."""
    flat = {key: row[key] for key in REPORT_FIELDS if key in row}
    flat["earlier_failures"] = " | ".join(
        f"{earlier['settled_at']} {earlier['outcome']} after {earlier['attempts']} attempt(s): {earlier['reason']}"
        for earlier in row["earlier"]
    )
    flat["api_calls"] = len(row["calls"])
    return flat


def dry_run_plan(ctx: Context, run: Run) -> dict[str, Any]:
    """A dry run's plan: what would be acted on and left alone, with money, and the run-level
    requests the follow-up would send."""
    to_reverse = previewed = 0
    amount = Decimal("0")
    new_amount = Decimal("0")
    skipped: Counter[str] = Counter()
    for item in ctx.ledger.iter_items(run.id):
        if item.state in (ItemState.PENDING, ItemState.PREVIEWED):
            to_reverse += 1
            amount += item.invoice.amount
            if item.new_amount is not None:
                previewed += 1
                new_amount += item.new_amount
        else:
            skipped[item.reason or item.state.value.lower()] += 1
    provider = ctx.provider(run.provider)
    plan: dict[str, Any] = {
        "run_id": run.id,
        "provider": run.provider,
        "selection": run.selection.label,
        "details": dict(provider.summarize(run)),
        "invoices": run.invoice_count,
        "to_reverse": to_reverse,
        "amount_to_reverse": money(amount),
        "skipped": dict(skipped),
        "follow_up": provider.describe_follow_up(run, LedgerFollowView(ctx.ledger, run.id)),
    }
    if previewed:
        plan["previewed"] = previewed
        plan["new_amount"] = money(new_amount)
        plan["difference"] = money(new_amount - amount)
    return plan
