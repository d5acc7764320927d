"""EnergyCAP under faults: workers killed mid-chunk, the broker lost, the replies of reverse and import
calls lost. A chunk is one write under one batch code, so whatever happens each chunk makes one batch,
each eligible bill one reversal, and the corrected bills one import.

Every scenario ends COMPLETED with the invariants of `verify`; REBILL_CHAOS_RESULTS=<file> appends
what was observed (JSON lines), as for the iMIS scenarios.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.run import ItemState, Run, RunState
from simulators.energycap import SeededPeriod
from tests.chaos.conftest import KillableRedis
from tests.chaos.test_chaos import kill_workers_at_random, ledger_record, waited_through_broker_loss
from tests.support.energycap import assert_reversed_once, batches_of, energycap, imports_of, seed_period
from tests.support.stack import Stack

pytestmark = pytest.mark.slow

CHUNK = "100"


def command(period: SeededPeriod, corrected: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--provider",
        "energycap",
        "--account-period",
        str(period.account_period),
        "--rebill-file",
        str(corrected),
        "--chunk-size",
        CHUNK,
        *extra,
    ]


def start(stack: Stack, period: SeededPeriod, corrected: Path) -> str:
    result = stack.cli(*command(period, corrected))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def verify(stack: Stack, period: SeededPeriod, run_id: str, scenario: str, **observed: Any) -> Run:
    """Completed; every eligible bill reversed once, in one batch per chunk; one import of every row;
    the ledger agreeing with the simulator bill by bill."""
    run = stack.wait_for(run_id, timeout=300)
    assert run.state is RunState.COMPLETED, run.reason
    counters = assert_reversed_once(stack, period, run)
    [imported] = imports_of(counters, run)
    assert imported["rows"] == imported["created"] == len(period.eligible_ids)
    assert list(batches_of(counters, run, imports=True).values()) == [1]
    items, calls = ledger_record(stack, run_id)
    state = energycap(stack)
    reversed_items = [item for item in items if item.state is ItemState.REVERSED]
    assert {int(item.invoice.invoice_id) for item in reversed_items} == set(period.eligible_ids)
    assert len(items) == len(period.bill_ids)
    for item in reversed_items:
        assert state.bills[int(item.result_ref or 0)].reversal_of_bill_id == int(item.invoice.invoice_id)
        assert item.rebill_ref is not None
    record = {
        "scenario": f"EnergyCAP: {scenario}",
        "backend": stack.backend,
        "bills": len(period.bill_ids),
        "eligible": len(period.eligible_ids),
        "chunks": len(batches_of(counters, run, imports=False)),
        "reverse_calls": len(
            [c for c in counters["reverse_calls"] if c["code"] in batches_of(counters, run, imports=False)]
        ),
        "settled_by_read": sum(1 for item in items if item.settled_by_read),
        "retried_items": sum(1 for item in items if item.attempts > 1),
        "api_calls": sum(calls.values()),
        "transient_calls": sum(n for (_, outcome), n in calls.items() if outcome == "transient"),
        "faults": counters["faults"],
        **observed,
    }
    destination = os.environ.get("REBILL_CHAOS_RESULTS")
    if destination:
        with open(destination, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    return run


def test_workers_killed_mid_chunk_three_times(chaos: Stack) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    period, corrected = seed_period(chaos, 3000)
    energycap(chaos).faults.update(latency_ms=300)  # a worker is killed while its reverse call is out
    chaos.start_worker()
    run_id = start(chaos, period, corrected)

    moments = kill_workers_at_random(chaos, run_id, rng, eligible=len(period.eligible_ids))

    verify(
        chaos, period, run_id, "workers SIGKILLed 3 times", kill_moments=[round(m, 2) for m in moments], rng_seed=seed
    )


def test_the_broker_killed_and_restarted_empty_mid_run(chaos: Stack, broker: KillableRedis) -> None:
    period, corrected = seed_period(chaos, 3000)
    energycap(chaos).faults.update(latency_ms=200)
    chaos.start_worker()
    run_id = waited_through_broker_loss(chaos, broker, command(period, corrected), eligible=len(period.eligible_ids))

    verify(chaos, period, run_id, "broker Redis killed, restarted empty")


def test_every_reply_of_reverse_and_import_lost(chaos: Stack) -> None:
    period, corrected = seed_period(chaos, 1000)
    energycap(chaos).faults.update(p_reply_lost=1.0, fault_operations=["bill.reverse", "import.bill"])
    chaos.start_worker()
    run_id = start(chaos, period, corrected)

    run = verify(chaos, period, run_id, "every reverse and import reply lost (applied, then 502)")
    counters = energycap(chaos).counters()
    chunks = batches_of(counters, run, imports=False)
    # Each chunk was sent once, its reply lost, and it was settled by reading its batch; so was the import.
    assert {code: counters["batch_code_attempts"][code] for code in chunks} == dict.fromkeys(chunks, 1)
    [imported] = imports_of(counters, run)
    assert counters["import_attempts"][imported["code"]] == 1
    container = chaos.container()
    try:
        assert all(item.settled_by_read for item in container.ledger.iter_items(run_id, states={ItemState.REVERSED}))
    finally:
        container.close()


def test_server_faults_and_lost_replies_at_random_on_reverse_and_import(chaos: Stack) -> None:
    period, corrected = seed_period(chaos, 1500)
    energycap(chaos).faults.update(
        latency_ms=5, p_reply_lost=0.3, p_500=0.2, p_503_html=0.1, fault_operations=["bill.reverse", "import.bill"]
    )
    chaos.start_worker()
    run_id = start(chaos, period, corrected)

    verify(chaos, period, run_id, "reverse and import: 30% replies lost, 20% 500, 10% 503 (not applied)")
    faults = energycap(chaos).counters()["faults"]
    assert faults.get("reply_lost", 0) > 0
