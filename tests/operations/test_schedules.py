"""Scheduled runs through real beat processes (celery-redbeat on the deployment's Redis) and a real worker."""

from __future__ import annotations

import uuid

import pytest

from orchestrator.adapters.ledger.firings import SqlFiringLog
from orchestrator.domain.run import RunState
from orchestrator.services.ports import FiringOutcome, ScheduleFiring
from tests.operations.conftest import Deployment
from tests.support.polling import wait_until
from tests.support.stack import assert_exactly_once


def firings_of(deployment: Deployment, schedule: str) -> list[ScheduleFiring]:
    container = deployment.stack.container()
    try:
        engines = container.engines
        return SqlFiringLog(engines.read).recent_firings(schedule=schedule, limit=1000)  # closed below
    finally:
        container.close()


def runs_of(deployment: Deployment, billing_key: str) -> list[str]:
    container = deployment.stack.container()
    try:
        return [run.id for run in container.ledger.find_runs_by_scope(f"imis:{billing_key}")]
    finally:
        container.close()


@pytest.mark.slow
def test_a_schedule_fires_one_run_through_two_beats_and_skips_the_billing_once_rebilled(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    cycle = f"Cycle {uuid.uuid4().hex[:8]}"
    name = f"every-3s-{uuid.uuid4().hex[:6]}"
    billing = stack.seed(40, cycle_name=cycle)
    deployment.schedule_file.write_text(
        f'[schedules.{name}]\ncycle = "{cycle}"\nevery = "3s"\n\n[schedules.{name}.options]\nchunk_size = 10\n'
    )

    # Two beats started by mistake on the same Redis: one holds redbeat's lock, the other waits.
    first = deployment.start("beat", "beat")
    second = deployment.start("beat", "beat")
    try:
        started = wait_until(
            lambda: [f for f in firings_of(deployment, name) if f.outcome is FiringOutcome.STARTED],
            timeout=60,
            what="a STARTED firing",
        )
        run = stack.wait_for(started[0].run_id or "", timeout=120)
        assert run.state is RunState.COMPLETED
        # Later slots find the billing reverse-and-rebilled and say so.
        skipped = wait_until(
            lambda: [
                f
                for f in firings_of(deployment, name)
                if f.outcome is FiringOutcome.SKIPPED and "already reverse-and-rebilled by run" in (f.reason or "")
            ],
            timeout=30,
            what="a firing skipped after the run completed",
        )
        holders = [p for p in (first, second) if "Acquired lock" in p.text()]
        assert len(holders) == 1, "exactly one beat holds redbeat's lock; the other waits"
    finally:
        first.stop()
        second.stop()

    firings = firings_of(deployment, name)
    assert [f.run_id for f in firings if f.outcome is FiringOutcome.STARTED] == [run.id]
    assert len({f.slot for f in firings}) == len(firings)
    assert {f.outcome for f in firings} <= {FiringOutcome.STARTED, FiringOutcome.SKIPPED}
    assert f"by run {run.id} (COMPLETED)" in (skipped[0].reason or "")
    assert runs_of(deployment, billing.original_key) == [run.id]
    assert_exactly_once(stack, billing, run)


def test_two_schedulers_firing_the_same_slot_make_one_run(deployment: Deployment) -> None:
    stack = deployment.stack
    cycle = f"Cycle {uuid.uuid4().hex[:8]}"
    name = f"monthly-{uuid.uuid4().hex[:6]}"
    billing = stack.seed(20, cycle_name=cycle)
    deployment.schedule_file.write_text(f'[schedules.{name}]\ncycle = "{cycle}"\ncron = "0 6 1 * *"\n')
    slot = "2026-12-01T06:00:00+00:00"

    # What two beats without a lock would do: send the same slot several times at once.
    container = stack.container()
    try:
        for _ in range(4):
            container.producer.send_task("rebill.fire_schedule", args=[name, slot], queue=stack.env["REBILL_QUEUE"])
    finally:
        container.close()

    firing = wait_until(lambda: firings_of(deployment, name), timeout=60, what="a firing")[0]
    assert firing.outcome is FiringOutcome.STARTED
    assert firing.slot == f"{name}@2026-12-01T06:00:00Z"
    run = stack.wait_for(firing.run_id or "", timeout=120)
    assert run.state is RunState.COMPLETED
    assert runs_of(deployment, billing.original_key) == [run.id]
    assert len(firings_of(deployment, name)) == 1
    assert_exactly_once(stack, billing, run)
