"""Whole EnergyCAP runs through the CLI, a real Celery worker, real Redis, a real ledger and the
EnergyCAP simulator over HTTP: chunks reversed once each, the corrected bills imported once,
kickouts reported and re-imported on retry."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.run import ItemState, ReasonCode, Run, RunState
from simulators.energycap import EnergyCapFaults, SeededPeriod
from tests.support.energycap import assert_reversed_once, batches_of, energycap, imports_of, seed_period
from tests.support.stack import Stack


@pytest.fixture(autouse=True)
def _clean_energycap_faults(stack: Stack) -> Iterator[None]:
    yield
    energycap(stack).faults.replace(EnergyCapFaults())


def run_waiting(stack: Stack, period: SeededPeriod, *args: str) -> tuple[int, Run, str]:
    """`rebill run --provider energycap --account-period P --wait ...`: (exit code, the run, output)."""
    result = stack.cli(
        "run", "--provider", "energycap", "--account-period", str(period.account_period), "--wait", *args
    )
    run_id = result.output.splitlines()[0].strip() if result.output else ""
    assert run_id, result.output
    return result.exit_code, stack.wait_for(run_id), result.output


def report(stack: Stack, run: Run) -> dict[str, dict[str, Any]]:
    result = stack.cli("report", run.id, "--format", "csv")
    assert result.exit_code == 0, result.output
    return {row["invoice_id"]: row for row in csv.DictReader(io.StringIO(result.output))}


def assert_rebilled(stack: Stack, period: SeededPeriod, run: Run) -> None:
    """Every eligible bill: reversed (its reversal bill kept) and rebilled by the import (its new bill kept)."""
    state = energycap(stack)
    lines = report(stack, run)
    for bill_id in period.eligible_ids:
        line = lines[str(bill_id)]
        assert line["outcome"] == ItemState.REVERSED.value
        assert state.bills[int(line["result_ref"])].reversal_of_bill_id == bill_id
        imported = state.bills[int(line["rebill_ref"])]
        original = state.bills[bill_id]
        assert (imported.account, imported.meters, imported.billing_period) == (
            original.account,
            original.meters,
            original.billing_period,
        )


def test_a_period_is_reversed_chunk_by_chunk_once_and_its_corrected_bills_imported_once(stack: Stack) -> None:
    period, corrected = seed_period(stack, 240)
    code, run, output = run_waiting(stack, period, "--rebill-file", str(corrected), "--chunk-size", "50")

    assert code == 0, output
    assert run.state is RunState.COMPLETED
    counters = assert_reversed_once(stack, period, run)
    [imported] = imports_of(counters, run)
    assert (imported["kind"], imported["status"]) == ("import", "Completed")
    assert imported["rows"] == imported["created"] == len(period.eligible_ids)
    assert batches_of(counters, run, imports=True) == {imported["code"]: 1}
    assert_rebilled(stack, period, run)
    skipped = {row["invoice_id"]: row["reason"] for row in report(stack, run).values() if row["outcome"] == "SKIPPED"}
    assert set(skipped) == {str(i) for i in (*period.void_ids, *period.reversed_ids, *period.reversal_ids)}
    assert {skipped[str(i)] for i in period.void_ids} == {"void"}


@pytest.mark.slow
def test_a_5000_bill_period_is_reversed_exactly_once_in_chunks_of_500(stack: Stack) -> None:
    period, corrected = seed_period(stack, 5000)
    code, run, output = run_waiting(stack, period, "--rebill-file", str(corrected))

    assert code == 0, output
    assert run.options.chunk_size == 500  # EnergyCAP's default
    counters = assert_reversed_once(stack, period, run)
    assert len(batches_of(counters, run, imports=False)) == -(-len(period.eligible_ids) // 500)
    assert all(len(call["ids"]) <= 500 for call in counters["reverse_calls"])
    [imported] = imports_of(counters, run)
    assert imported["created"] == len(period.eligible_ids)
    assert_rebilled(stack, period, run)


def test_kickouts_are_reported_then_reimported_on_retry(stack: Stack) -> None:
    period, corrected = seed_period(stack, 150)
    energycap(stack).faults.update(p_kickout=0.1)  # a row's first import only
    code, run, output = run_waiting(stack, period, "--rebill-file", str(corrected), "--chunk-size", "40")

    assert code == 1, output
    assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
    assert f"rebill retry {run.id} --reimport-kickouts" in (run.reason or "")
    [first] = imports_of(energycap(stack).counters(), run)
    assert first["kicked_out"] > 0
    kicked = {bill: line for bill, line in report(stack, run).items() if "kicked out" in line["reason"]}
    assert len(kicked) == first["kicked_out"]
    assert all(not line["rebill_ref"] for line in kicked.values())
    assert all("(simulated kickout)" in line["reason"] for line in kicked.values())

    retried = stack.cli("retry", run.id, "--reimport-kickouts", "--wait")

    assert retried.exit_code == 0, retried.output
    run = stack.wait_for(run.id)
    assert run.state is RunState.COMPLETED
    counters = assert_reversed_once(stack, period, run)
    first, again = imports_of(counters, run)
    assert (again["kind"], again["rows"], again["created"]) == ("kickout", first["kicked_out"], first["kicked_out"])
    assert set(batches_of(counters, run, imports=True).values()) == {1}
    assert_rebilled(stack, period, run)
    assert [step["key"] for step in stack.run_status(run.id)["steps"]] == ["import/I1", "import/I2"]


def test_without_corrected_bills_the_run_only_reverses_and_says_so(stack: Stack) -> None:
    period, _ = seed_period(stack, 80)
    code, run, output = run_waiting(stack, period)

    assert code == 0, output
    counters = assert_reversed_once(stack, period, run)
    assert imports_of(counters, run) == []
    assert stack.run_status(run.id)["details"]["rebill"].startswith("reverse-only")


def test_a_dry_run_lists_the_chunks_and_the_import_and_writes_nothing(stack: Stack) -> None:
    period, corrected = seed_period(stack, 120)
    before = energycap(stack).counters()
    result = stack.cli(
        "run",
        "--account-period",
        str(period.account_period),
        "--rebill-file",
        str(corrected),
        "--chunk-size",
        "50",
        "--dry-run",
        "--json",
    )

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["to_reverse"] == len(period.eligible_ids)
    reverse, rebill = plan["follow_up"]
    assert [chunk["bills"] for chunk in reverse["chunks"]] == [50, 50, len(period.eligible_ids) - 100]
    assert rebill["rows"] == len(period.eligible_ids)
    after = energycap(stack).counters()
    for counter in ("reverse_calls", "imports", "batches", "refused_writes"):
        assert after[counter] == before[counter], counter


def test_a_corrected_bills_file_with_a_bad_line_is_refused_before_the_run_exists(stack: Stack, tmp_path: Path) -> None:
    period, corrected = seed_period(stack, 30)
    lines = corrected.read_text().splitlines()
    lines[2] = lines[2].replace(lines[2].split(",")[5], "12,50", 1)  # a comma in the cost: one cell too many
    bad = tmp_path / "corrected.csv"
    bad.write_text("\n".join(lines) + "\n")
    runs_before = stack.run_ids()

    result = stack.cli("run", "--account-period", str(period.account_period), "--rebill-file", str(bad))

    assert result.exit_code == 2, result.output
    assert f"{bad} line 3:" in result.output
    assert stack.run_ids() == runs_before
