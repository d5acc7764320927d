"""The services end to end over the real ledger, with a fake tenant and synchronous delivery."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.billing import BillingLogStatus
from orchestrator.domain.errors import ProviderRefused, ProviderThrottled, ProviderTimeout, RunRefused
from orchestrator.domain.run import ItemOutcome, ItemState, ReasonCode, RebillPhase, RunMode, RunOptions, RunState
from orchestrator.services import planning, reconciler, reversal, runs
from orchestrator.services.context import Context
from orchestrator.services.ports import FinishedItem
from tests.fakes import ORIGINAL_KEY, FakeClock, FakeDispatcher, FakeProvider

P, C = BillingLogStatus.PROCESSING, BillingLogStatus.COMPLETED
OPEN_IDS = [str(n) for n in range(1001, 1021)]
PAID_IDS = [str(n) for n in range(1021, 1026)]


def start(ctx: Context, options: RunOptions, provider: FakeProvider, **seed: int) -> str:
    provider.seed(**seed)
    run = planning.start_run(ctx, ORIGINAL_KEY, options)
    if run.tracking_log_key:
        provider.on_submit = lambda p: p.walk(run.tracking_log_key, P, P, C)  # type: ignore[arg-type]
    return run.id


def history(ledger: SqlLedger, run_id: str) -> list[int]:
    return [int(event.status) for event in ledger.status_events(run_id)]


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

        run = ledger.get_run(run_id)
        assert run is not None
        assert run.state is RunState.COMPLETED
        assert dict(provider.reversals) == dict.fromkeys(OPEN_IDS, 1)
        assert len(provider.submitted) == 1
        rebill_request, reversal = provider.submitted[0]
        assert reversal is None
        assert rebill_request is not None
        assert rebill_request.tracking_log_key == run.tracking_log_key
        assert rebill_request.run_name == "Rebill: Regular Membership Fees"
        assert history(ledger, run_id) == [5, 1, 2]
        counts = ledger.item_counts(run_id)
        assert counts == {ItemState.REVERSED: 20, ItemState.SKIPPED: 5}

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

        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]
        assert max(provider.reversals.values()) == 1
        assert len(provider.submitted) == 1

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
        assert set(skipped.values()) == {"has a payment applied"}
        assert not set(provider.reversals) & set(PAID_IDS)


class TestRefusals:
    @pytest.mark.parametrize(
        ("key", "message"),
        [
            ("not-a-guid", "is not a BillingLogKey"),
            ("11111111-2222-3333-4444-555555555555", "no BillingLog 11111111-2222-3333-4444-555555555555"),
        ],
    )
    def test_bad_keys_leave_no_run(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger, key: str, message: str
    ) -> None:
        provider.seed()
        with pytest.raises(RunRefused, match=message):
            planning.start_run(ctx, key, options)
        assert ledger.list_runs() == []

    def test_a_billing_that_is_not_completed_is_refused(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        provider.seed()
        provider.set_status(ORIGINAL_KEY, BillingLogStatus.PROCESSING)
        with pytest.raises(RunRefused, match=r"is Processing \(1\), not Completed \(2\)"):
            planning.start_run(ctx, ORIGINAL_KEY, options)
        assert ledger.list_runs() == []

    def test_a_second_run_of_the_same_billing_is_refused(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        first = start(ctx, options, provider)
        with pytest.raises(RunRefused, match=f"already taken by run {first}"):
            planning.start_run(ctx, ORIGINAL_KEY, options)
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
            "Invoice.ProcessCashReversal",
            "1003",
            ProviderTimeout("read timeout", operation="Invoice.ProcessCashReversal", may_have_applied=True),
        )
        dispatcher.deliver(ctx, clock=clock)

        assert provider.reversals["1003"] == 1
        item = next(i for i in ledger.iter_items(run_id) if i.invoice.invoice_id == "1003")
        assert item.state is ItemState.REVERSED
        assert item.settled_by_read
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]

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
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
        dispatcher.sent.clear()  # the broker lost every message
        # A worker claimed an item and died before finishing it.
        ledger.claim_items(chunk_id, owner="dead", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(ctx.runtime.lost_message_seconds + 1)

        found = reconciler.reconcile(ctx)
        dispatcher.deliver(ctx, clock=clock)

        assert found.chunks >= 1
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]
        assert dict(provider.reversals) == dict.fromkeys(OPEN_IDS, 1)

    def test_a_rebill_without_reply_that_did_land_is_followed_not_resent(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]
        real_submit = provider.submit

        def applied_but_lost(**kwargs: object) -> str:
            real_submit(**kwargs)  # type: ignore[arg-type]
            raise ProviderTimeout("read timeout", operation="TaskDefinition.execute", may_have_applied=True)

        provider.submit = applied_but_lost  # type: ignore[method-assign]
        provider.on_submit = lambda p: p.walk(tracking, P, C)  # type: ignore[arg-type]
        dispatcher.deliver(ctx, clock=clock)

        assert len(provider.submitted) == 1
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]

    def test_a_rebill_without_reply_and_without_trace_asks_for_attention(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        provider.fail("TaskDefinition.execute", "", ProviderTimeout("timeout", may_have_applied=True))
        dispatcher.deliver(ctx, clock=clock)

        run = ledger.get_run(run_id)
        assert run is not None
        assert run.state is RunState.NEEDS_ATTENTION
        assert run.reason_code is ReasonCode.REBILL_OUTCOME_UNKNOWN
        assert provider.submitted == []
        assert provider.calls["TaskDefinition.execute"] == 1


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
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
        [slow] = ledger.claim_items(chunk_id, owner="slow", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(1)  # the slow worker's lease ran out while it waited ...
        [taken] = ledger.claim_items(
            chunk_id, owner="fast", now=clock(), lease_until=clock.now + ctx.runtime.lease, limit=1
        )
        assert taken.id == slow.id  # ... and another worker took the item over

        run = ledger.get_run(run_id)
        assert run is not None
        outcome = reversal.reverse_item(ctx, run, slow, owner="slow", lease_until=clock.now - timedelta(seconds=1))

        assert outcome.state is ItemState.IN_FLIGHT
        assert provider.reversals == {}
        assert provider.calls["Invoice.ProcessCashReversal"] == 0

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
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
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
        run_id = start(ctx, options, provider)
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
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
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
        batch = sorted((i for i in ledger.iter_items(run_id) if i.chunk_id == chunk_id), key=lambda i: i.id)
        killed_at = batch[2].invoice.invoice_id
        provider.applied_then_lost("Invoice.ProcessCashReversal", killed_at, WorkerKilled())  # type: ignore[arg-type]

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
        assert all(provider.reversals[invoice_id] == 1 for invoice_id in after)

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
        planning.plan_run(ctx, run_id)
        busy = next(args[1] for name, args, _ in dispatcher.sent if name == "reverse_chunk")
        # Another worker took the busy chunk's message and is on its first item, slowly.
        dispatcher.sent = [message for message in dispatcher.sent if message[1] != (run_id, busy)]
        ledger.record_delivery(busy)
        [slow] = ledger.claim_items(busy, owner="slow", now=clock(), lease_until=clock.now + ctx.runtime.lease, limit=1)

        dispatcher.deliver(ctx, clock=clock)  # every other chunk, whose workers then help

        items = [i for i in ledger.iter_items(run_id) if i.chunk_id == busy]
        assert {i.id: i.state for i in items if i.state in (ItemState.PENDING, ItemState.IN_FLIGHT)} == {
            slow.id: ItemState.IN_FLIGHT
        }
        assert slow.invoice.invoice_id not in provider.reversals
        assert all(count == 1 for count in provider.reversals.values())

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
        planning.plan_run(ctx, run_id)
        busy = next(args[1] for name, args, _ in dispatcher.sent if name == "reverse_chunk")
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
        provider.fail("Invoice.ProcessCashReversal", "1002", ProviderThrottled("429", retry_after=3))
        dispatcher.deliver(ctx, clock=clock)

        item = next(i for i in ledger.iter_items(run_id) if i.invoice.invoice_id == "1002")
        assert (item.state, item.attempts, provider.reversals["1002"]) == (ItemState.REVERSED, 2, 1)

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
        provider.fail("Invoice.CanCashInvoiceBeReversed", "1004", *[ProviderThrottled("429") for _ in range(3)])
        dispatcher.deliver(ctx, clock=clock)

        item = next(i for i in ledger.iter_items(run_id) if i.invoice.invoice_id == "1004")
        assert item.state is ItemState.FAILED
        assert item.reason == "gave up after 3 attempts: 429"
        assert ledger.get_run(run_id).state is RunState.NEEDS_ATTENTION  # type: ignore[union-attr]

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
            "Invoice.ProcessCashReversal",
            "1005",
            ProviderRefused("Invoice.ProcessCashReversal: locked", operation="Invoice.ProcessCashReversal"),
        )
        dispatcher.deliver(ctx, clock=clock)

        run = ledger.get_run(run_id)
        assert run is not None
        assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS)
        assert provider.submitted == []
        failed = next(ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed.reason == "Invoice.ProcessCashReversal: locked"

        result = runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert result.resumed
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]
        assert dict(provider.reversals) == dict.fromkeys(OPEN_IDS, 1)
        assert len(provider.submitted) == 1
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
        planning.plan_run(ctx, run_id)
        chunk_id = dispatcher.sent[-1][1][1]
        for _ in range(ctx.runtime.max_deliveries):
            ledger.record_delivery(chunk_id)  # deliveries that died before finishing
        dispatcher.deliver(ctx, clock=clock)

        failed = list(ledger.iter_items(run_id, states={ItemState.FAILED}))
        assert failed
        assert all("delivered" in (item.reason or "") for item in failed)
        assert all(item.chunk_id == chunk_id for item in failed)


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
        provider.fail("InvoiceSummary.list", "14", ProviderTimeout("timeout"))
        with pytest.raises(ProviderTimeout):
            dispatcher.deliver(ctx, clock=clock)
        assert ledger.get_run(run_id).plan_offset == 14  # type: ignore[union-attr]

        planning.plan_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert sum(ledger.item_counts(run_id).values()) == 25
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]
        assert max(provider.reversals.values()) == 1

    def test_the_first_chunks_are_dispatched_before_planning_ends(
        self, ctx: Context, provider: FakeProvider, dispatcher: FakeDispatcher, options: RunOptions
    ) -> None:
        provider.seed(open_count=40)
        run = planning.start_run(ctx, ORIGINAL_KEY, options)
        pages = provider.iter_invoice_pages
        seen_chunks_before_last_page: list[int] = []

        def watching(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            for page in pages(*args, **kwargs):  # type: ignore[arg-type]
                if page.next_offset is None:
                    seen_chunks_before_last_page.append(dispatcher.count("reverse_chunk"))
                yield page

        provider.iter_invoice_pages = watching  # type: ignore[method-assign]
        planning.plan_run(ctx, run.id)
        assert seen_chunks_before_last_page[0] >= 1

    def test_a_dry_run_writes_nothing_to_the_tenant(
        self, ctx: Context, provider: FakeProvider, options: RunOptions, ledger: SqlLedger
    ) -> None:
        provider.seed()
        run = planning.start_run(ctx, ORIGINAL_KEY, dataclasses.replace(options, dry_run=True))

        assert run.state is RunState.DRY_RUN
        writes = {"BillingLog.create", "Invoice.ProcessCashReversal", "TaskDefinition.execute", "BatchSummary.Post"}
        assert not writes & set(provider.calls)
        assert ledger.item_counts(run.id) == {ItemState.PENDING: 20, ItemState.SKIPPED: 5}
        # A dry run does not hold the billing: the real run may follow.
        planning.start_run(ctx, ORIGINAL_KEY, options)

    def test_a_single_contact_run_touches_only_that_party(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, dataclasses.replace(options, party_id="P1007"), provider)
        dispatcher.deliver(ctx, clock=clock)

        assert dict(provider.reversals) == {"1007": 1}
        assert provider.submitted[0][0].party_id == "P1007"  # type: ignore[union-attr]
        assert provider.submitted[0][0].run_name == "Rebill: Regular Membership Fees for P1007"  # type: ignore[union-attr]
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]
        with pytest.raises(RunRefused, match="single-contact run"):
            planning.start_run(ctx, ORIGINAL_KEY, options)


class TestPolling:
    @pytest.mark.parametrize(
        ("final", "state", "code"),
        [
            (BillingLogStatus.FAILED, RunState.FAILED, ReasonCode.BILLING_FAILED),
            (BillingLogStatus.BATCH_DELETED, RunState.FAILED, ReasonCode.BILLING_FAILED),
        ],
    )
    def test_failed_and_deleted_batches_fail_the_run(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
        final: BillingLogStatus,
        state: RunState,
        code: ReasonCode,
    ) -> None:
        run_id = start(ctx, options, provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]
        provider.on_submit = lambda p: p.walk(tracking, P, final)  # type: ignore[arg-type]
        dispatcher.deliver(ctx, clock=clock)

        run = ledger.get_run(run_id)
        assert run is not None
        assert (run.state, run.reason_code) == (state, code)
        assert history(ledger, run_id) == [5, 1, int(final)]
        with pytest.raises(RunRefused, match="could bill members twice"):
            runs.retry_run(ctx, run_id)

    def test_an_unposted_batch_is_posted_once_then_followed_to_completion(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, dataclasses.replace(options, automatically_post_batch=False), provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]

        def unposted(p: FakeProvider) -> None:
            p.set_status(tracking, BillingLogStatus.UNPOSTED_BATCH, batch_id="B-1")  # type: ignore[arg-type]
            p.walk(
                tracking,
                BillingLogStatus.PROCESSING,
                BillingLogStatus.UNPOSTED_BATCH,  # type: ignore[arg-type]
                BillingLogStatus.UNPOSTED_BATCH,
                BillingLogStatus.COMPLETED,
            )

        provider.on_submit = unposted
        dispatcher.deliver(ctx, clock=clock)

        assert provider.posted_batches == ["B-1"]
        assert provider.submitted[0][0].auto_post_batch is False  # type: ignore[union-attr]
        assert history(ledger, run_id) == [5, 1, 4, 2]
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]

    def test_an_unposted_batch_left_alone_needs_attention_naming_it(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, dataclasses.replace(options, post_unposted_batch=False), provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]
        provider.on_submit = lambda p: p.set_status(tracking, BillingLogStatus.UNPOSTED_BATCH, batch_id="B-9")  # type: ignore[arg-type]
        dispatcher.deliver(ctx, clock=clock)

        run = ledger.get_run(run_id)
        assert run is not None
        assert run.state is RunState.NEEDS_ATTENTION
        assert "post batch B-9" in (run.reason or "")
        assert provider.posted_batches == []

    def test_no_status_change_past_the_deadline_is_stalled(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, options, provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]
        provider.on_submit = lambda p: p.walk(tracking, P)  # type: ignore[arg-type]
        dispatcher.deliver(ctx, clock=clock)

        run = ledger.get_run(run_id)
        assert run is not None
        assert (run.state, run.reason_code) == (RunState.STALLED, ReasonCode.STALLED)
        assert history(ledger, run_id) == [5, 1]


class TestNativeModeAndCancel:
    def test_native_mode_sends_one_task_with_both_actions_and_records_what_the_server_did(
        self,
        ctx: Context,
        provider: FakeProvider,
        dispatcher: FakeDispatcher,
        clock: FakeClock,
        options: RunOptions,
        ledger: SqlLedger,
    ) -> None:
        run_id = start(ctx, dataclasses.replace(options, mode=RunMode.NATIVE), provider)
        tracking = ledger.get_run(run_id).tracking_log_key  # type: ignore[union-attr]

        def server_side(p: FakeProvider) -> None:
            for invoice_id in OPEN_IDS:
                p.invoices[invoice_id] = dataclasses.replace(p.invoices[invoice_id], balance=Decimal("0"))
            p.walk(tracking, P, C)  # type: ignore[arg-type]

        provider.on_submit = server_side
        dispatcher.deliver(ctx, clock=clock)

        assert len(provider.submitted) == 1
        _, reversal = provider.submitted[0]
        assert reversal is not None
        assert reversal.billing_key == ORIGINAL_KEY
        assert provider.calls["Invoice.ProcessCashReversal"] == 0
        assert ledger.item_counts(run_id) == {ItemState.REVERSED: 20, ItemState.SKIPPED: 5}
        assert ledger.get_run(run_id).state is RunState.COMPLETED  # type: ignore[union-attr]

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

        run = ledger.get_run(run_id)
        assert run is not None
        assert run.state is RunState.CANCELLED
        assert run.rebill_phase is RebillPhase.NOT_SENT
        assert provider.reversals == {}
        assert provider.submitted == []
        assert "never re-run" not in runs.retry_run(ctx, run_id).message
