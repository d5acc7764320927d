"""The plan writer: a selection's pages into items and chunks, each page with the cursor after it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from orchestrator.adapters.ledger.models import ChunkRow, ItemRow, RunRow
from orchestrator.adapters.ledger.rows import LedgerBase
from orchestrator.domain.run import ChunkState, ItemState, PlannedItem, RunState


class PlanWriter(LedgerBase):
    def record_plan_page(
        self,
        run_id: str,
        items: Sequence[PlannedItem],
        *,
        expected_offset: int,
        next_offset: int,
        chunk_size: int,
        now: datetime,
    ) -> bool:
        to_reverse = [p for p in items if p.state is ItemState.PENDING]
        with self._write.begin() as conn:
            plan_count = conn.execute(
                self._lock(
                    select(RunRow.plan_count).where(
                        RunRow.id == run_id,
                        RunRow.plan_offset == expected_offset,
                        RunRow.state == RunState.PLANNING.value,
                    )
                )
            ).scalar()
            if plan_count is None:
                return False
            chunk_ids = self._chunks_for(conn, run_id, plan_count, len(to_reverse), chunk_size)
            rows = []
            seq = plan_count
            for planned in items:
                chunk_id = None
                if planned.state is ItemState.PENDING and chunk_size:
                    chunk_id = chunk_ids[seq // chunk_size]
                    seq += 1
                rows.append(self._item_values(run_id, planned, chunk_id, now))
            if rows:
                conn.execute(self._insert_ignoring_duplicates(ItemRow), rows)
            conn.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    plan_offset=next_offset,
                    plan_count=RunRow.plan_count + len(to_reverse),
                    invoice_count=RunRow.invoice_count + len(items),
                    updated_at=now,
                )
            )
        return True

    def _chunks_for(self, conn: Connection, run_id: str, first_seq: int, count: int, chunk_size: int) -> dict[int, int]:
        """Chunk ids by chunk number for items first_seq..first_seq+count; creates and seals as needed."""
        if not count or not chunk_size:
            return {}
        numbers = range(first_seq // chunk_size, (first_seq + count - 1) // chunk_size + 1)
        existing = dict(
            conn.execute(
                select(ChunkRow.seq, ChunkRow.id).where(ChunkRow.run_id == run_id, ChunkRow.seq.in_(list(numbers)))
            ).all()
        )
        for number in numbers:
            start = max(first_seq, number * chunk_size)
            end = min(first_seq + count, (number + 1) * chunk_size)
            full = end == (number + 1) * chunk_size
            if number in existing:
                conn.execute(
                    update(ChunkRow)
                    .where(ChunkRow.id == existing[number])
                    .values(size=ChunkRow.size + (end - start), sealed=full)
                )
            else:
                existing[number] = conn.execute(
                    insert(ChunkRow)
                    .values(
                        run_id=run_id,
                        seq=number,
                        state=ChunkState.PLANNED.value,
                        size=end - start,
                        sealed=full,
                        dispatch_count=0,
                        deliveries=0,
                    )
                    .returning(ChunkRow.id)
                ).scalar_one()
        return existing

    @staticmethod
    def _item_values(run_id: str, planned: PlannedItem, chunk_id: int | None, now: datetime) -> dict[str, Any]:
        invoice = planned.invoice
        return {
            "run_id": run_id,
            "chunk_id": chunk_id,
            "invoice_id": invoice.invoice_id,
            "invoice_number": invoice.number,
            "details": dict(invoice.details) or None,
            "party_id": invoice.party_id,
            "party_name": invoice.party_name,
            "amount": invoice.amount,
            "balance": invoice.balance,
            "state": planned.state.value,
            "reason": planned.reason,
            "attempts": 0,
            "claims_total": 0,
            "settled_by_read": False,
            "updated_at": now,
        }

    def finish_planning(self, run_id: str, *, expected_offset: int, now: datetime, to: RunState) -> bool:
        with self._write.begin() as conn:
            moved = conn.execute(
                update(RunRow)
                .where(
                    RunRow.id == run_id,
                    RunRow.state == RunState.PLANNING.value,
                    RunRow.plan_offset == expected_offset,
                )
                .values(planned=True, state=to.value, updated_at=now)
            ).rowcount
            if moved:
                conn.execute(
                    update(ChunkRow).where(ChunkRow.run_id == run_id, ChunkRow.sealed.is_(False)).values(sealed=True)
                )
        return bool(moved)
