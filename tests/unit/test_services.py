"""The services end to end over the real ledger, with the fake platform and synchronous delivery."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.errors import (
    ConfigurationError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    RunRefused,
)
from orchestrator.domain.run import Item, ItemOutcome, ItemState, ReasonCode, Run, RunOptions, RunState, StepPhase
from orchestrator.services import follow_up, planning, reconciler, reports, reversal, runs
from orchestrator.services.context import Context
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


def start(
    ctx: Context,
    options: RunOptions,
    provider: FakeProvider,
    selector: Mapping[str, Any] = WHOLE,
    *,
    provider_options: Mapping[str, Any] | None = None,
    open_count: int = 20,
) -> str:
    provider.seed(open_count=open_count)
    return planning.start_run(ctx, provider.name, selector, options, provider_options=provider_options).id


def run_of(ledger: SqlLedger, run_id: str) -> Run:
    run = ledger.get_run(run_id)
    assert run is not None
    return run


def item_of(ledger: SqlLedger, run_id: str, invoice_id: str) -> Item:
    return next(item for item in ledger.iter_items(run_id) if item.invoice.invoice_id == invoice_id)


def history(ledger: SqlLedger, run_id: str) -> list[str]:
    return [event.code for event in ledger.status_events(run_id)]


def steps(ledger: SqlLedger, run_id: str) -> list[tuple[str, StepPhase, str | None]]:
    return [(step.key, step.phase, step.ref) for step in ledger.steps(run_id)]


def first_chunk(ctx: Context, dispatcher: FakeDispatcher, run_id: str) -> int:
    """Plan the run here and take its first chunk's message off the broker."""
    planning.plan_run(ctx, run_id)
    return dispatcher.chunks()[0]


class TestWholeRun:
    def test_reverses_each_open_invoice_once_then_rebills_once(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert run.state is RunState.COMPLETED
        assert provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert provider.calls["job.create"] == 1
        assert provider.jobs[run_id].request == {
            "billing": BILLING,
            "party_id": None,
            "reference": run_id,
            "server_side": False,
        }
        assert history(ledger, run_id) == ["open", "running", "done"]
        assert [event.label for event in ledger.status_events(run_id)] == ["Open", "Running", "Done"]
        assert steps(ledger, run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert run.provider_state == {"cycle": CYCLE, "batch": f"batch-{run_id[:8]}", "job": "job-1"}
        assert ledger.item_counts(run_id) == {ItemState.REVERSED: 20, ItemState.SKIPPED: 5}
        reversed_item = item_of(ledger, run_id, "1001")
        assert (reversed_item.result_ref, reversed_item.rebill_ref, reversed_item.new_amount) == (
            "CM-1001",
            "R-1001",
            Decimal("100.00"),
        )
        assert ledger.call_counts(run_id)[("invoice.reverse", "ok")] == 20

    def test_duplicated_messages_change_nothing(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        dispatcher.copies = 2
        dispatcher.deliver(ctx, clock=clock)

        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert max(provider.reversals().values()) == 1
        assert provider.calls["job.create"] == 1

    def test_paid_and_part_paid_invoices_are_left_as_is_with_reasons(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        skipped = {i.invoice.invoice_id: i.reason for i in ledger.iter_items(run_id, states={ItemState.SKIPPED})}
        assert set(skipped) == set(PAID_IDS)
        assert set(skipped.values()) == {HAS_PAYMENT}
        assert not set(provider.reversals()) & set(PAID_IDS)

    def test_an_invoice_paid_after_planning_is_left_as_is(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        planning.plan_run(ctx, run_id)
        provider.pay("1002", Decimal("95.00"))
        dispatcher.deliver(ctx, clock=clock)

        paid = item_of(ledger, run_id, "1002")
        assert (paid.state, paid.reason) == (ItemState.SKIPPED, "paid since planning")
        assert "1002" not in provider.reversals()
        assert run_of(ledger, run_id).state is RunState.COMPLETED


class TestRefusals:
    @pytest.mark.parametrize(
        ("selector", "message"),
        [
            ({"billing": ""}, "bad selector"),
            ({"billing": BILLING, "cycle": CYCLE}, r"bad selector: .*\['cycle'\]"),
            ({"billing": "1999-01"}, "no billing '1999-01' on the Fake platform"),
        ],
    )
    def test_bad_selectors_leave_no_run(
        self,
        ctx: Context,
        provider: FakeProvider,
        options: RunOptions,
        ledger: SqlLedger,
        selector: dict[str, Any],
        message: str,
    ) -> None:
        provider.seed()
        with pytest.raises(RunRefused, match=message):
            planning.start_run(ctx, provider.name, selector, options)
        assert ledger.list_runs() == []

    def test_a_bad_provider_option_leaves_no_run(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        provider.seed()
        with pytest.raises(RunRefused, match="bad Fake option: colour"):
            planning.start_run(ctx, provider.name, WHOLE, options, provider_options={"colour": "red"})
        assert ledger.list_runs() == []

    def test_a_provider_not_configured_here_is_named(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        with pytest.raises(ConfigurationError, match="no provider 'aria'"):
            planning.start_run(ctx, "aria", WHOLE, options)
        assert ledger.list_runs() == []

    def test_a_billing_that_is_not_closed_is_refused(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        provider.seed()
        provider.billings[BILLING].closed = False
        with pytest.raises(RunRefused, match="is still open: only a closed billing"):
            planning.start_run(ctx, provider.name, WHOLE, options)
        assert ledger.list_runs() == []

    def test_a_second_run_of_the_same_billing_is_refused(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        first = start(ctx, options, provider)
        with pytest.raises(RunRefused, match=f"already taken by run {first}"):
            planning.start_run(ctx, provider.name, WHOLE, options)
        assert [run.id for run in ledger.list_runs()] == [first]


class TestUnknownOutcomes:
    def test_a_lost_reply_is_settled_by_reading_never_by_sending_again(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.applied_then_lost(
            "invoice.reverse",
            "1003",
            ProviderTimeout("read timeout", operation="invoice.reverse", may_have_applied=True),
        )
        dispatcher.deliver(ctx, clock=clock)

        assert provider.reversals()["1003"] == 1
        item = item_of(ledger, run_id, "1003")
        assert item.state is ItemState.REVERSED
        assert item.settled_by_read
        assert item.reason == "confirmed reversed by reading the invoice"
        assert item.rebill_ref == "R-1003"  # what the follow-up learnt did not erase how it was settled
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_an_abandoned_claim_is_recovered_by_the_reconciler_after_its_lease(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        dispatcher.sent.clear()  # the broker lost every message
        # A worker claimed an item and died before finishing it.
        ledger.claim_items(chunk_id, owner="dead", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(ctx.runtime.lost_message_seconds + 1)

        found = reconciler.reconcile(ctx)
        dispatcher.deliver(ctx, clock=clock)

        assert found.chunks >= 1
        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert provider.reversals() == dict.fromkeys(OPEN_IDS, 1)

    def test_a_step_whose_answer_was_lost_is_settled_by_reading_never_resent(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.applied_then_lost(
            "job.create", BILLING, ProviderTimeout("read timeout", operation="job.create", may_have_applied=True)
        )
        dispatcher.deliver(ctx, clock=clock)

        assert provider.calls["job.create"] == 1
        assert len(provider.jobs) == 1
        assert steps(ledger, run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_step_without_answer_and_without_trace_asks_for_attention_then_retry_sends_it(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("job.create", BILLING, ProviderTimeout("timeout", may_have_applied=True))
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.REBILL_OUTCOME_UNKNOWN)
        assert "rebill got no answer and Fake shows no sign of it" in (run.reason or "")
        assert provider.jobs == {}
        assert provider.calls["job.create"] == 1
        assert steps(ledger, run_id) == [("rebill", StepPhase.UNKNOWN, None)]

        result = runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert "sending the rebill again" in result.message
        assert provider.calls["job.create"] == 2
        assert len(provider.jobs) == 1
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_retry_after_an_unknown_step_that_did_land_follows_it_without_resending(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        # Given a job that stays invisible to reading until the settle window has passed
        provider.script("queued", "queued", "queued", "queued", "queued", "running", "done")
        ctx.runtime = dataclasses.replace(ctx.runtime, rebill_settle_seconds=2)
        run_id = start(ctx, options, provider)
        provider.applied_then_lost("job.create", BILLING, ProviderTimeout("timeout", may_have_applied=True))
        dispatcher.deliver(ctx, clock=clock)
        assert run_of(ledger, run_id).reason_code is ReasonCode.REBILL_OUTCOME_UNKNOWN

        # When the operator retries once it shows up
        provider.script("running", "done", run_id=run_id)
        result = runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        # Then it is followed, never sent again
        assert "did reach" in result.message
        assert provider.calls["job.create"] == 1
        assert run_of(ledger, run_id).state is RunState.COMPLETED


class TestSteps:
    def test_a_refused_step_fails_the_run_and_retry_sends_it_again(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("job.create", BILLING, ProviderRefused("billing is locked", operation="job.create"))
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.REBILL_REFUSED)
        assert run.reason == "Fake refused rebill: billing is locked"
        assert steps(ledger, run_id) == [("rebill", StepPhase.FAILED, None)]

        runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert provider.calls["job.create"] == 2
        assert steps(ledger, run_id) == [("rebill", StepPhase.SENT, "job-1")]
        assert ledger.steps(run_id)[0].attempts == 2
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_step_failing_transiently_before_it_left_is_sent_again(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("job.create", BILLING, ProviderUnavailable("connection refused", operation="job.create"))
        dispatcher.deliver(ctx, clock=clock)

        assert provider.calls["job.create"] == 2
        assert len(provider.jobs) == 1
        assert ledger.steps(run_id)[0].attempts == 2
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_finished_run_is_never_rebilled_again(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        dispatcher.rebill(run_id)
        dispatcher.poll(run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert provider.calls["job.create"] == 1
        assert "never re-run" in runs.retry_run(ctx, run_id).message


class TestClaims:
    def test_a_worker_whose_claim_was_taken_over_never_sends_the_reversal(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        [slow] = ledger.claim_items(chunk_id, owner="slow", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(1)  # the slow worker's lease ran out while it waited ...
        [taken] = ledger.claim_items(
            chunk_id, owner="fast", now=clock(), lease_until=clock.now + ctx.runtime.lease, limit=1
        )
        assert taken.id == slow.id  # ... and another worker took the item over

        outcomes = reversal.work_unit(
            ctx, provider, run_of(ledger, run_id), [slow], owner="slow", lease_until=clock.now - timedelta(seconds=1)
        )

        assert outcomes[slow.id].state is ItemState.IN_FLIGHT
        assert provider.reversals() == {}
        assert provider.calls["invoice.reverse"] == 0

    def test_claims_take_a_batch_in_id_order_and_never_the_same_item_twice(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        lease_until = clock.now + ctx.runtime.lease

        first = ledger.claim_items(chunk_id, owner="a", now=clock(), lease_until=lease_until, limit=3)
        second = ledger.claim_items(chunk_id, owner="b", now=clock(), lease_until=lease_until, limit=3)

        chunk = sorted(i.id for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id)
        assert [i.id for i in first] == chunk[:3]
        assert [i.id for i in second] == chunk[3:]
        assert all(i.state is ItemState.IN_FLIGHT and i.claims_total == 1 for i in first + second)

    def test_finishing_a_batch_claims_the_next_in_the_same_transaction(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, dataclasses.replace(options, chunk_size=10), provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        lease_until = clock.now + ctx.runtime.lease
        first = ledger.claim_items(chunk_id, owner="a", now=clock(), lease_until=lease_until, limit=3)
        held = ledger.claim_items(chunk_id, owner="b", now=clock(), lease_until=lease_until, limit=1)

        done = [FinishedItem(item, ItemOutcome(ItemState.REVERSED), []) for item in first]
        following = ledger.finish_and_claim(
            done, owner="a", now=clock(), chunk_id=chunk_id, lease_until=lease_until, limit=3
        )

        chunk = sorted(i.id for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id)
        assert [i.id for i in held] == chunk[3:4]
        assert [i.id for i in following] == chunk[4:7]  # past the finished ones and the one b holds
        states = {i.id: i.state for i in ledger.iter_items(run_id)}
        assert all(states[i.id] is ItemState.REVERSED for i in first)
        assert all(states[i.id] is ItemState.IN_FLIGHT for i in following)

    def test_a_worker_killed_mid_batch_leaves_its_claims_to_be_settled_by_reading(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        batch = sorted((i for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id), key=lambda i: i.id)
        killed_at = batch[2].invoice.invoice_id
        provider.applied_then_lost("invoice.reverse", killed_at, WorkerKilled())

        with pytest.raises(WorkerKilled):
            reversal.process_chunk(ctx, run_id, chunk_id)

        states = {i.id: i.state for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id}
        assert [states[i.id] for i in batch[:2]] == [ItemState.REVERSED] * 2  # worked before the kill: written
        assert all(states[i.id] is ItemState.IN_FLIGHT for i in batch[2:])  # the rest stay claimed

        clock.advance(ctx.runtime.lease_seconds + 1)
        reversal.process_chunk(ctx, run_id, chunk_id)

        after = {i.invoice.invoice_id: i for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id}
        assert all(item.state is ItemState.REVERSED for item in after.values())
        assert after[killed_at].settled_by_read
        assert all(provider.reversals()[invoice_id] == 1 for invoice_id in after)

    def test_a_worker_done_with_its_chunk_helps_with_one_another_worker_is_in(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        busy = first_chunk(ctx, dispatcher, run_id)
        # Another worker took the busy chunk's message and is on its first item, slowly.
        dispatcher.sent = [message for message in dispatcher.sent if message[1] != (run_id, busy)]
        ledger.record_delivery(busy)
        [slow] = ledger.claim_items(busy, owner="slow", now=clock(), lease_until=clock.now + ctx.runtime.lease, limit=1)

        dispatcher.deliver(ctx, clock=clock)  # every other chunk, whose workers then help

        items = [i for i in ledger.iter_items(run_id) if i.chunk_id == busy]
        assert {i.id: i.state for i in items if i.state in (ItemState.PENDING, ItemState.IN_FLIGHT)} == {
            slow.id: ItemState.IN_FLIGHT
        }
        assert slow.invoice.invoice_id not in provider.reversals()
        assert all(count == 1 for count in provider.reversals().values())

    def test_no_help_is_taken_up_once_the_task_has_run_half_the_visibility_timeout(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        ctx.runtime = dataclasses.replace(ctx.runtime, max_countdown_seconds=0)
        run_id = start(ctx, options, provider)
        busy = first_chunk(ctx, dispatcher, run_id)
        dispatcher.sent = [message for message in dispatcher.sent if message[1] != (run_id, busy)]
        ledger.record_delivery(busy)

        dispatcher.deliver(ctx, clock=clock)

        assert all(i.state is ItemState.PENDING for i in ledger.iter_items(run_id) if i.chunk_id == busy)


class WorkerKilled(BaseException):
    """Stands for the process dying in the middle of a batch: nothing after it runs."""


class TestFailuresAndRetry:
    def test_transient_errors_back_off_and_succeed(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("invoice.reverse", "1002", ProviderThrottled("429", retry_after=3))
        dispatcher.deliver(ctx, clock=clock)

        item = item_of(ledger, run_id, "1002")
        assert (item.state, item.attempts, provider.reversals()["1002"]) == (ItemState.REVERSED, 2, 1)
        assert ledger.call_counts(run_id)[("invoice.reverse", "transient")] == 1

    def test_transient_errors_past_max_attempts_fail_the_item(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("invoice.check", "1004", *[ProviderThrottled("429") for _ in range(3)])
        dispatcher.deliver(ctx, clock=clock)

        item = item_of(ledger, run_id, "1004")
        assert item.state is ItemState.FAILED
        assert item.reason == "gave up after 3 attempts: 429"
        assert run_of(ledger, run_id).state is RunState.NEEDS_ATTENTION

    def test_a_permanent_failure_blocks_the_rebill_until_retry_completes_it(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail(
            "invoice.reverse", "1005", ProviderRefused("invoice.reverse: locked", operation="invoice.reverse")
        )
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS)
        assert provider.jobs == {}
        failed = next(ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed.reason == "invoice.reverse: locked"

        result = runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert result.resumed
        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert provider.calls["job.create"] == 1
        assert "never re-run" in runs.retry_run(ctx, run_id).message

    def test_a_chunk_that_keeps_killing_workers_ends_failed(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        for _ in range(ctx.runtime.max_deliveries):
            ledger.record_delivery(chunk_id)  # deliveries that died before finishing
        dispatcher.deliver(ctx, clock=clock)

        failed = list(ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed
        assert all("delivered" in (item.reason or "") for item in failed)
        assert all(item.chunk_id == chunk_id for item in failed)
        assert run_of(ledger, run_id).reason_code is ReasonCode.FAILED_ITEMS

    def test_nothing_reversed_means_nobody_to_rebill(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider, open_count=2)
        planning.plan_run(ctx, run_id)
        provider.pay("1001", Decimal("95.00"))
        provider.pay("1002", Decimal("10.00"))
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.NOTHING_TO_REVERSE)
        assert provider.jobs == {}


class TestPlanning:
    def test_a_coordinator_killed_mid_planning_resumes_without_duplicates(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("invoice.list", "14", ProviderTimeout("timeout"))
        with pytest.raises(ProviderTimeout):
            dispatcher.deliver(ctx, clock=clock)
        assert run_of(ledger, run_id).plan_offset == 14

        planning.plan_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert sum(ledger.item_counts(run_id).values()) == 25
        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert max(provider.reversals().values()) == 1
        assert provider.batches_opened[run_id] == 2  # prepared again on resume: the provider makes it safe
        assert run_of(ledger, run_id).provider_state["batch"] == f"batch-{run_id[:8]}"

    def test_the_first_chunks_are_dispatched_before_planning_ends(
        self, ctx: Context, provider: FakeProvider, dispatcher: FakeDispatcher, options: RunOptions, ledger: SqlLedger
    ) -> None:
        run_id = start(ctx, options, provider, open_count=40)
        last_page = str(45 // provider.page_size * provider.page_size)
        provider.fail("invoice.list", last_page, ProviderTimeout("timeout"))

        with pytest.raises(ProviderTimeout):
            planning.plan_run(ctx, run_id)

        assert run_of(ledger, run_id).state is RunState.PLANNING
        assert dispatcher.count("reverse_chunk") >= 1

    def test_a_permanent_error_while_planning_fails_the_run_and_retry_resumes_it(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("invoice.list", "7", ProviderRefused("page refused", operation="invoice.list"))
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.PLANNING_FAILED)
        assert "planning stopped: page refused" in (run.reason or "")

        clock.advance(1)
        runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        # The chunk dispatched before planning stopped was sent again, not left to the reconciler.

        assert sum(ledger.item_counts(run_id).values()) == 25
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_dry_run_writes_nothing_to_the_platform(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        provider.seed()
        run = planning.start_run(ctx, provider.name, WHOLE, dataclasses.replace(options, dry_run=True))

        assert run.state is RunState.DRY_RUN
        assert provider.writes() == set()
        assert ledger.item_counts(run.id) == {ItemState.PENDING: 20, ItemState.SKIPPED: 5}
        plan = reports.dry_run_plan(ctx, run)
        assert (plan["to_reverse"], plan["amount_to_reverse"], plan["skipped"]) == (20, "1900.00", {HAS_PAYMENT: 5})
        assert plan["follow_up"] == [
            {"step": "rebill", "billing": BILLING, "party_id": None, "reference": run.id, "server_side": False}
        ]
        assert "previewed" not in plan
        # A dry run does not hold the billing: the real run may follow.
        planning.start_run(ctx, provider.name, WHOLE, options)

    def test_a_single_contact_run_touches_only_that_party(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider, {"billing": BILLING, "party_id": "P1007"})
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.selection.whole, run.selection.label) == (False, f"billing {BILLING} ({CYCLE}) for party P1007")
        assert provider.reversals() == {"1007": 1}
        assert provider.jobs[run_id].request["party_id"] == "P1007"
        assert run.state is RunState.COMPLETED
        with pytest.raises(RunRefused, match=f"already has a partial run {run_id}"):
            planning.start_run(ctx, provider.name, WHOLE, options)


class TestFollowUp:
    def test_a_failed_job_fails_the_run_and_is_never_retried(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("running", "failed")
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.FAILED, ReasonCode.BILLING_FAILED)
        assert history(ledger, run_id) == ["open", "running", "failed"]
        with pytest.raises(RunRefused, match="could bill members twice"):
            runs.retry_run(ctx, run_id)

    def test_a_held_job_is_released_once_when_the_run_allows_it(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("running", "held", "held", "held", "running", "done")
        run_id = start(ctx, options, provider, provider_options={"release_held": True})
        seen_held: list[bool] = []
        while dispatcher.sent:
            dispatcher.deliver(ctx, clock=clock, limit=1)
            seen_held.append(run_of(ledger, run_id).provider_state.get("held", False))

        assert provider.calls["job.release"] == 1
        assert provider.jobs[run_id].released
        assert steps(ledger, run_id) == [("rebill", StepPhase.SENT, "job-1"), ("release", StepPhase.SENT, "job-1")]
        assert history(ledger, run_id) == ["open", "running", "held", "running", "done"]
        assert run_of(ledger, run_id).state is RunState.COMPLETED
        # The provider kept that the job was held while it was, and dropped it after (a None value removes it).
        assert True in seen_held
        assert "held" not in run_of(ledger, run_id).provider_state

    def test_a_held_job_waits_for_an_operator_and_retry_follows_it_again(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("running", "held", "done")
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
        assert "job job-1 is held for review on the Fake platform" in (run.reason or "")
        assert provider.calls["job.release"] == 0

        result = runs.retry_run(ctx, run_id)  # the operator released it on the platform
        dispatcher.deliver(ctx, clock=clock)

        assert "following it" in result.message
        assert provider.calls["job.create"] == 1
        assert history(ledger, run_id) == ["open", "running", "held", "done"]
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_notice_shows_why_the_run_waits_until_it_moves_on(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("waiting", "waiting", "running", "done")
        run_id = start(ctx, options, provider)
        notices: list[str | None] = []
        while dispatcher.sent:
            dispatcher.deliver(ctx, clock=clock, limit=1)
            notices.append(run_of(ledger, run_id).notice)

        assert "the Fake platform queues job job-1 behind other work" in notices
        assert notices[-1] is None
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_no_status_change_past_the_deadline_is_stalled_and_retry_resumes_following(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("running")
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.reason_code) == (RunState.STALLED, ReasonCode.STALLED)
        assert "job-1: Running (running) has not changed for over 1 min" in (run.reason or "")
        assert history(ledger, run_id) == ["open", "running"]

        provider.script("done", run_id=run_id)
        runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert provider.calls["job.create"] == 1

    def test_a_platform_acting_on_the_whole_selection_reports_each_invoice_when_done(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider, provider_options={"server_side": True})
        planning.plan_run(ctx, run_id)
        provider.pay("1009", Decimal("1.00"))  # paid after planning: the platform's job leaves it open
        dispatcher.deliver(ctx, clock=clock)

        assert dispatcher.count("reverse_chunk") == 0
        assert provider.calls["invoice.reverse"] == 0
        assert provider.jobs[run_id].request["server_side"] is True
        counts = ledger.item_counts(run_id)
        assert counts == {ItemState.REVERSED: 19, ItemState.SKIPPED: 6}
        assert all(item.settled_by_read for item in ledger.iter_items(run_id, states={ItemState.REVERSED}))
        assert item_of(ledger, run_id, "1009").reason == "left open by the platform's job"
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_duplicated_follow_up_message_reads_nothing_twice(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("running", "running", "running", "done")
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)
        reads = provider.calls["job.get"]

        follow_up.follow(ctx, run_id)  # a late copy of a tick's message

        assert provider.calls["job.get"] == reads
        assert run_of(ledger, run_id).state is RunState.COMPLETED


class TestCancel:
    def test_cancel_stops_dispatching_and_frees_the_billing(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        planning.plan_run(ctx, run_id)
        assert "cancelled" in runs.cancel_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        run = run_of(ledger, run_id)
        assert (run.state, run.guard_held) == (RunState.CANCELLED, False)
        assert ledger.steps(run_id) == []
        assert provider.reversals() == {}
        assert provider.jobs == {}
        assert "never re-run" not in runs.retry_run(ctx, run_id).message
        planning.start_run(ctx, provider.name, WHOLE, options)  # the billing is free again

    def test_a_run_whose_step_was_sent_cannot_be_cancelled(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.script("held")
        run_id = start(ctx, options, provider)
        dispatcher.deliver(ctx, clock=clock)

        with pytest.raises(RunRefused, match="already sent rebill to fake"):
            runs.cancel_run(ctx, run_id)
        assert run_of(ledger, run_id).state is RunState.NEEDS_ATTENTION


class TestChunkProvider:
    """A provider whose one write covers a whole chunk (EnergyCAP's bulk reverse)."""

    def test_each_chunk_is_claimed_at_once_and_reversed_in_one_call(
        self,
        ctx: Context,
        bulk_provider: FakeBulkProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        ctx.runtime = dataclasses.replace(ctx.runtime, claim_batch_size=2)
        run_id = start(ctx, options, bulk_provider)
        dispatcher.deliver(ctx, clock=clock)

        assert run_of(ledger, run_id).state is RunState.COMPLETED
        assert bulk_provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert bulk_provider.calls["chunk.reverse"] == 4
        assert sorted(len(ids) for ids in bulk_provider.reversal_batches.values()) == [5, 5, 5, 5]
        chunk_ids = {item.chunk_id for item in ledger.iter_items(run_id, states={ItemState.REVERSED})}
        for chunk_id in chunk_ids:
            code = FakeBulkProvider.batch_code(run_id, chunk_id)
            chunk = [item for item in ledger.iter_items(run_id) if item.chunk_id == chunk_id]
            assert {item.result_ref for item in chunk} == {code}
            assert all(item.attempts == 1 for item in chunk)

    def test_a_chunk_claimed_before_is_settled_by_reading_its_batch(
        self,
        ctx: Context,
        bulk_provider: FakeBulkProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, bulk_provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        code = FakeBulkProvider.batch_code(run_id, chunk_id)
        bulk_provider.applied_then_lost("chunk.reverse", code, ProviderTimeout("timeout", may_have_applied=True))
        dispatcher.deliver(ctx, clock=clock)

        chunk = [item for item in ledger.iter_items(run_id) if item.chunk_id == chunk_id]
        assert all(item.state is ItemState.REVERSED and item.settled_by_read for item in chunk)
        assert all(item.reason == f"found in reversal batch {code}" for item in chunk)
        assert bulk_provider.calls["chunk.reverse"] == 4  # the lost one was never sent again
        assert bulk_provider.reversals() == dict.fromkeys(OPEN_IDS, 1)
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_transient_error_puts_every_item_of_the_chunk_back_to_wait(
        self,
        ctx: Context,
        bulk_provider: FakeBulkProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, bulk_provider)
        chunk_id = first_chunk(ctx, dispatcher, run_id)
        code = FakeBulkProvider.batch_code(run_id, chunk_id)
        bulk_provider.fail("chunk.reverse", code, ProviderUnavailable("503"))

        reversal.process_chunk(ctx, run_id, chunk_id)

        chunk = [item for item in ledger.iter_items(run_id) if item.chunk_id == chunk_id]
        assert len(chunk) == 5
        assert all(item.state is ItemState.RETRY_WAIT and item.next_attempt_at for item in chunk)

        dispatcher.deliver(ctx, clock=clock)

        chunk = [item for item in ledger.iter_items(run_id) if item.chunk_id == chunk_id]
        assert all(item.state is ItemState.REVERSED and item.attempts == 2 for item in chunk)
        assert run_of(ledger, run_id).state is RunState.COMPLETED

    def test_a_worker_done_with_its_chunk_never_helps_with_another(
        self,
        ctx: Context,
        bulk_provider: FakeBulkProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, bulk_provider)
        busy = first_chunk(ctx, dispatcher, run_id)
        # Another worker took the busy chunk's message and has not claimed it yet.
        dispatcher.sent = [message for message in dispatcher.sent if message[1] != (run_id, busy)]
        ledger.record_delivery(busy)

        dispatcher.deliver(ctx, clock=clock)

        assert all(item.state is ItemState.PENDING for item in ledger.iter_items(run_id) if item.chunk_id == busy)
        assert ledger.item_counts(run_id)[ItemState.REVERSED] == 15


class TestPreviewingProvider:
    def test_a_dry_run_asks_what_each_invoice_would_become_and_writes_nothing(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        provider.previews_items = True
        provider.seed()
        run = planning.start_run(ctx, provider.name, WHOLE, dataclasses.replace(options, dry_run=True))
        dispatcher.deliver(ctx, clock=clock)

        finished = run_of(ledger, run.id)
        assert finished.state is RunState.DRY_RUN
        assert provider.writes() == set()
        assert provider.calls["invoice.preview"] == 20
        assert ledger.item_counts(run.id) == {ItemState.PREVIEWED: 20, ItemState.SKIPPED: 5}
        assert {item.new_amount for item in ledger.iter_items(run.id, states={ItemState.PREVIEWED})} == {
            Decimal("100.00")
        }
        plan = reports.dry_run_plan(ctx, finished)
        assert (plan["to_reverse"], plan["previewed"], plan["new_amount"], plan["difference"]) == (
            20,
            20,
            "2000.00",
            "100.00",
        )
        planning.start_run(ctx, provider.name, WHOLE, options)  # a dry run holds nothing
