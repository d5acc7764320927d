"""Exactly-once on Aria under faults: killed workers, a lost broker, lost replies and busy billing groups.

Every scenario ends with the run COMPLETED, every eligible invoice of the bill run rebilled exactly
once with the corrected amounts, no second gen_rb_m even attempted (Aria would have answered 3097),
nothing paid, voided or rebilled before touched, and the ledger agreeing with the simulator.
Set REBILL_CHAOS_RESULTS=<file> to append each scenario's observed counts (JSON lines).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.run import RunState
from simulators.aria import AriaState, SeededRun
from tests.chaos.conftest import KillableRedis, record_scenario
from tests.support.aria import assert_rebilled_once, run_options, seed, wait_until_rebilled, write_corrections
from tests.support.stack import Stack

pytestmark = pytest.mark.slow


def aria_of(stack: Stack) -> AriaState:
    state: AriaState = stack.platform("aria")
    return state


def run_command(seeded: SeededRun, corrections: Path, *more: str) -> list[str]:
    return [
        "run", "--provider", "aria", "--bill-date", seeded.bill_date.isoformat(), *run_options(corrections, *more)
    ]  # fmt: skip


@dataclass
class BillRun:
    """A scenario's bill run, its corrections, and the simulator's counters before it started."""

    state: AriaState
    seeded: SeededRun
    corrections: Path
    before: dict[str, Any]


def bill_run(stack: Stack, directory: Path, invoices: int, **faults: Any) -> BillRun:
    """A bill run on the simulator (with these faults), and a worker to rebill it."""
    state = aria_of(stack)
    state.faults.update(latency_ms=2, **faults)
    seeded = seed(state, invoices)
    corrections = write_corrections(directory)
    before = state.counters()
    stack.start_worker()
    return BillRun(state, seeded, corrections, before)


def start(stack: Stack, bill: BillRun) -> str:
    result = stack.cli(*run_command(bill.seeded, bill.corrections))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def verify(stack: Stack, bill: BillRun, run_id: str, scenario: str, **seen: Any) -> None:
    """The invariants every scenario ends with, and the record of what was seen."""
    run = stack.wait_for(run_id, timeout=300)
    assert run.state is RunState.COMPLETED, run.reason
    container = stack.container()
    try:
        items = list(container.ledger.iter_items(run_id))
        calls = container.ledger.call_counts(run_id)
    finally:
        container.close()
    seeded, before = bill.seeded, bill.before
    counters = assert_rebilled_once(bill.state, seeded, items, run_id=run_id, before=before)
    record = {
        "scenario": f"aria: {scenario}",
        "backend": stack.backend,
        "invoices": len(seeded.invoice_nos),
        "eligible": len(seeded.eligible),
        "rebilled_once": len(seeded.eligible),
        "second_rebills_attempted": counters["duplicate_attempts"] - before["duplicate_attempts"],
        "settled_by_read": sum(1 for item in items if item.settled_by_read),
        "retried_items": sum(1 for item in items if item.attempts > 1),
        "api_calls": sum(calls.values()),
        "transient_calls": sum(n for (_, outcome), n in calls.items() if outcome == "transient"),
        "busy_refusals": counters["busy_refusals"] - before["busy_refusals"],
        "faults_injected": counters["faults_injected"],
        "responses": counters["responses"],
        **seen,
    }
    record_scenario(record)


def test_workers_killed_at_random_moments_three_times(chaos: Stack, tmp_path: Path) -> None:
    rng_seed = random.randrange(1_000_000)
    rng = random.Random(rng_seed)
    run = bill_run(chaos, tmp_path, 2000)
    run_id = start(chaos, run)

    moments = sorted(rng.uniform(0.05, 0.85) for _ in range(3))
    for moment in moments:
        wait_until_rebilled(run.state, run.seeded, int(moment * len(run.seeded.eligible)))
        chaos.workers[-1].kill()
        time.sleep(rng.uniform(0.0, 1.0))
        chaos.start_worker()

    verify(chaos, run, run_id, "workers SIGKILLed 3 times", kill_moments=moments, rng_seed=rng_seed)


def test_the_broker_killed_and_restarted_empty_mid_run(chaos: Stack, broker: KillableRedis, tmp_path: Path) -> None:
    run = bill_run(chaos, tmp_path, 2000)
    waiting = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.entrypoints.cli", *run_command(run.seeded, run.corrections, "--wait")],
        env={**os.environ, **chaos.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert waiting.stdout is not None
    run_id = waiting.stdout.readline().strip()
    wait_until_rebilled(run.state, run.seeded, len(run.seeded.eligible) // 3)

    broker.kill()
    time.sleep(1.0)
    broker.restart_empty()

    output, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, output  # `rebill run --wait` followed the run through the outage
    verify(chaos, run, run_id, "broker Redis killed, restarted empty")
    assert all(worker.alive() for worker in chaos.workers)


def test_lost_replies_timeouts_busy_groups_and_unexpected_errors(chaos: Stack, tmp_path: Path) -> None:
    run = bill_run(
        chaos,
        tmp_path,
        1000,
        p_reply_lost=0.04,  # applied, then 502 (later: applied, then no answer past the client timeout)
        reply_lost_mode="502",
        hang_seconds=2.5,  # past the 2 s client timeout
        p_500=0.02,  # an HTML 500 page, nothing applied
        p_busy=0.05,  # 3108, nothing applied
        p_unexpected=0.02,  # 1001, applied
        fault_operations=["gen_rb_m"],
    )
    run_id = start(chaos, run)
    wait_until_rebilled(run.state, run.seeded, len(run.seeded.eligible) // 2)
    run.state.faults.update(reply_lost_mode="hang")

    verify(chaos, run, run_id, "lost replies (502 and timeout), HTML 500, 3108 busy, 1001")
    injected = run.state.counters()["faults_injected"]
    assert {"reply_lost", "500", "busy", "unexpected"} <= set(injected), injected
