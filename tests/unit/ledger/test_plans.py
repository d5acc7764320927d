"""The plan writer's chunks: a run's first chunks are smaller, a chunk is sealed once full, a group stays whole."""

from __future__ import annotations

from decimal import Decimal

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.billing import Invoice
from orchestrator.domain.run import PlannedItem
from tests.fakes import FakeClock
from tests.unit.ledger.conftest import MakeRun


def pending(start: int, count: int, *, group: str | None = None) -> list[PlannedItem]:
    return [
        PlannedItem.eligible(Invoice(str(1000 + n), Decimal("95.00"), Decimal("95.00")), group=group)
        for n in range(start, start + count)
    ]


def chunk_sizes(ledger: SqlLedger, run_id: str) -> list[int]:
    """The run's chunks' sizes, in their order in the run."""
    chunk_ids = {item.chunk_id for item in ledger.iter_items(run_id) if item.chunk_id is not None}
    found = sorted(found for chunk_id in chunk_ids if (found := ledger.chunk_seq_and_size(chunk_id)))
    assert [seq for seq, _ in found] == list(range(len(found)))
    return [size for _, size in found]


def write_page(ledger: SqlLedger, clock: FakeClock, run_id: str, items: list[PlannedItem], *, at: int) -> None:
    assert ledger.record_plan_page(
        run_id, items, expected_offset=at, next_offset=at + len(items), chunk_size=8, ramp=2, now=clock()
    )


class TestChunks:
    def test_the_first_chunks_are_smaller_and_each_is_sealed_once_full(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run()
        write_page(ledger, clock, run.id, pending(0, 10), at=0)
        assert chunk_sizes(ledger, run.id) == [1, 1, 2, 2, 4]  # two each of an eighth, a quarter, a half of 8
        assert len(ledger.take_chunks_to_dispatch(run.id, window=100, now=clock())) == 5  # all full: sealed

        write_page(ledger, clock, run.id, pending(10, 10), at=10)
        assert chunk_sizes(ledger, run.id) == [1, 1, 2, 2, 4, 4, 6]  # then full chunks of 8
        assert len(ledger.take_chunks_to_dispatch(run.id, window=100, now=clock())) == 1  # the 6 waits for more

    def test_without_a_ramp_every_chunk_is_full(self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun) -> None:
        run = make_run()
        assert ledger.record_plan_page(
            run.id, pending(0, 20), expected_offset=0, next_offset=20, chunk_size=8, now=clock()
        )
        assert chunk_sizes(ledger, run.id) == [8, 8, 4]

    def test_a_group_stays_in_one_chunk_past_the_chunks_size(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run()
        items = [*pending(0, 3, group="A"), *pending(3, 1, group="B"), *pending(4, 2, group="C")]
        write_page(ledger, clock, run.id, items, at=0)
        assert chunk_sizes(ledger, run.id) == [3, 1, 2]  # A outgrows its chunk of 1; C's may go on next page
        assert len(ledger.take_chunks_to_dispatch(run.id, window=100, now=clock())) == 2

        write_page(ledger, clock, run.id, pending(6, 1, group="C"), at=6)
        assert chunk_sizes(ledger, run.id) == [3, 1, 3]
