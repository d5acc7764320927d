"""The run store (SQLite, and PostgreSQL when configured): runs created once per scope even when
they race on a busy ledger, steps claimed once, provider state merged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from orchestrator.adapters.ledger.database import LedgerEngines
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.errors import RunRefused
from orchestrator.domain.run import Observation, Run, RunOptions, RunState, StepPhase
from orchestrator.services import planning
from orchestrator.services.context import Context
from tests.fakes import BILLING, FakeClock, FakeProvider
from tests.unit.ledger.conftest import MakeRun

WHOLE: dict[str, str] = {"billing": BILLING}
CONTACT: dict[str, str] = {"billing": BILLING, "party_id": "P1007"}
OTHER_CONTACT: dict[str, str] = {"billing": BILLING, "party_id": "P1008"}
#: How long the other connection keeps the runs table while the runs are started (issue 11: "a few seconds").
HOLD_SECONDS = 2.0


@dataclass
class Started:
    """What one start of a run came to, and whether the ledger was still held when it did."""

    run: Run | None = None
    refused: RunRefused | None = None
    after_release: bool = False


@contextmanager
def runs_table_held(engines: LedgerEngines) -> Iterator[threading.Event]:
    """Another connection holds the runs table for HOLD_SECONDS (PostgreSQL: LOCK TABLE ... IN
    EXCLUSIVE MODE; SQLite: an open BEGIN IMMEDIATE transaction); the event is set just before it lets go."""
    held, releasing = threading.Event(), threading.Event()

    def hold() -> None:
        with engines.write.begin() as conn:  # SQLite: the write engine begins IMMEDIATE, taking the write lock
            if conn.dialect.name == "postgresql":
                conn.execute(text("LOCK TABLE runs IN EXCLUSIVE MODE"))
            else:
                conn.execute(text("UPDATE run_scopes SET scope = scope WHERE 1 = 0"))
            held.set()
            time.sleep(HOLD_SECONDS)
            releasing.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    try:
        yield releasing
    finally:
        holder.join()


def start_at_once(
    ctx: Context, options: RunOptions, selectors: list[Mapping[str, Any]], releasing: threading.Event | None = None
) -> list[Started]:
    """Start one run per selector, each from its own thread, all at the same moment."""
    barrier = threading.Barrier(len(selectors))
    results = [Started() for _ in selectors]

    def start(selector: Mapping[str, Any], result: Started) -> None:
        barrier.wait()
        try:
            result.run = planning.start_run(ctx, "fake", selector, options)
        except RunRefused as refused:
            result.refused = refused
        result.after_release = releasing is not None and releasing.is_set()

    threads = [
        threading.Thread(target=start, args=(selector, result))
        for selector, result in zip(selectors, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def exactly_one_created(ledger: SqlLedger, results: list[Started]) -> None:
    created = [result.run for result in results if result.run is not None]
    refused = [result.refused for result in results if result.refused is not None]
    assert len(created) == 1, [str(error) for error in refused]
    assert len(refused) == len(results) - 1
    [winner] = created
    assert all(winner.id in str(error) for error in refused)  # the refusal names the run in the way
    assert [run.id for run in ledger.find_runs_by_scope(f"fake:{BILLING}")] == [winner.id]


class TestOneDecisionPerScope:
    """Issue 11, defect 1: a whole-billing run and a single-contact run of one billing were both
    created (the check and the insert were two steps), and the contact was billed twice."""

    @pytest.fixture(autouse=True)
    def _billing(self, provider: FakeProvider) -> None:
        provider.seed()

    @pytest.mark.parametrize(
        "selectors",
        [[WHOLE, CONTACT], [CONTACT, WHOLE], [WHOLE, WHOLE], [CONTACT, CONTACT]],
        ids=["whole-then-contact", "contact-then-whole", "two-wholes", "same-contact"],
    )
    def test_runs_of_one_billing_started_at_once_make_one_run(
        self, ctx: Context, options: RunOptions, ledger: SqlLedger, selectors: list[Mapping[str, Any]]
    ) -> None:
        exactly_one_created(ledger, start_at_once(ctx, options, selectors))

    @pytest.mark.parametrize(
        "selectors",
        [[WHOLE, CONTACT], [CONTACT, WHOLE], [WHOLE, WHOLE]],
        ids=["whole-then-contact", "contact-then-whole", "two-wholes"],
    )
    def test_runs_of_one_billing_started_while_the_ledger_is_busy_make_one_run(
        self,
        ctx: Context,
        options: RunOptions,
        ledger: SqlLedger,
        engines: LedgerEngines,
        selectors: list[Mapping[str, Any]],
    ) -> None:
        # Given another transaction holding the runs table
        with runs_table_held(engines) as releasing:
            # When both runs are started meanwhile
            results = start_at_once(ctx, options, selectors, releasing)

        # Then both waited for the ledger, and only one of them was created
        assert all(result.after_release for result in results)
        exactly_one_created(ledger, results)

    def test_single_contact_runs_of_different_parties_both_go_ahead(
        self, ctx: Context, options: RunOptions, ledger: SqlLedger, engines: LedgerEngines
    ) -> None:
        with runs_table_held(engines) as releasing:
            results = start_at_once(ctx, options, [CONTACT, OTHER_CONTACT], releasing)

        assert [result.refused for result in results] == [None, None]
        assert len(ledger.find_runs_by_scope(f"fake:{BILLING}")) == 2

    @pytest.mark.parametrize(
        "selectors", [[WHOLE, CONTACT], [CONTACT, WHOLE], [WHOLE, WHOLE]], ids=["whole", "contact", "two-wholes"]
    )
    def test_a_dry_run_never_conflicts(
        self,
        ctx: Context,
        options: RunOptions,
        ledger: SqlLedger,
        engines: LedgerEngines,
        selectors: list[Mapping[str, Any]],
    ) -> None:
        # Given a real run of the first selection
        real = planning.start_run(ctx, "fake", selectors[0], options)

        # When dry runs of both are started at once on a busy ledger
        with runs_table_held(engines) as releasing:
            dry = start_at_once(ctx, RunOptions(dry_run=True, chunk_size=5), selectors, releasing)

        # Then each was made, and the real run still holds its part of the billing
        assert [result.refused for result in dry] == [None, None]
        assert all(result.run is not None and result.run.state is RunState.DRY_RUN for result in dry)
        with pytest.raises(RunRefused, match=real.id):
            planning.start_run(ctx, "fake", selectors[0], options)


class TestSteps:
    def test_a_step_is_claimed_by_one_caller_only(self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun) -> None:
        run = make_run(state=RunState.REBILLING)
        barrier = threading.Barrier(4)
        won: list[bool] = []

        def claim() -> None:
            barrier.wait()
            won.append(ledger.claim_step(run.id, key="rebill", kind="rebill", request={"n": 1}, now=clock()))

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(won) == [False, False, False, True]
        [step] = ledger.steps(run.id)
        assert (step.key, step.kind, step.phase, step.attempts, step.request) == (
            "rebill",
            "rebill",
            StepPhase.SENDING,
            1,
            {"n": 1},
        )

    @pytest.mark.parametrize(
        "state",
        [RunState.PLANNING, RunState.REVERSING, RunState.COMPLETED, RunState.NEEDS_ATTENTION, RunState.CANCELLED],
    )
    def test_no_step_is_claimed_unless_the_run_is_following_up(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun, state: RunState
    ) -> None:
        run = make_run(state=state)

        assert not ledger.claim_step(run.id, key="rebill", kind="rebill", request={}, now=clock())
        assert ledger.steps(run.id) == []

    def test_only_a_released_step_is_claimed_again(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(state=RunState.POLLING)
        assert ledger.claim_step(run.id, key="rebill", kind="rebill", request={"n": 1}, now=clock())
        for phase in (StepPhase.SENDING, StepPhase.SENT, StepPhase.UNKNOWN, StepPhase.FAILED):
            ledger.finish_step(run.id, "rebill", phase=phase, now=clock(), error="no answer")
            assert not ledger.claim_step(run.id, key="rebill", kind="rebill", request={"n": 2}, now=clock()), phase

        ledger.finish_step(run.id, "rebill", phase=StepPhase.RELEASED, now=clock(), error="not applied")
        clock.advance(5)
        assert ledger.claim_step(run.id, key="rebill", kind="rebill", request={"n": 2}, now=clock())

        [step] = ledger.steps(run.id)
        assert (step.phase, step.attempts, step.request, step.error, step.claimed_at) == (
            StepPhase.SENDING,
            2,
            {"n": 2},
            None,
            clock.now,
        )

    def test_release_steps_gives_back_only_the_phases_asked(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(state=RunState.POLLING)
        for key, phase in (
            ("a", StepPhase.UNKNOWN),
            ("b", StepPhase.SENDING),
            ("c", StepPhase.FAILED),
            ("d", StepPhase.SENT),
        ):
            assert ledger.claim_step(run.id, key=key, kind="generate", request={}, now=clock())
            ledger.finish_step(run.id, key, phase=phase, now=clock(), ref=f"ref-{key}")

        released = ledger.release_steps(run.id, phases={StepPhase.UNKNOWN, StepPhase.SENDING}, now=clock())

        assert released == 2
        assert [(step.key, step.phase, step.ref) for step in ledger.steps(run.id)] == [
            ("a", StepPhase.RELEASED, "ref-a"),
            ("b", StepPhase.RELEASED, "ref-b"),
            ("c", StepPhase.FAILED, "ref-c"),
            ("d", StepPhase.SENT, "ref-d"),
        ]


class TestRunState:
    def test_merging_provider_state_adds_keys_and_a_none_removes_one(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run()
        ledger.merge_provider_state(run.id, {"job": "job-1", "held": True, "pages": [1, 2]}, now=clock())
        ledger.merge_provider_state(run.id, {"held": None, "job": "job-2", "absent": None}, now=clock())

        merged = ledger.get_run(run.id)
        assert merged is not None
        assert merged.provider_state == {"cycle": "Monthly dues", "job": "job-2", "pages": [1, 2]}

    def test_a_status_is_recorded_when_it_changes_only(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(state=RunState.POLLING)
        recorded = []
        for code in ("queued", "queued", "running", "running", "done"):
            clock.advance(1)
            recorded.append(ledger.record_status(run.id, Observation("job-1", code, code.title()), at=clock()))

        assert recorded == [True, False, True, False, True]
        assert [(event.subject, event.code, event.label) for event in ledger.status_events(run.id)] == [
            ("job-1", "queued", "Queued"),
            ("job-1", "running", "Running"),
            ("job-1", "done", "Done"),
        ]
        followed = ledger.get_run(run.id)
        assert followed is not None
        assert followed.last_status == Observation("job-1", "done", "Done")
        assert followed.last_status_change_at == clock.now
