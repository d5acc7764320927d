"""The plan writer: a selection's pages into items and chunks, each page with the cursor after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from orchestrator.adapters.ledger.models import ChunkRow, ItemRow, RunRow
from orchestrator.adapters.ledger.rows import LedgerBase
from orchestrator.domain.run import ChunkState, ItemState, PlannedItem, RunState, chunk_capacity


@dataclass
class _OpenChunk:
    id: int
    size: int
    capacity: int
    group: str | None
    sealed: bool = False

    @property
    def full(self) -> bool:
        return self.size >= self.capacity

    def continues(self, group: str | None) -> bool:
        """The next item belongs to this chunk's last group: it must not start a new chunk."""
        return group is not None and group == self.group


class PlanWriter(LedgerBase):
    def record_plan_page(
        self,
        run_id: str,
        items: Sequence[PlannedItem],
        *,
        expected_offset: int,
        next_offset: int,
        chunk_size: int,
        ramp: int = 0,
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
            chunk_ids = iter(self._assign_chunks(conn, run_id, to_reverse, chunk_size, ramp) if chunk_size else ())
            rows = [
                self._item_values(
                    run_id,
                    planned,
                    next(chunk_ids) if planned.state is ItemState.PENDING and chunk_size else None,
                    now,
                )
                for planned in items
            ]
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

    def _assign_chunks(
        self, conn: Connection, run_id: str, pending: Sequence[PlannedItem], chunk_size: int, ramp: int
    ) -> list[int]:
        """The chunk of each pending item, in order, filling the run's open chunk first.

        A chunk is sealed (ready to dispatch) once full (`chunk_capacity`: the run's first `ramp` chunks
        at each smaller size are smaller), except while items of one group keep coming:
        then it grows until the group ends, so a group's items are worked by one task, one after
        another (Aria refuses concurrent work on one account). Ungrouped chunks seal as soon as full.
        """
        if not pending:
            return []
        found = conn.execute(
            self._lock(
                select(ChunkRow.id, ChunkRow.seq, ChunkRow.size, ChunkRow.group_key)
                .where(ChunkRow.run_id == run_id, ChunkRow.sealed.is_(False))
                .order_by(ChunkRow.seq.desc())
                .limit(1)
            )
        ).one_or_none()
        next_seq = int(
            conn.execute(
                select(func.coalesce(func.max(ChunkRow.seq) + 1, 0)).where(ChunkRow.run_id == run_id)
            ).scalar_one()
        )
        current = (
            _OpenChunk(found.id, found.size, chunk_capacity(found.seq, chunk_size, ramp=ramp), found.group_key)
            if found is not None
            else None
        )
        touched: list[_OpenChunk] = []
        assigned: list[int] = []
        for planned in pending:
            if current is not None and current.full and not current.continues(planned.group):
                current.sealed = True
                current = None
            if current is None:
                chunk_id = conn.execute(
                    insert(ChunkRow)
                    .values(
                        run_id=run_id,
                        seq=next_seq,
                        state=ChunkState.PLANNED.value,
                        size=0,
                        sealed=False,
                        dispatch_count=0,
                        deliveries=0,
                    )
                    .returning(ChunkRow.id)
                ).scalar_one()
                current = _OpenChunk(chunk_id, 0, chunk_capacity(next_seq, chunk_size, ramp=ramp), None)
                next_seq += 1
            if not touched or touched[-1] is not current:
                touched.append(current)
            assigned.append(current.id)
            current.size += 1
            current.group = planned.group
        if current is not None and current.full and current.group is None:
            current.sealed = True
        for chunk in touched:
            conn.execute(
                update(ChunkRow)
                .where(ChunkRow.id == chunk.id)
                .values(size=chunk.size, group_key=chunk.group, sealed=chunk.sealed)
            )
        return assigned

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
                .values(planned=True, state=to.value, updated_at=now, worker_id=None)
            ).rowcount
            if moved:
                conn.execute(
                    update(ChunkRow).where(ChunkRow.run_id == run_id, ChunkRow.sealed.is_(False)).values(sealed=True)
                )
        return bool(moved)
