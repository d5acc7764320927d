"""Whole Aria runs through the CLI, a real Celery worker, real Redis, a real ledger and the Aria
simulator over HTTP: each eligible invoice of a bill run rebilled exactly once with the corrected
amounts, by the simulator's own counters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.run import Item, RunState
from simulators.aria import AriaFaults, AriaState, SeededRun
from tests.support.aria import assert_rebilled_once, corrected_amount, run_options, seed, write_corrections
from tests.support.stack import Stack


@pytest.fixture
def aria(stack: Stack) -> Iterator[AriaState]:
    state: AriaState = stack.platform("aria")
    yield state
    state.faults.replace(AriaFaults())


@pytest.fixture
def corrections(tmp_path: Path) -> Path:
    return write_corrections(tmp_path)


def rebill_run(stack: Stack, seeded: SeededRun, corrections: Path, *more: str) -> tuple[int, str, str]:
    """`rebill run --provider aria --bill-date D ... --wait`: (exit code, run id, output)."""
    result = stack.cli(
        "run", "--provider", "aria", "--bill-date", seeded.bill_date.isoformat(), *run_options(corrections, *more)
    )
    return result.exit_code, result.output.splitlines()[0].strip() if result.output else "", result.output


def items_of(stack: Stack, run_id: str) -> list[Item]:
    container = stack.container()
    try:
        return list(container.ledger.iter_items(run_id))
    finally:
        container.close()


def rebilled_once(stack: Stack, aria: AriaState, seeded: SeededRun, run_id: str, before: dict[str, Any]) -> None:
    run = stack.wait_for(run_id, timeout=300)
    assert run.state is RunState.COMPLETED, run.reason
    assert_rebilled_once(aria, seeded, items_of(stack, run_id), run_id=run_id, before=before)


@pytest.mark.parametrize("invoices", [60, pytest.param(2000, marks=pytest.mark.slow)])
def test_a_bill_run_is_rebilled_once_with_the_corrected_amounts(
    stack: Stack, aria: AriaState, corrections: Path, invoices: int
) -> None:
    seeded = seed(aria, invoices)
    before = aria.counters()
    code, run_id, output = rebill_run(stack, seeded, corrections, "--wait")

    assert code == 0, output
    rebilled_once(stack, aria, seeded, run_id, before)
    report = stack.cli("report", run_id, "--format", "jsonl")
    lines = [json.loads(line) for line in report.output.splitlines()]
    rebilled = [line for line in lines if line["outcome"] == "REVERSED"]
    assert len(rebilled) == len(seeded.eligible)
    assert all(line["rebill_ref"] and line["new_amount"] for line in rebilled)
    assert all(
        Decimal(line["difference"]) == Decimal(line["new_amount"]) - Decimal(line["amount"]) for line in rebilled
    )


def test_busy_billing_groups_and_lost_replies_are_retried_and_settled_exactly_once(
    stack: Stack, aria: AriaState, corrections: Path
) -> None:
    seeded = seed(aria, 50)
    aria.faults.update(p_busy=0.3, p_reply_lost=0.1, fault_operations=["gen_rb_m"])
    before = aria.counters()
    code, run_id, output = rebill_run(stack, seeded, corrections, "--max-attempts", "30", "--wait")

    assert code == 0, output
    rebilled_once(stack, aria, seeded, run_id, before)
    injected = aria.counters()["faults_injected"]
    assert injected.get("busy", 0) > before["faults_injected"].get("busy", 0)


def test_a_dry_run_shows_old_and_new_amounts_and_writes_nothing(
    stack: Stack, aria: AriaState, corrections: Path
) -> None:
    seeded = seed(aria, 40)
    before = aria.counters()
    code, _run_id, output = rebill_run(stack, seeded, corrections, "--dry-run", "--json")

    assert code == 0, output
    plan = json.loads(output[output.index("{") :])
    after = aria.counters()
    assert after["rebills_total"] == before["rebills_total"]
    assert after["dry_run_calls"] - before["dry_run_calls"] == len(seeded.eligible) + 1  # +1: the check at open
    with aria.lock:
        originals = [aria.invoices[number] for number in seeded.eligible]
        assert all(original.rb_no is None for original in originals)
        old = sum((original.amount for original in originals), Decimal("0"))
        new = sum((corrected_amount(original) for original in originals), Decimal("0"))
    assert (plan["to_reverse"], plan["previewed"]) == (len(seeded.eligible), len(seeded.eligible))
    assert (plan["amount_to_reverse"], plan["new_amount"], plan["difference"]) == (
        f"{old:.2f}",
        f"{new:.2f}",
        f"{new - old:.2f}",
    )
    assert plan["skipped"] == {
        reason: count
        for reason, count in {
            "voided": len(seeded.voided),
            "already_rebilled": len(seeded.rebilled),
            "paid": len(seeded.paid) + len(seeded.part_paid),
        }.items()
        if count
    }


def test_an_invoices_file_rebills_what_it_names(
    stack: Stack, aria: AriaState, corrections: Path, tmp_path: Path
) -> None:
    seeded = seed(aria, 30)
    named = [*seeded.eligible[:5], seeded.voided[0], seeded.paid[0]]
    listed = tmp_path / "invoices.txt"
    listed.write_text("\n".join(map(str, named)) + "\n")
    before = aria.counters()
    result = stack.cli("run", "--provider", "aria", "--invoices-file", str(listed), *run_options(corrections), "--wait")

    assert result.exit_code == 0, result.output
    run_id = result.output.splitlines()[0].strip()
    states = {item.invoice.invoice_id: (item.state.value, item.reason) for item in items_of(stack, run_id)}
    assert states == {
        **{str(number): ("REVERSED", None) for number in seeded.eligible[:5]},
        str(seeded.voided[0]): ("SKIPPED", "voided"),
        str(seeded.paid[0]): ("SKIPPED", "paid"),
    }
    rebills = aria.counters()["rebills"]
    assert {number: rebills.get(str(number), 0) for number in named} == {
        **dict.fromkeys(seeded.eligible[:5], 1),
        seeded.voided[0]: 0,
        seeded.paid[0]: 0,
    }
    assert aria.counters()["duplicate_attempts"] == before["duplicate_attempts"]


def test_corrections_that_name_no_line_are_refused_before_anything_starts(
    stack: Stack, aria: AriaState, tmp_path: Path
) -> None:
    seeded = seed(aria, 10)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("service,rate_per_unit\nNOT-SOLD,1.00\n")
    result = stack.cli("run", "--provider", "aria", "--bill-date", seeded.bill_date.isoformat(), *run_options(unknown))

    assert result.exit_code == 2
    assert "name no line of any invoice" in result.output
    assert "--allow-no-change" in result.output
