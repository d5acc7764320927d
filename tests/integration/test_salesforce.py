"""Whole Salesforce runs through the CLI, a real Celery worker, real Redis, a real ledger and the Salesforce
simulator over HTTP: each eligible invoice voided once, each released billing schedule generated
again once (by the simulator's own counters), skips with the contract's reasons."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest

from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.support.salesforce import assert_voided_and_generated_once, released_schedules
from tests.support.stack import Stack

PAUSED = r"paused: API usage \d+% of the daily allocation \(\d+/\d+\); resumes by itself below 90%"
#: Walks fast enough for a test, slow enough that the run really watches them.
QUICK = {"void_seconds": 0.3, "generate_seconds": 0.5}


@pytest.fixture
def org(stack: Stack) -> Iterator[SalesforceState]:
    state: SalesforceState = stack.platform("salesforce")
    state.faults.replace(SalesforceFaults(**QUICK))
    yield state
    state.faults.replace(SalesforceFaults())
    state.set_usage(0)


def seed(org: SalesforceState, invoices: int) -> SeededRun:
    return org.seed_run(invoices=invoices, seed=uuid.uuid4().int % 1_000_000)


def run_waiting(stack: Stack, *args: str) -> tuple[int, str, str]:
    result = stack.cli("run", "--provider", "salesforce", "--wait", *args)
    run_id = result.output.splitlines()[0].strip() if result.output else ""
    return result.exit_code, run_id, result.output


def test_a_batch_run_voids_each_eligible_invoice_once_and_generates_each_schedule_once(
    stack: Stack, org: SalesforceState
) -> None:
    seeded = seed(org, 300)
    code, run_id, output = run_waiting(stack, "--invoice-batch-run", seeded.invoice_batch_run_id)

    assert code == 0, output
    assert_voided_and_generated_once(stack, org, seeded, run_id)


@pytest.mark.slow
def test_a_2000_invoice_batch_run_with_schedule_errors_recovered(stack: Stack, org: SalesforceState) -> None:
    # About 35 of the 3,400 schedules end in Error: each recovery is its own request and follow-up round.
    org.faults.update(p_schedule_error=0.01)
    seeded = seed(org, 2000)
    code, run_id, output = run_waiting(stack, "--invoice-batch-run", seeded.invoice_batch_run_id)

    assert code == 0, output
    assert_voided_and_generated_once(stack, org, seeded, run_id)
    counters = org.counters()
    assert counters["faults"]["schedule_error"] >= 1
    assert counters["recoveries"]


def test_lost_replies_on_void_and_generate_are_settled_by_reading(stack: Stack, org: SalesforceState) -> None:
    org.faults.update(p_reply_lost=0.15, fault_operations=["void", "generate"])
    seeded = seed(org, 200)
    code, run_id, output = run_waiting(stack, "--invoice-batch-run", seeded.invoice_batch_run_id)

    assert code == 0, output
    assert_voided_and_generated_once(stack, org, seeded, run_id)
    assert org.counters()["faults"]["reply_lost"] >= 1


def test_a_run_that_reaches_the_allocation_pauses_with_its_reason_and_resumes(
    stack: Stack, org: SalesforceState
) -> None:
    seeded = seed(org, 120)
    org.faults.update(daily_allocation=org.usage().used + 60)  # 90 % is reached after a few voids
    started = stack.cli("run", "--provider", "salesforce", "--invoice-batch-run", seeded.invoice_batch_run_id)
    assert started.exit_code == 0, started.output
    run_id = started.output.splitlines()[0].strip()

    notice = _wait_for_notice(stack, run_id)
    assert re.fullmatch(PAUSED, notice), notice
    org.faults.update(daily_allocation=1_000_000)  # a new day: usage falls below the threshold

    assert_voided_and_generated_once(stack, org, seeded, run_id)
    assert stack.wait_for(run_id).notice is None


def test_a_dry_run_shows_the_generate_calls_and_writes_nothing(stack: Stack, org: SalesforceState) -> None:
    seeded = seed(org, 40)
    result = stack.cli(
        "run", "--provider", "salesforce", "--invoice-batch-run", seeded.invoice_batch_run_id, "--dry-run", "--json"
    )

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["to_reverse"] == len(seeded.eligible_ids)
    assert [call["key"] for call in plan["follow_up"]] == ["generate/0001"]
    assert set(plan["follow_up"][0]["billingScheduleIds"]) == released_schedules(org, seeded)
    assert plan["details"]["target_date"] == plan["follow_up"][0]["targetDate"]
    counters = org.counters()
    assert not set(counters["voids"]) & set(seeded.invoice_ids)
    assert not [c for c in counters["generate_calls"] if c["correlationId"].startswith(f"rebill/{plan['run_id']}")]


def _wait_for_notice(stack: Stack, run_id: str, timeout: float = 60) -> str:
    container = stack.container()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = container.ledger.get_run(run_id)
            assert run is not None
            if run.notice:
                return run.notice
            assert not run.state.is_final, f"run {run_id} ended {run.state.value} without pausing: {run.reason}"
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} never paused")
    finally:
        container.close()
