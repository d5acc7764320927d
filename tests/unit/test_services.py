"""The services end to end over the real ledger, with the fake platform and synchronous delivery."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    RunRefused,
)
from orchestrator.domain.run import Item, ItemOutcome, ItemState, ReasonCode, Run, RunOptions, RunState, StepPhase
from orchestrator.services import follow_up, liveness, planning, reconciler, reports, reversal, runs
from orchestrator.services.context import Context, WorkerIdentity
from orchestrator.services.ports import FinishedItem
from tests.fakes import (
    BILLING,
    CYCLE,
    HAS_PAYMENT,
    FakeBulkProvider,
    FakeClock,
    FakeDispatcher,
    FakeProvider,
)

OPEN_IDS = [str(n) for n in range(1001, 1021)]
PAID_IDS = [str(n) for n in range(1021, 1026)]
WHOLE = {"billing": BILLING}


@dataclass
class World:
    """The services over the real ledger, with the fake platforms and synchronous delivery."""

    ctx: Context
    provider: FakeProvider
    bulk: FakeBulkProvider
    dispatcher: FakeDispatcher
    clock: FakeClock
    ledger: SqlLedger
    options: RunOptions

    def start(
        self,
        selector: Mapping[str, Any] = WHOLE,
        *,
        options: RunOptions | None = None,
        provider: FakeProvider | None = None,
        provider_options: Mapping[str, Any] | None = None,
        open_count: int = 20,
    ) -> str:
        """Seed the platform with `open_count` open invoices (and paid ones) and start a run on it."""
        platform = provider or self.provider
        platform.seed(open_count=open_count)
        chosen = options or self.options
        return planning.start_run(self.ctx, platform.name, selector, chosen, provider_options=provider_options).id

    def deliver(self, *, limit: int = 10_000) -> None:
        self.dispatcher.deliver(self.ctx, clock=self.clock, limit=limit)

    def first_chunk(self, run_id: str) -> int:
        """Plan the run here and take its first chunk's message off the broker."""
        planning.plan_run(self.ctx, run_id)
        return self.dispatcher.chunks()[0]

    def run(self, run_id: str) -> Run:
        run = self.ledger.get_run(run_id)
        assert run is not None
        return run

    def item(self, run_id: str, invoice_id: str) -> Item:
        return next(item for item in self.ledger.iter_items(run_id) if item.invoice.invoice_id == invoice_id)

    def chunk(self, run_id: str, chunk_id: int) -> list[Item]:
        return [item for item in self.ledger.iter_items(run_id) if item.chunk_id == chunk_id]

    def history(self, run_id: str) -> list[str]:
        return [event.code for event in self.ledger.status_events(run_id)]

    def steps(self, run_id: str) -> list[tuple[str, StepPhase, str | None]]:
        return [(step.key, step.phase, step.ref) for step in self.ledger.steps(run_id)]


@pytest.fixture
def world(
    ctx: Context,
    provider: FakeProvider,
    bulk_provider: FakeBulkProvider,
    dispatcher: FakeDispatcher,
    clock: FakeClock,
    ledger: SqlLedger,
    options: RunOptions,
) -> World:
    return World(ctx, provider, bulk_provider, dispatcher, clock, ledger, options)


class TestWholeRun:
    def test_reverses_each_open_invoice_once_then_rebills_once(self, world: World) -> None:
        run_id = world.start()
        world.deliver()

        run = world.run(run_id)
        assert run.state is RunState.COMPLETED
        assert world.provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert world.provider.calls["job.create"] == 1
        assert world.provider.jobs[run_id].request == {
            "billing": BILLING,
            "party_id": None,
            "reference": run_id,
            "server_side": False,
        }
        assert world.history(run_id) == ["open", "running", "done"]
        assert [event.label for event in world.ledger.status_events(run_id)] == ["Open", "Running", "Done"]
        assert world.steps(run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert run.provider_state == {"cycle": CYCLE, "batch": f"batch-{run_id[:8]}", "job": "job-1"}
        assert world.ledger.item_counts(run_id) == {ItemState.REVERSED: 20, ItemState.SKIPPED: 5}
        reversed_item = world.item(run_id, "1001")
        assert (reversed_item.result_ref, reversed_item.rebill_ref, reversed_item.new_amount) == (
            "CM-1001",
            "R-1001",
            Decimal("100.00"),
        )
        assert world.ledger.call_counts(run_id)[("invoice.reverse", "ok")] == 20

    def test_duplicated_messages_change_nothing(self, world: World) -> None:
        run_id = world.start()
        world.dispatcher.copies = 2
        world.deliver()

        assert world.run(run_id).state is RunState.COMPLETED
        assert max(world.provider.reversals().values()) == 1
        assert world.provider.calls["job.create"] == 1

    def test_paid_and_part_paid_invoices_are_left_as_is_with_reasons(self, world: World) -> None:
        run_id = world.start()
        world.deliver()

        skipped = {i.invoice.invoice_id: i.reason for i in world.ledger.iter_items(run_id, states={ItemState.SKIPPED})}
        assert set(skipped) == set(PAID_IDS)
        assert set(skipped.values()) == {HAS_PAYMENT}
        assert not set(world.provider.reversals()) & set(PAID_IDS)

    def test_an_invoice_paid_after_planning_is_left_as_is(self, world: World) -> None:
        run_id = world.start()
        planning.plan_run(world.ctx, run_id)
        world.provider.pay("1002", Decimal("95.00"))
        world.deliver()

        paid = world.item(run_id, "1002")
        assert (paid.state, paid.reason) == (ItemState.SKIPPED, "paid since planning")
        assert "1002" not in world.provider.reversals()
        assert world.run(run_id).state is RunState.COMPLETED


class TestRefusals:
    @pytest.mark.parametrize(
        ("selector", "message"),
        [
            ({"billing": ""}, "bad selector"),
            ({"billing": BILLING, "cycle": CYCLE}, r"bad selector: .*\['cycle'\]"),
            ({"billing": "1999-01"}, "no billing '1999-01' on the Fake platform"),
        ],
    )
    def test_bad_selectors_leave_no_run(self, world: World, selector: dict[str, Any], message: str) -> None:
        world.provider.seed()
        with pytest.raises(RunRefused, match=message):
            planning.start_run(world.ctx, world.provider.name, selector, world.options)
        assert world.ledger.list_runs() == []

    def test_a_bad_provider_option_leaves_no_run(self, world: World) -> None:
        world.provider.seed()
        with pytest.raises(RunRefused, match="bad Fake option: colour"):
            planning.start_run(world.ctx, world.provider.name, WHOLE, world.options, provider_options={"colour": "red"})
        assert world.ledger.list_runs() == []

    def test_a_provider_not_configured_here_is_named(self, world: World) -> None:
        with pytest.raises(ConfigurationError, match="no provider 'aria'"):
            planning.start_run(world.ctx, "aria", WHOLE, world.options)
        assert world.ledger.list_runs() == []

    def test_a_billing_that_is_not_closed_is_refused(self, world: World) -> None:
        world.provider.seed()
        world.provider.billings[BILLING].closed = False
        with pytest.raises(RunRefused, match="is still open: only a closed billing"):
            planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)
        assert world.ledger.list_runs() == []

    def test_a_second_run_of_the_same_billing_is_refused(self, world: World) -> None:
        first = world.start()
        with pytest.raises(RunRefused, match=f"already taken by run {first}"):
            planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)
        assert [run.id for run in world.ledger.list_runs()] == [first]


class TestUnknownOutcomes:
    def test_a_lost_reply_is_settled_by_reading_never_by_sending_again(self, world: World) -> None:
        run_id = world.start()
        world.provider.applied_then_lost(
            "invoice.reverse",
            "1003",
            ProviderTimeout("read timeout", operation="invoice.reverse", may_have_applied=True),
        )
        world.deliver()

        assert world.provider.reversals()["1003"] == 1
        item = world.item(run_id, "1003")
        assert item.state is ItemState.REVERSED
        assert item.settled_by_read
        assert item.reason == "confirmed reversed by reading the invoice"
        assert item.rebill_ref == "R-1003"  # what the follow-up learnt did not erase how it was settled
        assert world.run(run_id).state is RunState.COMPLETED

    def test_an_abandoned_claim_is_recovered_by_the_reconciler_after_its_lease(self, world: World) -> None:
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        world.dispatcher.sent.clear()  # the broker lost every message
        # A worker claimed an item and died before finishing it.
        world.ledger.claim_items(chunk_id, owner="dead", now=world.clock(), lease_until=world.clock.now, limit=1)
        world.clock.advance(world.ctx.tuning.lost_message_seconds + 1)

        found = reconciler.reconcile(world.ctx)
        world.deliver()

        assert found.chunks >= 1
        assert world.run(run_id).state is RunState.COMPLETED
        assert world.provider.reversals() == dict.fromkeys(OPEN_IDS, 1)

    def test_a_step_whose_answer_was_lost_is_settled_by_reading_never_resent(self, world: World) -> None:
        run_id = world.start()
        world.provider.applied_then_lost(
            "job.create", BILLING, ProviderTimeout("read timeout", operation="job.create", may_have_applied=True)
        )
        world.deliver()

        assert world.provider.calls["job.create"] == 1
        assert len(world.provider.jobs) == 1
        assert world.steps(run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_step_without_answer_and_without_trace_asks_for_attention_then_retry_sends_it(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("job.create", BILLING, ProviderTimeout("timeout", may_have_applied=True))
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.REBILL_OUTCOME_UNKNOWN)
        assert "rebill got no answer and Fake shows no sign of it" in (run.reason or "")
        assert world.provider.jobs == {}
        assert world.provider.calls["job.create"] == 1
        assert world.steps(run_id) == [("rebill", StepPhase.UNKNOWN, None)]

        result = runs.retry_run(world.ctx, run_id)
        world.deliver()

        assert "sending the rebill again" in result.message
        assert world.provider.calls["job.create"] == 2
        assert len(world.provider.jobs) == 1
        assert world.run(run_id).state is RunState.COMPLETED

    def test_retry_after_an_unknown_step_that_did_land_follows_it_without_resending(self, world: World) -> None:
        # Given a job that stays invisible to reading until the settle window has passed
        world.provider.script("queued", "queued", "queued", "queued", "queued", "running", "done")
        world.ctx.tuning = dataclasses.replace(world.ctx.tuning, rebill_settle_seconds=2)
        run_id = world.start()
        world.provider.applied_then_lost("job.create", BILLING, ProviderTimeout("timeout", may_have_applied=True))
        world.deliver()
        assert world.run(run_id).reason_code is ReasonCode.REBILL_OUTCOME_UNKNOWN

        # When the operator retries once it shows up
        world.provider.script("running", "done", run_id=run_id)
        result = runs.retry_run(world.ctx, run_id)
        world.deliver()

        # Then it is followed, never sent again
        assert "did reach" in result.message
        assert world.provider.calls["job.create"] == 1
        assert world.run(run_id).state is RunState.COMPLETED


class TestSteps:
    def test_a_refused_step_fails_the_run_and_retry_sends_it_again(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("job.create", BILLING, ProviderRefused("billing is locked", operation="job.create"))
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.REBILL_REFUSED)
        assert run.reason == "Fake refused rebill: billing is locked"
        assert world.steps(run_id) == [("rebill", StepPhase.FAILED, None)]

        runs.retry_run(world.ctx, run_id)
        world.deliver()

        assert world.provider.calls["job.create"] == 2
        assert world.steps(run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert world.ledger.steps(run_id)[0].attempts == 2
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_step_failing_transiently_before_it_left_is_sent_again(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("job.create", BILLING, ProviderUnavailable("connection refused", operation="job.create"))
        world.deliver()

        assert world.provider.calls["job.create"] == 2
        assert len(world.provider.jobs) == 1
        assert world.ledger.steps(run_id)[0].attempts == 2
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_finished_run_is_never_rebilled_again(self, world: World) -> None:
        run_id = world.start()
        world.deliver()

        world.dispatcher.rebill(run_id)
        world.dispatcher.poll(run_id)
        world.deliver()

        assert world.provider.calls["job.create"] == 1
        assert "never re-run" in runs.retry_run(world.ctx, run_id).message


class TestClaims:
    def test_a_worker_whose_claim_was_taken_over_never_sends_the_reversal(self, world: World) -> None:
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        [slow] = world.ledger.claim_items(
            chunk_id, owner="slow", now=world.clock(), lease_until=world.clock.now, limit=1
        )
        world.clock.advance(1)  # the slow worker's lease ran out while it waited ...
        [taken] = world.ledger.claim_items(
            chunk_id, owner="fast", now=world.clock(), lease_until=world.clock.now + world.ctx.tuning.lease, limit=1
        )
        assert taken.id == slow.id  # ... and another worker took the item over

        outcomes = reversal.work_unit(
            world.ctx,
            world.provider,
            world.run(run_id),
            [slow],
            claim=reversal.Claim("slow", world.clock.now - timedelta(seconds=1), 0),
        )

        assert outcomes[slow.id].state is ItemState.RETRY_WAIT  # written only if still ours: here it is not
        assert world.provider.reversals() == {}
        assert world.provider.calls["invoice.reverse"] == 0

    def test_a_frozen_worker_whose_claims_were_taken_over_never_sends_when_it_wakes(self, world: World) -> None:
        # Given worker w1, which claimed an item with a long lease and then froze: no heartbeat since
        dead_after = world.ctx.tuning.worker_dead_after_seconds
        monotonic = [0.0]
        world.ctx.worker = WorkerIdentity("w1", clock=lambda: monotonic[0])
        world.ctx.worker.beaten()
        world.ledger.beat("w1", host="host-1", pid=101, now=world.clock())
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        lease_until = world.clock.now + timedelta(minutes=10)  # far past the write budget: only liveness can tell
        [frozen] = world.ledger.claim_items(
            chunk_id, owner="w1/1/a", now=world.clock(), lease_until=lease_until, limit=1
        )
        monotonic[0] += dead_after
        world.clock.advance(dead_after + 1)

        # When another worker declares it dead and takes its item over
        silent_since = world.clock.now - timedelta(seconds=dead_after)
        assert world.ledger.declare_dead(silent_since=silent_since, now=world.clock()) == ["w1"]
        assert world.ledger.release_worker("w1", now=world.clock()).claims == 1
        world.clock.advance(1)
        [taken] = world.ledger.claim_items(
            chunk_id, owner="w2/1/b", now=world.clock(), lease_until=world.clock.now + world.ctx.tuning.lease, limit=1
        )
        assert taken.id == frozen.id

        # Then w1, waking with a lease that looks good, asks the ledger first and sends nothing
        outcomes = reversal.work_unit(
            world.ctx, world.provider, world.run(run_id), [frozen], claim=reversal.Claim("w1/1/a", lease_until, 0)
        )

        assert outcomes[frozen.id].state is ItemState.RETRY_WAIT
        assert world.provider.calls["invoice.reverse"] == 0

    def test_a_thawed_worker_whose_heartbeat_came_back_first_still_asks_the_ledger(self, world: World) -> None:
        # Given w1 frozen past its death with an item claimed, taken over by w2 meanwhile
        dead_after = world.ctx.tuning.worker_dead_after_seconds
        monotonic = [0.0]
        worker = WorkerIdentity("w1", clock=lambda: monotonic[0])
        world.ctx.worker = worker
        liveness.beat(world.ctx, worker, host="host-1", pid=101)
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        lease_until = world.clock.now + timedelta(minutes=10)
        [frozen] = world.ledger.claim_items(
            chunk_id, owner="w1/1/a", now=world.clock(), lease_until=lease_until, limit=1
        )
        claim = reversal.Claim("w1/1/a", lease_until, worker.epoch)
        monotonic[0] += dead_after + 1
        world.clock.advance(dead_after + 1)
        assert liveness.take_over_from_dead_workers(world.ctx).claims == 1
        world.clock.advance(1)
        [taken] = world.ledger.claim_items(
            chunk_id, owner="w2/1/b", now=world.clock(), lease_until=world.clock.now + world.ctx.tuning.lease, limit=1
        )
        assert taken.id == frozen.id

        # When w1 thaws and its heartbeat thread beats before its worker thread reaches the fence
        liveness.beat(world.ctx, worker, host="host-1", pid=101)
        assert worker.fresh(dead_after / 2)  # the heartbeat alone would let the claim through
        outcomes = reversal.work_unit(world.ctx, world.provider, world.run(run_id), [frozen], claim=claim)

        # Then the epoch it claimed in is gone: the ledger is asked, and nothing is sent
        assert outcomes[frozen.id].state is ItemState.RETRY_WAIT
        assert world.provider.calls["invoice.reverse"] == 0

    def test_claims_take_a_batch_in_id_order_and_never_the_same_item_twice(self, world: World) -> None:
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        lease_until = world.clock.now + world.ctx.tuning.lease

        first = world.ledger.claim_items(chunk_id, owner="a", now=world.clock(), lease_until=lease_until, limit=3)
        second = world.ledger.claim_items(chunk_id, owner="b", now=world.clock(), lease_until=lease_until, limit=3)

        chunk = [i.id for i in world.chunk(run_id, chunk_id)]
        assert [i.id for i in first] == chunk[:3]
        assert [i.id for i in second] == chunk[3:]
        assert all(i.state is ItemState.IN_FLIGHT and i.claims_total == 1 for i in first + second)

    def test_finishing_a_batch_claims_the_next_in_the_same_transaction(self, world: World) -> None:
        run_id = world.start(options=dataclasses.replace(world.options, chunk_size=10))
        chunk_id = world.first_chunk(run_id)
        lease_until = world.clock.now + world.ctx.tuning.lease
        first = world.ledger.claim_items(chunk_id, owner="a", now=world.clock(), lease_until=lease_until, limit=3)
        held = world.ledger.claim_items(chunk_id, owner="b", now=world.clock(), lease_until=lease_until, limit=1)

        done = [FinishedItem(item, ItemOutcome(ItemState.REVERSED), []) for item in first]
        following = world.ledger.finish_and_claim(
            done, owner="a", now=world.clock(), chunk_id=chunk_id, lease_until=lease_until, limit=3
        )

        chunk = [i.id for i in world.chunk(run_id, chunk_id)]
        assert [i.id for i in held] == chunk[3:4]
        assert [i.id for i in following] == chunk[4:7]  # past the finished ones and the one b holds
        states = {i.id: i.state for i in world.ledger.iter_items(run_id)}
        assert all(states[i.id] is ItemState.REVERSED for i in first)
        assert all(states[i.id] is ItemState.IN_FLIGHT for i in following)

    def test_a_worker_killed_mid_batch_leaves_its_claims_to_be_settled_by_reading(self, world: World) -> None:
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        batch = world.chunk(run_id, chunk_id)
        killed_at = batch[2].invoice.invoice_id
        world.provider.applied_then_lost("invoice.reverse", killed_at, WorkerKilled())

        with pytest.raises(WorkerKilled):
            reversal.process_chunk(world.ctx, run_id, chunk_id)

        states = {i.id: i.state for i in world.chunk(run_id, chunk_id)}
        assert [states[i.id] for i in batch[:2]] == [ItemState.REVERSED] * 2  # worked before the kill: written
        assert all(states[i.id] is ItemState.IN_FLIGHT for i in batch[2:])  # the rest stay claimed

        world.clock.advance(world.ctx.tuning.lease_seconds + 1)
        reversal.process_chunk(world.ctx, run_id, chunk_id)

        after = {i.invoice.invoice_id: i for i in world.chunk(run_id, chunk_id)}
        assert all(item.state is ItemState.REVERSED for item in after.values())
        assert after[killed_at].settled_by_read
        assert all(world.provider.reversals()[invoice_id] == 1 for invoice_id in after)

    def test_a_worker_done_with_its_chunk_helps_with_one_another_worker_is_in(self, world: World) -> None:
        run_id = world.start()
        busy = world.first_chunk(run_id)
        # Another worker took the busy chunk's message and is on its first item, slowly.
        world.dispatcher.sent = [message for message in world.dispatcher.sent if message[1] != (run_id, busy)]
        world.ledger.record_delivery(busy)
        [slow] = world.ledger.claim_items(
            busy, owner="slow", now=world.clock(), lease_until=world.clock.now + world.ctx.tuning.lease, limit=1
        )

        world.deliver()  # every other chunk, whose workers then help

        items = world.chunk(run_id, busy)
        assert {i.id: i.state for i in items if i.state in (ItemState.PENDING, ItemState.IN_FLIGHT)} == {
            slow.id: ItemState.IN_FLIGHT
        }
        assert slow.invoice.invoice_id not in world.provider.reversals()
        assert all(count == 1 for count in world.provider.reversals().values())

    def test_an_item_a_helper_leaves_to_retry_does_not_wait_for_the_lease(self, world: World) -> None:
        run_id = world.start()
        busy = world.first_chunk(run_id)
        world.dispatcher.sent = [message for message in world.dispatcher.sent if message[1] != (run_id, busy)]
        world.ledger.record_delivery(busy)  # its own task is in it...
        first = world.chunk(run_id, busy)[0].invoice.invoice_id
        # ...and finishes (scheduling its wake-up for the helper's lease) while a helper's call on the
        # chunk's first invoice is answered "busy, try again in 3 s".
        world.provider.while_calling("invoice.check", first, lambda: reversal.process_chunk(world.ctx, run_id, busy))
        world.provider.fail("invoice.check", first, ProviderThrottled("busy", retry_after=3))
        started = world.clock.now

        while world.run(run_id).state is not RunState.COMPLETED:
            world.deliver(limit=1)

        assert world.clock.now - started < world.ctx.tuning.lease  # the retry's seconds, not the lease
        assert world.provider.reversals()[first] == 1

    def test_no_help_is_taken_up_once_the_task_has_run_half_the_visibility_timeout(self, world: World) -> None:
        world.ctx.tuning = dataclasses.replace(world.ctx.tuning, max_countdown_seconds=0)
        run_id = world.start()
        busy = world.first_chunk(run_id)
        world.dispatcher.sent = [message for message in world.dispatcher.sent if message[1] != (run_id, busy)]
        world.ledger.record_delivery(busy)

        world.deliver()

        assert all(i.state is ItemState.PENDING for i in world.chunk(run_id, busy))


class WorkerKilled(BaseException):
    """Stands for the process dying in the middle of a batch: nothing after it runs."""


class TestFailuresAndRetry:
    def test_transient_errors_back_off_and_succeed(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("invoice.reverse", "1002", ProviderThrottled("429", retry_after=3))
        world.deliver()

        item = world.item(run_id, "1002")
        assert (item.state, item.attempts, world.provider.reversals()["1002"]) == (ItemState.REVERSED, 2, 1)
        assert world.ledger.call_counts(run_id)[("invoice.reverse", "transient")] == 1

    def test_transient_errors_past_max_attempts_fail_the_item(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("invoice.check", "1004", *[ProviderThrottled("429") for _ in range(3)])
        world.deliver()

        item = world.item(run_id, "1004")
        assert item.state is ItemState.FAILED
        assert item.reason == "gave up after 3 attempts: 429"
        assert world.run(run_id).state is RunState.NEEDS_ATTENTION

    def test_refused_credentials_stop_the_run_at_once_and_retry_resumes_it(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail(
            "invoice.reverse", "1003", ProviderAuthError("401: key revoked", operation="invoice.reverse")
        )
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.CREDENTIALS_REFUSED)
        assert "refused the credentials" in (run.reason or "")
        assert world.ledger.item_counts(run_id).get(ItemState.FAILED, 0) == 0  # nothing failed for it
        reversed_before = len(world.provider.reversals())
        assert reversed_before < len(OPEN_IDS)  # no more claims once the run stopped

        result = runs.retry_run(world.ctx, run_id)
        world.deliver()

        assert result.resumed
        assert world.run(run_id).state is RunState.COMPLETED
        assert world.provider.reversals() == dict.fromkeys(OPEN_IDS, 1)

    def test_a_permanent_failure_blocks_the_rebill_until_retry_completes_it(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail(
            "invoice.reverse", "1005", ProviderRefused("invoice.reverse: locked", operation="invoice.reverse")
        )
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS)
        assert world.provider.jobs == {}
        failed = next(world.ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed.reason == "invoice.reverse: locked"

        result = runs.retry_run(world.ctx, run_id)
        world.deliver()

        assert result.resumed
        assert world.run(run_id).state is RunState.COMPLETED
        assert world.provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert world.provider.calls["job.create"] == 1
        assert "never re-run" in runs.retry_run(world.ctx, run_id).message

    def test_a_chunk_that_keeps_killing_workers_ends_failed(self, world: World) -> None:
        run_id = world.start()
        chunk_id = world.first_chunk(run_id)
        for _ in range(world.ctx.tuning.max_deliveries):
            world.ledger.record_delivery(chunk_id)  # deliveries that died before finishing
        world.deliver()

        failed = list(world.ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed
        assert all("delivered" in (item.reason or "") for item in failed)
        assert all(item.chunk_id == chunk_id for item in failed)
        assert world.run(run_id).reason_code is ReasonCode.FAILED_ITEMS

    def test_nothing_reversed_means_nobody_to_rebill(self, world: World) -> None:
        run_id = world.start(open_count=2)
        planning.plan_run(world.ctx, run_id)
        world.provider.pay("1001", Decimal("95.00"))
        world.provider.pay("1002", Decimal("10.00"))
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.NOTHING_TO_REVERSE)
        assert world.provider.jobs == {}


class TestPlanning:
    def test_a_coordinator_killed_mid_planning_resumes_without_duplicates(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("invoice.list", "14", ProviderTimeout("timeout"))
        with pytest.raises(ProviderTimeout):
            world.deliver()
        assert world.run(run_id).plan_offset == 14

        planning.plan_run(world.ctx, run_id)
        world.deliver()

        assert sum(world.ledger.item_counts(run_id).values()) == 25
        assert world.run(run_id).state is RunState.COMPLETED
        assert max(world.provider.reversals().values()) == 1
        assert world.provider.batches_opened[run_id] == 2  # prepared again on resume: the provider makes it safe
        assert world.run(run_id).provider_state["batch"] == f"batch-{run_id[:8]}"

    def test_the_first_chunks_are_dispatched_before_planning_ends(self, world: World) -> None:
        run_id = world.start(open_count=40)
        last_page = str(45 // world.provider.page_size * world.provider.page_size)
        world.provider.fail("invoice.list", last_page, ProviderTimeout("timeout"))

        with pytest.raises(ProviderTimeout):
            planning.plan_run(world.ctx, run_id)

        assert world.run(run_id).state is RunState.PLANNING
        assert world.dispatcher.count("reverse_chunk") >= 1

    def test_a_permanent_error_while_planning_fails_the_run_and_retry_resumes_it(self, world: World) -> None:
        run_id = world.start()
        world.provider.fail("invoice.list", "7", ProviderRefused("page refused", operation="invoice.list"))
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.PLANNING_FAILED)
        assert "planning stopped: page refused" in (run.reason or "")

        world.clock.advance(1)
        runs.retry_run(world.ctx, run_id)
        world.deliver()

        # The chunk dispatched before planning stopped was sent again, not left to the reconciler.

        assert sum(world.ledger.item_counts(run_id).values()) == 25
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_dry_run_writes_nothing_to_the_platform(self, world: World) -> None:
        world.provider.seed()
        run = planning.start_run(
            world.ctx, world.provider.name, WHOLE, dataclasses.replace(world.options, dry_run=True)
        )

        assert run.state is RunState.DRY_RUN
        assert world.provider.writes() == set()
        assert world.ledger.item_counts(run.id) == {ItemState.PENDING: 20, ItemState.SKIPPED: 5}
        plan = reports.dry_run_plan(world.ctx, run)
        assert (plan["to_reverse"], plan["amount_to_reverse"], plan["skipped"]) == (20, "1900.00", {HAS_PAYMENT: 5})
        assert plan["follow_up"] == [
            {"step": "rebill", "billing": BILLING, "party_id": None, "reference": run.id, "server_side": False}
        ]
        assert "previewed" not in plan
        # A dry run does not hold the billing: the real run may follow.
        planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)

    def test_a_single_contact_run_touches_only_that_party(self, world: World) -> None:
        run_id = world.start({"billing": BILLING, "party_id": "P1007"})
        world.deliver()

        run = world.run(run_id)
        assert (run.selection.whole, run.selection.label) == (False, f"billing {BILLING} ({CYCLE}) for party P1007")
        assert world.provider.reversals() == {"1007": 1}
        assert world.provider.jobs[run_id].request["party_id"] == "P1007"
        assert run.state is RunState.COMPLETED
        with pytest.raises(RunRefused, match=f"already has a partial run {run_id}"):
            planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)


class TestFollowUp:
    def test_a_failed_job_fails_the_run_and_is_never_retried(self, world: World) -> None:
        world.provider.script("running", "failed")
        run_id = world.start()
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.BILLING_FAILED)
        assert world.history(run_id) == ["open", "running", "failed"]
        with pytest.raises(RunRefused, match="could bill members twice"):
            runs.retry_run(world.ctx, run_id)

    def test_a_held_job_is_released_once_when_the_run_allows_it(self, world: World) -> None:
        world.provider.script("running", "held", "held", "held", "running", "done")
        run_id = world.start(provider_options={"release_held": True})
        seen_held: list[bool] = []
        while world.dispatcher.sent:
            world.deliver(limit=1)
            seen_held.append(world.run(run_id).provider_state.get("held", False))

        assert world.provider.calls["job.release"] == 1
        assert world.provider.jobs[run_id].released
        assert world.steps(run_id) == [("rebill", StepPhase.SENT, "job-1"), ("release", StepPhase.SENT, "job-1")]
        assert world.history(run_id) == ["open", "running", "held", "running", "done"]
        assert world.run(run_id).state is RunState.COMPLETED
        # The provider kept that the job was held while it was, and dropped it after (a None value removes it).
        assert True in seen_held
        assert "held" not in world.run(run_id).provider_state

    def test_a_held_job_waits_for_an_operator_and_retry_follows_it_again(self, world: World) -> None:
        world.provider.script("running", "held", "done")
        run_id = world.start()
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
        assert "job job-1 is held for review on the Fake platform" in (run.reason or "")
        assert world.provider.calls["job.release"] == 0

        result = runs.retry_run(world.ctx, run_id)  # the operator released it on the platform
        world.deliver()

        assert "following it" in result.message
        assert world.provider.calls["job.create"] == 1
        assert world.history(run_id) == ["open", "running", "held", "done"]
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_notice_shows_why_the_run_waits_until_it_moves_on(self, world: World) -> None:
        world.provider.script("waiting", "waiting", "running", "done")
        run_id = world.start()
        notices: list[str | None] = []
        while world.dispatcher.sent:
            world.deliver(limit=1)
            notices.append(world.run(run_id).notice)

        assert "the Fake platform queues job job-1 behind other work" in notices
        assert notices[-1] is None
        assert world.run(run_id).state is RunState.COMPLETED

    def test_no_status_change_past_the_deadline_is_stalled_and_retry_resumes_following(self, world: World) -> None:
        world.provider.script("running")
        run_id = world.start()
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.reason_code) == (RunState.STALLED, ReasonCode.STALLED)
        assert "job-1: Running (running) has not changed for over 1 min" in (run.reason or "")
        assert world.history(run_id) == ["open", "running"]

        world.provider.script("done", run_id=run_id)
        runs.retry_run(world.ctx, run_id)
        world.deliver()

        assert world.run(run_id).state is RunState.COMPLETED
        assert world.provider.calls["job.create"] == 1

    def test_a_platform_acting_on_the_whole_selection_reports_each_invoice_when_done(self, world: World) -> None:
        run_id = world.start(provider_options={"server_side": True})
        planning.plan_run(world.ctx, run_id)
        world.provider.pay("1009", Decimal("1.00"))  # paid after planning: the platform's job leaves it open
        world.deliver()

        assert world.dispatcher.count("reverse_chunk") == 0
        assert world.provider.calls["invoice.reverse"] == 0
        assert world.provider.jobs[run_id].request["server_side"] is True
        counts = world.ledger.item_counts(run_id)
        assert counts == {ItemState.REVERSED: 19, ItemState.SKIPPED: 6}
        assert all(item.settled_by_read for item in world.ledger.iter_items(run_id, states={ItemState.REVERSED}))
        assert world.item(run_id, "1009").reason == "left open by the platform's job"
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_duplicated_follow_up_message_reads_nothing_twice(self, world: World) -> None:
        world.provider.script("running", "running", "running", "done")
        run_id = world.start()
        world.deliver()
        reads = world.provider.calls["job.get"]

        follow_up.follow(world.ctx, run_id)  # a late copy of a tick's message

        assert world.provider.calls["job.get"] == reads
        assert world.run(run_id).state is RunState.COMPLETED


class TestCancel:
    def test_cancel_stops_dispatching_and_frees_the_billing(self, world: World) -> None:
        run_id = world.start()
        planning.plan_run(world.ctx, run_id)
        assert "cancelled" in runs.cancel_run(world.ctx, run_id)
        world.deliver()

        run = world.run(run_id)
        assert (run.state, run.guard_held) == (RunState.CANCELLED, False)
        assert world.ledger.steps(run_id) == []
        assert world.provider.reversals() == {}
        assert world.provider.jobs == {}
        assert "never re-run" not in runs.retry_run(world.ctx, run_id).message
        planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)  # the billing is free again

    def test_a_run_whose_step_was_sent_cannot_be_cancelled(self, world: World) -> None:
        world.provider.script("held")
        run_id = world.start()
        world.deliver()

        with pytest.raises(RunRefused, match="already sent rebill to fake"):
            runs.cancel_run(world.ctx, run_id)
        assert world.run(run_id).state is RunState.NEEDS_ATTENTION


class TestChunkSizes:
    def test_a_runs_first_chunks_are_smaller_and_every_invoice_is_reversed_once(self, world: World) -> None:
        world.ctx.tuning = dataclasses.replace(world.ctx.tuning, ramp_chunks={world.provider.name: 2})
        run_id = world.start()
        planning.plan_run(world.ctx, run_id)
        sizes = [len(world.chunk(run_id, chunk_id)) for chunk_id in world.dispatcher.chunks()]
        assert sizes == [1, 1, 2, 2]  # the dispatch window (4) of the chunks of 1, 1, 2, 2, 3, 3, 5, 3

        world.deliver()
        assert world.run(run_id).state is RunState.COMPLETED
        assert world.provider.reversals() == dict.fromkeys(OPEN_IDS, 1)

    def test_a_provider_whose_write_covers_a_chunk_keeps_every_chunk_at_its_size(self, world: World) -> None:
        world.ctx.tuning = dataclasses.replace(world.ctx.tuning, ramp_chunks={world.bulk.name: 2})
        run_id = world.start(provider=world.bulk)
        world.deliver()

        assert world.run(run_id).state is RunState.COMPLETED
        assert sorted(len(ids) for ids in world.bulk.reversal_batches.values()) == [5, 5, 5, 5]


class TestChunkProvider:
    """A provider whose one write covers a whole chunk (EnergyCAP's bulk reverse)."""

    def test_each_chunk_is_claimed_at_once_and_reversed_in_one_call(self, world: World) -> None:
        world.ctx.tuning = dataclasses.replace(world.ctx.tuning, claim_batch_size=2)
        run_id = world.start(provider=world.bulk)
        world.deliver()

        assert world.run(run_id).state is RunState.COMPLETED
        assert world.bulk.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert world.bulk.calls["chunk.reverse"] == 4
        assert sorted(len(ids) for ids in world.bulk.reversal_batches.values()) == [5, 5, 5, 5]
        reversed_items = world.ledger.iter_items(run_id, states={ItemState.REVERSED})
        chunk_ids = {item.chunk_id for item in reversed_items if item.chunk_id is not None}
        assert len(chunk_ids) == 4
        for chunk_id in chunk_ids:
            code = FakeBulkProvider.batch_code(run_id, world.ledger.chunk_seq(chunk_id))
            chunk = world.chunk(run_id, chunk_id)
            assert {item.result_ref for item in chunk} == {code}
            assert all(item.attempts == 1 for item in chunk)

    def test_a_chunk_claimed_before_is_settled_by_reading_its_batch(self, world: World) -> None:
        run_id = world.start(provider=world.bulk)
        chunk_id = world.first_chunk(run_id)
        code = FakeBulkProvider.batch_code(run_id, world.ledger.chunk_seq(chunk_id))
        world.bulk.applied_then_lost("chunk.reverse", code, ProviderTimeout("timeout", may_have_applied=True))
        world.deliver()

        chunk = world.chunk(run_id, chunk_id)
        assert all(item.state is ItemState.REVERSED and item.settled_by_read for item in chunk)
        assert all(item.reason == f"found in reversal batch {code}" for item in chunk)
        assert world.bulk.calls["chunk.reverse"] == 4  # the lost one was never sent again
        assert world.bulk.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_transient_error_puts_every_item_of_the_chunk_back_to_wait(self, world: World) -> None:
        run_id = world.start(provider=world.bulk)
        chunk_id = world.first_chunk(run_id)
        code = FakeBulkProvider.batch_code(run_id, world.ledger.chunk_seq(chunk_id))
        world.bulk.fail("chunk.reverse", code, ProviderUnavailable("503"))

        reversal.process_chunk(world.ctx, run_id, chunk_id)

        chunk = world.chunk(run_id, chunk_id)
        assert len(chunk) == 5
        assert all(item.state is ItemState.RETRY_WAIT and item.next_attempt_at for item in chunk)

        world.deliver()

        chunk = world.chunk(run_id, chunk_id)
        assert all(item.state is ItemState.REVERSED and item.attempts == 2 for item in chunk)
        assert world.run(run_id).state is RunState.COMPLETED

    def test_a_worker_done_with_its_chunk_never_helps_with_another(self, world: World) -> None:
        run_id = world.start(provider=world.bulk)
        busy = world.first_chunk(run_id)
        # Another worker took the busy chunk's message and has not claimed it yet.
        world.dispatcher.sent = [message for message in world.dispatcher.sent if message[1] != (run_id, busy)]
        world.ledger.record_delivery(busy)

        world.deliver()

        assert all(item.state is ItemState.PENDING for item in world.chunk(run_id, busy))
        assert world.ledger.item_counts(run_id)[ItemState.REVERSED] == 15


class TestPreviewingProvider:
    def test_a_dry_run_asks_what_each_invoice_would_become_and_writes_nothing(self, world: World) -> None:
        world.provider.previews_items = True
        world.provider.seed()
        run = planning.start_run(
            world.ctx, world.provider.name, WHOLE, dataclasses.replace(world.options, dry_run=True)
        )
        world.deliver()

        finished = world.run(run.id)
        assert finished.state is RunState.DRY_RUN
        assert world.provider.writes() == set()
        assert world.provider.calls["invoice.preview"] == 20
        assert world.ledger.item_counts(run.id) == {ItemState.PREVIEWED: 20, ItemState.SKIPPED: 5}
        assert {item.new_amount for item in world.ledger.iter_items(run.id, states={ItemState.PREVIEWED})} == {
            Decimal("100.00")
        }
        plan = reports.dry_run_plan(world.ctx, finished)
        assert (plan["to_reverse"], plan["previewed"], plan["new_amount"], plan["difference"]) == (
            20,
            20,
            "2000.00",
            "100.00",
        )
        planning.start_run(world.ctx, world.provider.name, WHOLE, world.options)  # a dry run holds nothing
