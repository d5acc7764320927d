"""The reverse-and-rebill task: validation, status walk, rebill semantics, batches, outcomes."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypedDict, Unpack

import pytest

from simulators.imis.commands import BillGeneration, InvoiceAction, ReverseAction, TaskRequest
from simulators.imis.entities import BATCH_DELETED, COMPLETED, FAILED, PROCESSING, REVERSING, UNPOSTED_BATCH
from simulators.imis.errors import BadRequest, Conflict, Refused
from simulators.imis.faults import Faults
from simulators.imis.filters import Filter
from simulators.imis.seeding import SeededBilling
from simulators.imis.state import ImisState

PROGRESS_KEY = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"


def statuses(state: ImisState, key: str) -> list[int]:
    return [status for status, _ in state.billing_log_history(key)]


class GenerationChanges(TypedDict, total=False):
    """What a test changes in the bill generation `generation` writes."""

    cycle_name: str
    billing_log_key: str | None
    party_id: str | None
    original_key: str | None
    auto_post: bool


def generation(seeded: SeededBilling, **changes: Unpack[GenerationChanges]) -> BillGeneration:
    written = BillGeneration(
        cycle_name=seeded.cycle_name,
        effective_date=datetime(2025, 9, 1, tzinfo=UTC),
        run_name="Rebill",
        billing_log_key=PROGRESS_KEY,
        original_key=seeded.original_key,
        auto_post=True,
    )
    return replace(written, **changes)


def new_invoices(state: ImisState, log_key: str) -> dict[str, Decimal]:
    found, _ = state.find_invoices([Filter.parse("BillingLogKey", log_key)])
    return {i.bill_to: i.amount for i in found}


@pytest.fixture
def seeded(state: ImisState) -> SeededBilling:
    return state.seed_billing(invoices=60, seed=13, other_billings=1)


class TestBulkReverseAndRebill:
    def test_reverses_open_unpaid_invoices_and_rebills_their_parties(
        self, state: ImisState, seeded: SeededBilling
    ) -> None:
        # Given a completed billing with a realistic mix
        request = TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded))
        # When the both-actions task runs
        task_log_id = state.submit_task(request)
        assert state.wait_for_tasks(5)
        # Then every open unpaid invoice is reversed, nothing else
        reversed_ids = {i for i in seeded.invoice_ids if state.invoice(i).reversed}
        assert reversed_ids == set(seeded.open_invoice_ids)
        assert not any(state.invoice(i).reversed for i in seeded.other_open_invoice_ids)
        # and the progress log walked 5 -> 1 -> 2
        assert statuses(state, PROGRESS_KEY) == [REVERSING, PROCESSING, COMPLETED]
        log = state.billing_log(PROGRESS_KEY)
        assert log.original_key == seeded.original_key
        assert log.batch_id is not None
        assert state.batch(log.batch_id).status == "Posted"
        # and exactly the parties whose every invoice was reversed got one new invoice
        created = new_invoices(state, PROGRESS_KEY)
        assert set(created) == set(seeded.rebill_party_ids)
        rebill = state.counters()["rebills"]
        assert rebill == [
            {
                "task_log_id": task_log_id,
                "original_key": seeded.original_key,
                "progress_log_key": PROGRESS_KEY,
                "party_id": None,
                "auto_post": True,
                "with_reverse_action": True,
                "invoices_created": len(seeded.rebill_party_ids),
                "outcome": "complete",
            }
        ]
        assert state.tasks[task_log_id].status == "Completed"

    def test_new_invoice_renews_the_same_products(self, state: ImisState, seeded: SeededBilling) -> None:
        state.submit_task(TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded)))
        assert state.wait_for_tasks(5)
        created = new_invoices(state, PROGRESS_KEY)
        party = seeded.rebill_party_ids[0]
        old = [state.invoice(i) for i in seeded.invoice_ids if state.invoice(i).bill_to == party]
        assert created[party] == sum(i.amount for i in old)

    def test_generation_alone_after_client_side_reversals(self, state: ImisState, seeded: SeededBilling) -> None:
        # The orchestrator's own mode: reverse invoice by invoice, then send the bill generation alone.
        for invoice_id in seeded.open_invoice_ids:
            state.reverse_invoice("ProcessCashReversal", InvoiceAction(invoice_id, datetime(2026, 4, 23)))
        state.submit_task(TaskRequest(generate=generation(seeded)))
        assert state.wait_for_tasks(5)
        assert statuses(state, PROGRESS_KEY) == [PROCESSING, COMPLETED]
        assert set(new_invoices(state, PROGRESS_KEY)) == set(seeded.rebill_party_ids)

    def test_a_party_with_an_invoice_left_as_is_is_not_billed_again(self, state: ImisState) -> None:
        state.seed_examples()
        state.submit_task(
            TaskRequest(
                ReverseAction(original_key="a9f0db70-d684-481a-84cd-d8fa1cd8f404"),
                BillGeneration(
                    "Regular Membership Fees",
                    billing_log_key=PROGRESS_KEY,
                    original_key="a9f0db70-d684-481a-84cd-d8fa1cd8f404",
                    auto_post=True,
                ),
            )
        )
        assert state.wait_for_tasks(5)
        # 107 had 8165 (open, reversed) and 8166 (paid, left as-is): not billed again.
        assert set(new_invoices(state, PROGRESS_KEY)) == {"101", "102", "106", "23415"}
        assert state.invoice("8165").reversed
        assert not state.invoice("8166").reversed
        assert not state.invoice("7002").reversed  # older billing of the same cycle

    def test_without_a_named_log_the_server_creates_one(self, state: ImisState, seeded: SeededBilling) -> None:
        state.submit_task(
            TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded, billing_log_key=None))
        )
        assert state.wait_for_tasks(5)
        logs, total = state.find_billing_logs([Filter.parse("OriginalBillingLogKey", seeded.original_key)])
        assert total == 1
        assert statuses(state, logs[0].key) == [REVERSING, PROCESSING, COMPLETED]
        assert state.counters()["rebills"][0]["progress_log_key"] == logs[0].key

    def test_reverse_action_alone(self, state: ImisState, seeded: SeededBilling) -> None:
        task_log_id = state.submit_task(TaskRequest(reverse=ReverseAction(original_key=seeded.original_key)))
        assert state.wait_for_tasks(5)
        assert set(state.counters()["reversals"]) == set(seeded.open_invoice_ids)
        assert state.counters()["rebills"] == []
        assert state.tasks[task_log_id].status == "Completed"


class TestSingleContact:
    def test_only_the_named_party_is_rebilled(self, state: ImisState, seeded: SeededBilling) -> None:
        party = seeded.rebill_party_ids[3]
        mine = [i for i in seeded.invoice_ids if state.invoice(i).bill_to == party]
        state.submit_task(TaskRequest(ReverseAction(invoice_ids=tuple(mine)), generation(seeded, party_id=party)))
        assert state.wait_for_tasks(5)
        assert set(state.counters()["reversals"]) == set(mine)
        assert list(new_invoices(state, PROGRESS_KEY)) == [party]
        assert state.billing_log(PROGRESS_KEY).party_id == party

    def test_named_party_that_keeps_a_paid_invoice_gets_nothing(self, state: ImisState) -> None:
        state.seed_examples()
        state.submit_task(
            TaskRequest(
                ReverseAction(invoice_ids=("8165",)),
                BillGeneration(
                    "Regular Membership Fees",
                    billing_log_key=PROGRESS_KEY,
                    original_key="a9f0db70-d684-481a-84cd-d8fa1cd8f404",
                    party_id="107",
                    auto_post=True,
                ),
            )
        )
        assert state.wait_for_tasks(5)
        assert new_invoices(state, PROGRESS_KEY) == {}
        assert state.billing_log(PROGRESS_KEY).status == COMPLETED

    def test_listed_invoice_with_payment_is_refused_inside_the_task(self, state: ImisState) -> None:
        state.seed_examples()
        task_log_id = state.submit_task(TaskRequest(reverse=ReverseAction(invoice_ids=("8158", "8160"))))
        assert state.wait_for_tasks(5)
        assert state.tasks[task_log_id].reversed_invoice_ids == ["8158"]
        assert [r["invoice_id"] for r in state.tasks[task_log_id].refused] == ["8160"]
        assert state.counters()["refused_reversals"] == 1


class TestBatchesAndOutcomes:
    def test_unposted_batch_then_post(self, state: ImisState, seeded: SeededBilling) -> None:
        state.submit_task(
            TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded, auto_post=False))
        )
        assert state.wait_for_tasks(5)
        log = state.billing_log(PROGRESS_KEY)
        assert statuses(state, PROGRESS_KEY) == [REVERSING, PROCESSING, UNPOSTED_BATCH]
        assert log.batch_id is not None
        batch = state.batch(log.batch_id)
        assert (batch.status, batch.transaction_count) == ("Ready", len(seeded.rebill_party_ids))
        assert new_invoices(state, PROGRESS_KEY) == {}  # created only when posted
        assert state.counters()["rebills"][0]["invoices_created"] == 0

        state.post_batch(log.batch_id)
        assert statuses(state, PROGRESS_KEY)[-1] == COMPLETED
        assert batch.status == "Posted"
        assert set(new_invoices(state, PROGRESS_KEY)) == set(seeded.rebill_party_ids)
        assert state.counters()["rebills"][0]["invoices_created"] == len(seeded.rebill_party_ids)
        with pytest.raises(Refused, match="already been posted"):
            state.post_batch(log.batch_id)

    def test_fail_outcome(self, state: ImisState, seeded: SeededBilling) -> None:
        state.faults.update(rebill_outcome="fail")
        state.submit_task(TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded)))
        assert state.wait_for_tasks(5)
        log = state.billing_log(PROGRESS_KEY)
        assert statuses(state, PROGRESS_KEY) == [REVERSING, PROCESSING, FAILED]
        assert log.information
        assert state.batch(log.batch_id or "").posting_error == log.information
        assert new_invoices(state, PROGRESS_KEY) == {}
        assert set(state.counters()["reversals"]) == set(seeded.open_invoice_ids)  # the reversals did happen

    def test_batch_deleted_outcome(self, state: ImisState, seeded: SeededBilling) -> None:
        state.faults.update(rebill_outcome="batch_deleted")
        state.submit_task(TaskRequest(generate=generation(seeded)))
        assert state.wait_for_tasks(5)
        log = state.billing_log(PROGRESS_KEY)
        assert statuses(state, PROGRESS_KEY) == [PROCESSING, BATCH_DELETED]
        assert log.batch_id is not None
        with pytest.raises(Refused, match="not found"):
            state.post_batch(log.batch_id)

    def test_stall_outcome_stays_at_its_status(self, state: ImisState, seeded: SeededBilling) -> None:
        state.faults.update(rebill_outcome="stall")
        task_log_id = state.submit_task(
            TaskRequest(ReverseAction(original_key=seeded.original_key), generation(seeded))
        )
        assert state.wait_for_tasks(5)  # the thread is gone...
        state.faults.update(rebill_outcome="complete")
        assert statuses(state, PROGRESS_KEY) == [REVERSING, PROCESSING]  # ...and the log never moves on
        assert state.tasks[task_log_id].status == "Stalled"
        assert state.batch(state.billing_log(PROGRESS_KEY).batch_id or "").status == "Open"

    def test_steps_take_task_step_seconds(self, seeded: SeededBilling) -> None:
        with ImisState(faults=Faults(task_step_seconds=0.15)) as state:
            billing = state.seed_billing(invoices=10, seed=1)
            started = time.monotonic()
            state.submit_task(TaskRequest(ReverseAction(original_key=billing.original_key), generation(billing)))
            assert state.billing_log(PROGRESS_KEY).status == REVERSING
            assert state.wait_for_tasks(5)
            assert time.monotonic() - started >= 0.3
            times = [at for _, at in state.billing_log_history(PROGRESS_KEY)]
            assert (times[1] - times[0]).total_seconds() >= 0.14
            assert (times[2] - times[1]).total_seconds() >= 0.14

    def test_batch_is_open_while_bills_are_generated(self) -> None:
        with ImisState(faults=Faults(task_step_seconds=0.2)) as state:
            billing = state.seed_billing(invoices=5, seed=1)
            state.submit_task(TaskRequest(generate=generation(billing, auto_post=False)))
            log = state.billing_log(PROGRESS_KEY)
            assert log.status == PROCESSING
            assert log.batch_id is not None
            batch = state.batch(log.batch_id)
            assert (batch.status, batch.transaction_count) == ("Open", 0)
            with pytest.raises(Refused, match="not ready"):
                state.post_batch(log.batch_id)
            assert state.wait_for_tasks(5)
            assert (batch.status, log.status) == ("Ready", UNPOSTED_BATCH)

    def test_close_stops_a_running_task(self) -> None:
        state = ImisState(faults=Faults(task_step_seconds=30))
        billing = state.seed_billing(invoices=5, seed=1)
        task_log_id = state.submit_task(TaskRequest(ReverseAction(original_key=billing.original_key)))
        started = time.monotonic()
        state.close()
        assert time.monotonic() - started < 2
        assert state.tasks[task_log_id].status == "Cancelled"
        assert state.counters()["reversals"] == {}


class TestValidation:
    def test_no_actions(self, state: ImisState) -> None:
        with pytest.raises(BadRequest, match="no actions"):
            state.submit_task(TaskRequest())

    def test_unknown_original_billing(self, state: ImisState, seeded: SeededBilling) -> None:
        with pytest.raises(BadRequest, match="not found") as caught:
            state.submit_task(TaskRequest(reverse=ReverseAction(original_key="00000000-0000-4000-8000-000000000000")))
        assert caught.value.field == "OriginalBillingLogKey"
        with pytest.raises(BadRequest, match="not found"):
            state.submit_task(
                TaskRequest(generate=generation(seeded, original_key="00000000-0000-4000-8000-000000000000"))
            )

    @pytest.mark.parametrize("scope", ["both", "neither"])
    def test_reverse_needs_exactly_one_scope(self, state: ImisState, seeded: SeededBilling, scope: str) -> None:
        action = (
            ReverseAction(original_key=seeded.original_key, invoice_ids=seeded.invoice_ids[:1])
            if scope == "both"
            else ReverseAction()
        )
        with pytest.raises(BadRequest, match="not both and not neither"):
            state.submit_task(TaskRequest(reverse=action))

    def test_other_mistakes(self, state: ImisState, seeded: SeededBilling) -> None:
        with pytest.raises(BadRequest, match="Invoice 'nope'"):
            state.submit_task(TaskRequest(reverse=ReverseAction(invoice_ids=("nope",))))
        with pytest.raises(BadRequest, match="Billing cycle"):
            state.submit_task(TaskRequest(generate=generation(seeded, cycle_name="Nope", original_key=None)))
        other = state.seed_billing(invoices=3, seed=99, cycle_name="Chapter Dues")
        with pytest.raises(BadRequest, match="is not the cycle"):
            state.submit_task(TaskRequest(generate=generation(seeded, original_key=other.original_key)))
        with pytest.raises(BadRequest, match="differ"):
            state.submit_task(TaskRequest(ReverseAction(original_key=other.original_key), generation(seeded)))
        with pytest.raises(BadRequest, match="Contact"):
            state.submit_task(TaskRequest(generate=generation(seeded, party_id="nobody")))
        assert state.tasks == {}

    def test_a_busy_progress_log_is_a_conflict(self) -> None:
        with ImisState(faults=Faults(task_step_seconds=0.2)) as state:
            billing = state.seed_billing(invoices=5, seed=1)
            state.submit_task(TaskRequest(generate=generation(billing)))
            with pytest.raises(Conflict):
                state.submit_task(TaskRequest(generate=generation(billing)))
