"""What every whole Salesforce run must end with, by the simulator's own counters and the ledger."""

from __future__ import annotations

from typing import Any

from orchestrator.domain.run import ItemState, Run, RunState
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.support.stack import Stack


def items_of(stack: Stack, run_id: str) -> dict[str, Any]:
    container = stack.container()
    try:
        return {item.invoice.invoice_id: item for item in container.ledger.iter_items(run_id)}
    finally:
        container.close()


def released_schedules(org: SalesforceState, seeded: SeededRun) -> set[str]:
    return {line.schedule_id for invoice in seeded.eligible_ids for line in org.invoice(invoice).lines}


def assert_voided_and_generated_once(
    stack: Stack, org: SalesforceState, seeded: SeededRun, run_id: str, *, timeout: float = 120
) -> Run:
    """Every eligible invoice voided once, nothing else voided, each released schedule on exactly one new
    invoice, and the ledger's verdicts and references as the org says."""
    run = stack.wait_for(run_id, timeout=timeout)
    assert run.state is RunState.COMPLETED, run.reason
    counters = org.counters()
    eligible = set(seeded.eligible_ids)
    assert {i: n for i, n in counters["voids"].items() if i in seeded.expected} == dict.fromkeys(eligible, 1)
    assert counters["duplicate_void_attempts"] == 0
    released = released_schedules(org, seeded)
    regenerated = counters["invoices_per_regenerated_schedule"]
    assert {s: regenerated.get(s, 0) for s in released} == dict.fromkeys(released, 1)
    assert counters["duplicate_generates"] == 0
    calls = [c for c in counters["generate_calls"] if set(c["billingScheduleIds"]) <= released]
    assert all(len(call["billingScheduleIds"]) <= 200 for call in calls)
    assert all(call["correlationId"].startswith(f"rebill/{run_id}/generate/") for call in calls)
    items = items_of(stack, run_id)
    assert {i: (item.reason if item.state is ItemState.SKIPPED else None) for i, item in items.items()} == (
        seeded.expected
    )
    for invoice in eligible:
        item = items[invoice]
        assert item.state is ItemState.REVERSED
        assert org.invoice(invoice).status == "Voided"
        assert item.rebill_ref, invoice
        assert org.invoice(item.rebill_ref.split(" ")[0]).status == "Posted"
    return run
