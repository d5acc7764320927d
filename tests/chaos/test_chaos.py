"""Exactly-once under faults: killed workers, a lost broker, lost replies, a killed coordinator,
a poisoned invoice, two operators starting the same run, and the broker restarted while the run
rebills or polls.

Every scenario ends with every eligible invoice reversed exactly once, no second reversal even
attempted, nothing paid touched, at most one rebill, and the run's ledger agreeing with the
simulator. Set REBILL_CHAOS_RESULTS=<file> to append each scenario's observed counts (JSON lines),
from which docs/reliability.md is written.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orchestrator.domain.run import Item, ItemState, ReasonCode, Run, RunState
from simulators.imis.seeding import SeededBilling
from tests.chaos.conftest import CHAOS_ENV, KillableRedis, record_scenario
from tests.support.databases import POSTGRES_ENV, scratch_postgres_schema
from tests.support.proxy import TcpProxy
from tests.support.stack import Stack, assert_exactly_once, running_stack

pytestmark = pytest.mark.slow


def start(stack: Stack, billing: SeededBilling, *args: str) -> str:
    result = stack.cli("run", "--billing-log", billing.original_key, *args)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def wait_until(
    stack: Stack, run_id: str, condition: Callable[[Run, dict[ItemState, int]], bool], timeout: float = 120
) -> None:
    container = stack.container()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = container.ledger.get_run(run_id)
            assert run is not None
            if condition(run, container.ledger.item_counts(run_id)):
                return
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s")
    finally:
        container.close()


def reversed_at_least(count: int) -> Callable[[Run, dict[ItemState, int]], bool]:
    return lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= count


def kill_workers_at_random(stack: Stack, run_id: str, rng: random.Random, *, eligible: int) -> list[float]:
    """SIGKILL the newest worker three times, each once a random share of the `eligible` items is
    reversed, starting another after a random pause; the shares it struck at."""
    moments = sorted(rng.uniform(0.05, 0.85) for _ in range(3))
    for moment in moments:
        wait_until(stack, run_id, reversed_at_least(int(moment * eligible)))
        stack.workers[-1].kill()
        time.sleep(rng.uniform(0.0, 1.0))
        stack.start_worker()
    return moments


def waited_through_broker_loss(stack: Stack, broker: KillableRedis, args: list[str], *, eligible: int) -> str:
    """`rebill ARGS --wait` in a process of its own, the broker killed and restarted empty once a third
    of the `eligible` items is reversed: `--wait` follows the run through the outage, the workers live.
    Returns the run id."""
    waiting = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.entrypoints.cli", *args, "--wait"],
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert waiting.stdout is not None
    run_id = waiting.stdout.readline().strip()
    wait_until(stack, run_id, reversed_at_least(eligible // 3))

    broker.kill()
    time.sleep(1.0)
    broker.restart_empty()

    output, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, output
    assert all(worker.alive() for worker in stack.workers)
    return run_id


def ledger_record(stack: Stack, run_id: str) -> tuple[list[Item], dict[tuple[str, str], int]]:
    """The run's items and its API calls counted by (operation, outcome), as the ledger holds them."""
    container = stack.container()
    try:
        return list(container.ledger.iter_items(run_id)), container.ledger.call_counts(run_id)
    finally:
        container.close()


def verify(stack: Stack, billing: SeededBilling, run_id: str, scenario: str, **observed: Any) -> None:
    """The invariants every scenario ends with, and the record of what was seen."""
    run = stack.wait_for(run_id, timeout=300)
    counters = assert_exactly_once(stack, billing, run)
    items, calls = ledger_record(stack, run_id)
    by_state: dict[ItemState, set[str]] = {}
    for item in items:
        by_state.setdefault(item.state, set()).add(item.invoice.invoice_id)
    assert len(items) == len({item.invoice.invoice_id for item in items}) == len(billing.invoice_ids)
    assert by_state.get(ItemState.REVERSED, set()) == set(billing.open_invoice_ids)
    assert by_state.get(ItemState.SKIPPED, set()) == set(billing.invoice_ids) - set(billing.open_invoice_ids)
    mine = set(billing.invoice_ids)
    reversals = {k: v for k, v in counters["reversals"].items() if k in mine}
    rebills = [r for r in counters["rebills"] if r["original_key"] == billing.original_key]
    assert len(rebills) == 1
    record = {
        "scenario": scenario,
        "backend": stack.backend,
        "invoices": len(billing.invoice_ids),
        "eligible": len(billing.open_invoice_ids),
        "reversed_once": sum(1 for v in reversals.values() if v == 1),
        "reversed_twice_or_more": sum(1 for v in reversals.values() if v > 1),
        "second_reversals_refused": counters["refused_second_reversals"],
        "paid_touched": len((mine - set(billing.open_invoice_ids)) & set(reversals)),
        "rebills": len(rebills),
        "settled_by_read": sum(1 for item in items if item.settled_by_read),
        "retried_items": sum(1 for item in items if item.attempts > 1),
        "api_calls": sum(calls.values()),
        "transient_calls": sum(n for (_, outcome), n in calls.items() if outcome == "transient"),
        "statuses": [int(s) for s in _statuses(stack, run_id)],
        "tokens_issued": counters["tokens_issued"],
        "responses": counters["responses"],
        **observed,
    }
    record_scenario(record)


def _statuses(stack: Stack, run_id: str) -> list[int]:
    container = stack.container()
    try:
        return [int(event.code) for event in container.ledger.status_events(run_id)]
    finally:
        container.close()


def test_workers_killed_at_random_moments_three_times(chaos: Stack) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    chaos.state.faults.update(latency_ms=2)
    billing = chaos.seed(3000)
    chaos.start_worker()
    run_id = start(chaos, billing)

    moments = kill_workers_at_random(chaos, run_id, rng, eligible=len(billing.open_invoice_ids))
    verify(
        chaos, billing, run_id, "workers SIGKILLed 3 times", kill_moments=[round(m, 2) for m in moments], rng_seed=seed
    )


def test_the_broker_killed_and_restarted_empty_mid_run(chaos: Stack, broker: KillableRedis) -> None:
    chaos.state.faults.update(latency_ms=2)
    billing = chaos.seed(3000)
    chaos.start_worker()
    run_id = waited_through_broker_loss(
        chaos, broker, ["run", "--billing-log", billing.original_key], eligible=len(billing.open_invoice_ids)
    )
    verify(chaos, billing, run_id, "broker Redis killed, restarted empty")


def test_lost_replies_throttling_maintenance_pages_and_expiring_tokens(chaos: Stack) -> None:
    chaos.state.faults.update(
        latency_ms=2,
        p_reply_lost=0.03,
        reply_lost_mode="502",
        p_429=0.03,
        retry_after_seconds=1,
        p_503_html=0.02,
        p_hang=0.002,
        hang_seconds=2.5,  # past the 2 s client timeout
        token_lifetime_seconds=30,
    )
    billing = chaos.seed(1500)
    chaos.start_worker()
    run_id = start(chaos, billing)
    # Half the lost replies as 502s, the other half as timeouts after the change was applied.
    half = len(billing.open_invoice_ids) // 2
    wait_until(chaos, run_id, lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= half)
    chaos.state.faults.update(reply_lost_mode="hang")

    verify(chaos, billing, run_id, "lost replies (502 and timeout), 429, HTML 503, hangs, 30 s tokens")
    counters = chaos.counters()
    assert counters["tokens_issued"] >= 2  # the token expired and was replaced mid-run
    assert {"429", "502", "503", "504"} <= set(counters["responses"])


def test_the_coordinator_killed_mid_planning_resumes_without_duplicate_rows(chaos: Stack) -> None:
    chaos.state.faults.update(latency_ms=3, page_size_cap=10)
    billing = chaos.seed(3000)
    chaos.start_worker()
    run_id = start(chaos, billing)
    wait_until(chaos, run_id, lambda run, _counts: run.invoice_count >= 900)

    chaos.workers[-1].kill()
    container = chaos.container()
    run_at_kill = container.ledger.get_run(run_id)
    assert run_at_kill is not None
    planned_when_killed = run_at_kill.invoice_count
    container.close()
    assert planned_when_killed < len(billing.invoice_ids)
    chaos.start_worker()

    verify(chaos, billing, run_id, "coordinator killed mid-planning", planned_when_killed=planned_when_killed)


def test_an_invoice_that_always_fails_blocks_the_rebill_until_retried(chaos: Stack) -> None:
    chaos.state.faults.update(latency_ms=2)
    billing = chaos.seed(500)
    poisoned = billing.open_invoice_ids[len(billing.open_invoice_ids) // 2]
    chaos.state.faults.update(fail_invoices={poisoned: "500"})
    chaos.start_worker()
    run_id = start(chaos, billing)

    stopped = chaos.wait_for(run_id, timeout=180)
    assert (stopped.state, stopped.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS)
    assert not [r for r in chaos.counters()["rebills"] if r["original_key"] == billing.original_key]
    assert poisoned not in chaos.counters()["reversals"]

    chaos.state.faults.update(fail_invoices={poisoned: None})
    result = chaos.cli("retry", run_id)
    assert result.exit_code == 0, result.output

    verify(chaos, billing, run_id, "one invoice always failing (500), then retried", poisoned=poisoned)


def test_two_runs_started_at_once_make_one_run(chaos: Stack) -> None:
    billing = chaos.seed(300)
    chaos.start_worker()
    command = [sys.executable, "-m", "orchestrator.entrypoints.cli", "run", "--billing-log", billing.original_key]
    env = {**os.environ, **chaos.env}
    both = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in both]
    results = [(p.returncode, out, err) for p, (out, err) in zip(both, outputs, strict=True)]

    assert sorted(code for code, _, _ in results) == [0, 2]
    [(_, run_id, _)] = [r for r in results if r[0] == 0]
    [(_, _, refusal)] = [r for r in results if r[0] == 2]
    assert "already taken by run" in refusal
    assert len(refusal.strip().splitlines()) == 1

    verify(chaos, billing, run_id.strip(), "two `rebill run` at once")


# Leases and lost-message times as long as in production: only the heartbeat can explain a quick recovery.
LONG_LEASES = {"REBILL_LEASE_SECONDS": "120", "REBILL_LOST_MESSAGE_SECONDS": "120", "REBILL_HEARTBEAT_SECONDS": "1"}


def _declared_dead(stack: Stack) -> list[str]:
    return [line for worker in stack.workers for line in worker.tail(400).splitlines() if "declared dead" in line]


def test_a_killed_worker_is_taken_over_at_once_not_after_its_lease(chaos: Stack) -> None:
    chaos.state.faults.update(latency_ms=5)
    billing = chaos.seed(1200)
    victim = chaos.start_worker(**LONG_LEASES, REBILL_WORKER_DEAD_AFTER_SECONDS="3")
    run_id = start(chaos, billing)
    wait_until(
        chaos, run_id, lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= len(billing.open_invoice_ids) // 3
    )
    victim.kill()
    killed_at = time.monotonic()
    chaos.start_worker(**LONG_LEASES, REBILL_WORKER_DEAD_AFTER_SECONDS="3")

    run = chaos.wait_for(run_id, timeout=110)  # its claims' leases alone would hold them 120 s
    recovered_in = time.monotonic() - killed_at

    assert run.state is RunState.COMPLETED
    assert any("declared dead" in line for line in _declared_dead(chaos))
    verify(chaos, billing, run_id, "worker SIGKILLed, taken over by heartbeat", recovered_in_s=round(recovered_in, 1))


@pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV),
    reason="PostgreSQL only: on SQLite a process frozen while writing holds the one write lock and every "
    "other writer waits until it thaws (docs/reliability.md, known limits)",
)
def test_a_frozen_worker_loses_its_claims_and_writes_nothing_once_thawed(chaos: Stack) -> None:
    chaos.state.faults.update(latency_ms=20)
    billing = chaos.seed(600)
    frozen = chaos.start_worker(**LONG_LEASES, REBILL_WORKER_DEAD_AFTER_SECONDS="3")
    run_id = start(chaos, billing, "--chunk-size", "10")
    wait_until(chaos, run_id, lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= 60)
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        chaos.start_worker(**LONG_LEASES, REBILL_WORKER_DEAD_AFTER_SECONDS="3")
        wait_until(chaos, run_id, lambda _run, _counts: bool(_declared_dead(chaos)), timeout=60)
        wait_until(chaos, run_id, lambda _run, counts: counts.get(ItemState.REVERSED, 0) >= 300, timeout=120)
    finally:
        frozen.process.send_signal(signal.SIGCONT)  # thawed mid-run: it must not send what others took

    verify(chaos, billing, run_id, "worker SIGSTOPped past its heartbeat, then SIGCONTed")
    assert "was declared dead while silent and is back" in frozen.tail(400)


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason="a PostgreSQL scenario (REBILL_TEST_DATABASE_URL)")
def test_the_ledger_cut_off_and_refusing_connections_mid_run(broker: KillableRedis, tmp_path: Path) -> None:
    """Every ledger connection terminated three times, then the database unreachable for 20 s: the
    workers survive, nothing is lost or done twice, and the run completes by itself."""
    admin = create_engine(os.environ[POSTGRES_ENV].replace("postgresql://", "postgresql+psycopg://", 1))
    application = f"rebill-chaos-{uuid.uuid4().hex[:8]}"
    with scratch_postgres_schema(os.environ[POSTGRES_ENV]) as url:
        target = make_url(url)
        with TcpProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
            proxied = target.set(host="127.0.0.1", port=proxy.port).update_query_dict({"application_name": application})
            env = {
                **CHAOS_ENV,
                "REBILL_BROKER_URL": broker.url,
                "REBILL_DATABASE_URL": proxied.render_as_string(hide_password=False),
            }
            with running_stack("services", tmp_path / "stack", worker=False, **env) as stack:
                stack.state.faults.update(latency_ms=5)
                billing = stack.seed(1500)
                stack.start_worker()
                run_id = start(stack, billing)
                wait_until(stack, run_id, lambda _r, counts: counts.get(ItemState.REVERSED, 0) >= 250)
                for _ in range(3):
                    with admin.begin() as conn:
                        conn.execute(
                            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"),
                            {"a": application},
                        )
                    time.sleep(0.5)
                wait_until(stack, run_id, lambda _r, counts: counts.get(ItemState.REVERSED, 0) >= 700)
                proxy.close()
                cut = proxy.cut()
                time.sleep(20)
                proxy.open()

                verify(stack, billing, run_id, "ledger connections terminated 3x, then refused for 20 s", cut=cut)
                assert all(worker.alive() for worker in stack.workers)
    admin.dispose()


@pytest.mark.parametrize(
    ("broker", "phase"),
    [(True, RunState.POLLING), (True, RunState.REBILLING), (False, RunState.REBILLING)],
    indirect=["broker"],
    ids=["with-data-while-polling", "with-data-while-rebilling", "empty-while-rebilling"],
)
def test_the_broker_restarted_while_rebilling_or_polling(chaos: Stack, broker: KillableRedis, phase: RunState) -> None:
    """Workers holding a countdown message (the next poll, a throttled rebill) when the broker goes away
    live on (they used to stop: orchestrator/adapters/broker/redis_transport.py), the rebill is sent
    once, and polling resumes."""
    chaos.state.faults.update(latency_ms=2, task_step_seconds=6)  # the BillingLog walks slowly: POLLING lasts
    if phase is RunState.REBILLING:
        # The tenant throttles the rebill until the broker is back: the run waits in REBILLING, its
        # next attempt a countdown message held by the worker.
        chaos.state.faults.update(p_429=1.0, retry_after_seconds=2, fault_operations=["TaskDefinition.execute"])
    billing = chaos.seed(200)
    chaos.start_worker()
    run_id = start(chaos, billing, "--poll-interval", "1")
    if phase is RunState.REBILLING:
        wait_until(chaos, run_id, lambda run, _counts: run.state is phase and "429" in chaos.counters()["responses"])
    else:
        wait_until(chaos, run_id, lambda run, _counts: run.state is phase and run.last_status_change_at is not None)

    broker.kill()
    container = chaos.container()
    run_at_kill = container.ledger.get_run(run_id)
    assert run_at_kill is not None
    state_when_killed = run_at_kill.state
    container.close()
    time.sleep(4.0)
    broker.start()
    chaos.state.faults.update(p_429=0.0, fault_operations=None)

    assert state_when_killed is phase
    chaos.wait_for(run_id, timeout=120)
    assert all(worker.alive() for worker in chaos.workers)
    data = "with" if broker.persistent else "without"
    verify(
        chaos,
        billing,
        run_id,
        f"broker Redis killed while {phase.value}, restarted 4 s later {data} its data",
        rebill_requests=chaos.counters()["requests"].get("TaskDefinition.execute", 0),
    )
