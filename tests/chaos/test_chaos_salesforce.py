"""Exactly-once on Salesforce under faults: killed workers, a lost broker, lost replies on void and generate.

Every scenario ends as a calm run does (`tests/support/salesforce.py`): each eligible invoice voided
once, nothing else voided, each released billing schedule on exactly one new invoice, no duplicate
generate, and the ledger agreeing with the org.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid

import pytest

from orchestrator.domain.run import ItemState, RunState
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.chaos.conftest import KillableRedis
from tests.chaos.test_chaos import reversed_at_least, wait_until
from tests.support.salesforce import assert_voided_and_generated_once
from tests.support.stack import Stack

pytestmark = pytest.mark.slow


def seeded_org(stack: Stack, invoices: int, **faults: object) -> tuple[SalesforceState, SeededRun]:
    org: SalesforceState = stack.platform("salesforce")
    org.faults.update(latency_ms=2, void_seconds=0.5, generate_seconds=1.0, **faults)
    return org, org.seed_run(invoices=invoices, seed=uuid.uuid4().int % 1_000_000)


def start(stack: Stack, seeded: SeededRun) -> str:
    result = stack.cli("run", "--provider", "salesforce", "--invoice-batch-run", seeded.invoice_batch_run_id)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_workers_killed_while_voiding_and_while_generating(chaos: Stack) -> None:
    rng = random.Random(random.randrange(1_000_000))
    org, seeded = seeded_org(chaos, 1500)
    chaos.start_worker()
    run_id = start(chaos, seeded)

    for share in sorted(rng.uniform(0.1, 0.8) for _ in range(2)):
        target = int(share * len(seeded.eligible_ids))
        wait_until(chaos, run_id, reversed_at_least(target))
        chaos.workers[-1].kill()
        time.sleep(rng.uniform(0.0, 1.0))
        chaos.start_worker()
    wait_until(chaos, run_id, lambda run, _counts: run.state in (RunState.REBILLING, RunState.POLLING), timeout=300)
    chaos.workers[-1].kill()  # in the follow-up: voids watched, generate calls going out
    chaos.start_worker()

    assert_voided_and_generated_once(chaos, org, seeded, run_id, timeout=300)


def test_the_broker_killed_and_restarted_empty_mid_run(chaos: Stack, broker: KillableRedis) -> None:
    org, seeded = seeded_org(chaos, 1500)
    chaos.start_worker()
    waiting = subprocess.Popen(
        [
            sys.executable, "-m", "orchestrator.entrypoints.cli", "run", "--provider", "salesforce",
            "--invoice-batch-run", seeded.invoice_batch_run_id, "--wait",
        ],
        env={**os.environ, **chaos.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert waiting.stdout is not None
    run_id = waiting.stdout.readline().strip()
    third = len(seeded.eligible_ids) // 3
    wait_until(chaos, run_id, lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= third)

    broker.kill()
    time.sleep(1.0)
    broker.restart_empty()

    output, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, output
    assert_voided_and_generated_once(chaos, org, seeded, run_id, timeout=300)
    assert all(worker.alive() for worker in chaos.workers)


def test_lost_replies_on_void_and_generate_throttling_and_expiring_sessions(chaos: Stack) -> None:
    org, seeded = seeded_org(
        chaos,
        1000,
        p_reply_lost=0.05,
        p_429=0.03,  # Salesforce's 403 REQUEST_LIMIT_EXCEEDED (concurrency)
        p_503_html=0.02,
        token_ttl_seconds=20,
        p_schedule_error=0.02,  # about 35 schedules in Error, each recovered in a round of its own
    )
    chaos.start_worker()
    run_id = start(chaos, seeded)

    assert_voided_and_generated_once(chaos, org, seeded, run_id, timeout=300)
    counters = org.counters()
    assert counters["faults"]["reply_lost"] >= 1
    assert {"403", "502", "503"} <= set(counters["responses"])
