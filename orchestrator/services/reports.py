"""The read side: what a run looks like to an operator (status, report lines, a dry run's plan).

Everything here reads the ledger only, except a dry run's plan, which asks the provider what its
follow-up would send (it calls nothing on the platform).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from orchestrator.domain.billing import money
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import Item, ItemState, Run
from orchestrator.services.context import Context
from orchestrator.services.follow_up import LedgerFollowView


def run_summary(ctx: Context, run: Run) -> dict[str, Any]:
    counts = ctx.ledger.item_counts(run.id)
    events = ctx.ledger.status_events(run.id)
    calls = ctx.ledger.call_counts(run.id)
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
        "items": {state.value: counts.get(state, 0) for state in ItemState},
        "steps": [
            {"key": step.key, "phase": step.phase.value, "ref": step.ref, "at": step.claimed_at.isoformat()}
            for step in ctx.ledger.steps(run.id)
        ],
        "status_history": [
            {
                "subject": event.subject,
                "status": event.code,
                "label": event.label,
                "at": event.observed_at.isoformat(),
            }
            for event in events
        ],
        "api_calls": [
            {"operation": operation, "outcome": outcome, "count": count}
            for (operation, outcome), count in sorted(calls.items())
        ],
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def _details(ctx: Context, run: Run) -> dict[str, Any]:
    """The provider's own facts about the run; nothing when it is not configured here."""
    try:
        provider = ctx.provider(run.provider)
    except ConfigurationError:  # reading the ledger must not need the tenant's settings
        return {}
    return dict(provider.summarize(run))


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
    "attempts",
    "last_error",
)


def report_rows(ctx: Context, run: Run) -> Iterator[dict[str, Any]]:
    """One row per invoice of the run, streamed."""
    for item in ctx.ledger.iter_items(run.id):
        yield report_row(item)


def report_row(item: Item) -> dict[str, Any]:
    invoice = item.invoice
    return {
        "invoice_id": invoice.invoice_id,
        "number": invoice.number,
        "party_id": invoice.party_id,
        "party_name": invoice.party_name,
        "amount": invoice.amount,
        "outcome": item.state.value,
        "reason": item.reason,
        "result_ref": item.result_ref,
        "rebill_ref": item.rebill_ref,
        "new_amount": item.new_amount,
        "attempts": item.attempts,
        "last_error": item.last_error,
    }


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
