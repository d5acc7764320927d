"""Item outcomes in the ledger (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.run import ItemOutcome, ItemState
from orchestrator.services.ports import FinishedItem
from tests.fakes import FakeClock
from tests.unit.ledger.conftest import MakeRun


class TestSetItemOutcomes:
    def test_what_was_learnt_before_is_kept_when_a_later_outcome_does_not_repeat_it(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        # Given an item settled by reading, with its credit memo, and another merely reversed
        run = make_run(invoices=2)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        first, second = ledger.claim_items(chunk_id, owner="w", now=clock(), lease_until=clock.now, limit=2)
        settled = ItemOutcome(
            ItemState.REVERSED, reason="confirmed by reading", settled_by_read=True, result_ref="CM-1"
        )
        ledger.finish_items(
            [FinishedItem(first, settled, ()), FinishedItem(second, ItemOutcome(ItemState.REVERSED), ())],
            owner="w",
            now=clock(),
        )

        # When the follow-up learns each one's rebill invoice
        ledger.set_item_outcomes(
            run.id,
            [
                (first.id, ItemOutcome(ItemState.REVERSED, reason="confirmed by reading", rebill_ref="R-1")),
                (second.id, ItemOutcome(ItemState.SKIPPED, reason="rebilled by hand")),
            ],
            now=clock(),
        )

        # Then the first keeps how it was settled and its credit memo; the second takes the new outcome
        after = {item.id: item for item in ledger.iter_items(run.id)}
        assert (after[first.id].settled_by_read, after[first.id].result_ref, after[first.id].rebill_ref) == (
            True,
            "CM-1",
            "R-1",
        )
        assert (after[second.id].state, after[second.id].reason, after[second.id].settled_by_read) == (
            ItemState.SKIPPED,
            "rebilled by hand",
            False,
        )


class TestHastenChunk:
    """A chunk's wake-up is brought forward, never past one due sooner nor into a delivery being worked."""

    @pytest.mark.parametrize(
        ("scheduled_in", "hasten_to", "delivering", "moved"),
        [
            pytest.param(120, 3, False, True, id="a-later-wake-up-is-brought-forward"),
            pytest.param(2, 3, False, False, id="one-due-sooner-is-kept"),
            pytest.param(3, 3, False, False, id="one-due-then-is-kept"),
            pytest.param(0, 3, False, True, id="one-already-due-gets-a-new-one"),
            pytest.param(120, 3, True, False, id="a-delivery-being-worked-decides-itself"),
        ],
    )
    def test_when_a_wake_up_is_brought_forward(
        self,
        ledger: SqlLedger,
        clock: FakeClock,
        make_run: MakeRun,
        scheduled_in: float,
        hasten_to: float,
        delivering: bool,
        moved: bool,
    ) -> None:
        run = make_run(invoices=2)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        assert ledger.requeue_chunk(chunk_id, at=clock.now + timedelta(seconds=scheduled_in), now=clock())
        if delivering:
            ledger.record_delivery(chunk_id)

        hastened = ledger.hasten_chunk(chunk_id, at=clock.now + timedelta(seconds=hasten_to), now=clock())

        assert hastened is moved
        # Whichever wake-up it holds is still to come: the chunk takes no other.
        assert not ledger.requeue_chunk(chunk_id, at=clock.now, now=clock())
