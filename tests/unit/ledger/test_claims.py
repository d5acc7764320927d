"""Item outcomes in the ledger (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

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
