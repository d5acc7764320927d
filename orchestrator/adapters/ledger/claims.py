"""Item claims: chunks dispatched and delivered, items claimed with leases, outcomes and calls written.

The per-item statements are built once per ledger with bind parameters: building and cache-keying
them on every call cost more CPU than the database spent running them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Engine, and_, bindparam, exists, func, insert, literal, or_, select, update
from sqlalchemy.sql.elements import BindParameter

from orchestrator.adapters.ledger.models import ApiCallRow, ChunkRow, EarlierOutcomeRow, ItemRow, RunRow, WorkerRow
from orchestrator.adapters.ledger.rows import ERROR_LIMIT, LedgerBase, call_values, claimable, item_from_row
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.run import ChunkState, Item, ItemOutcome, ItemState, RunState
from orchestrator.services.ports import ChunkProgress, FinishedItem

_CLAIMABLE_RUN_STATES = (RunState.PLANNING.value, RunState.REVERSING.value)
_OPEN_ITEM_STATES = (ItemState.PENDING.value, ItemState.IN_FLIGHT.value, ItemState.RETRY_WAIT.value)
# An outcome about to be replaced, as kept in `earlier_outcomes` (its columns in order).
_EARLIER_SOURCE = (
    ItemRow.run_id,
    ItemRow.id,
    ItemRow.state,
    ItemRow.reason,
    ItemRow.last_error,
    ItemRow.attempts,
    ItemRow.updated_at,
)
_EARLIER_COLUMNS = ["run_id", "item_id", "state", "reason", "error", "attempts", "settled_at", "replaced_at"]
_IN_BATCH = 500


class _LeaseLost(Exception):
    """Rolls back a renewal that did not get every lease of the unit."""


class ItemClaims(LedgerBase):
    def __init__(self, engine: Engine, *, write_engine: Engine | None = None) -> None:
        super().__init__(engine, write_engine=write_engine)
        self._claim_statement = self._build_claim()
        self._renew_statement = self._build_renew()
        self._finish_statement = self._build_finish()

    def take_chunks_to_dispatch(self, run_id: str, *, window: int, now: datetime) -> list[int]:
        with self._write.begin() as conn:
            queued = conn.execute(
                select(func.count())
                .select_from(ChunkRow)
                .where(
                    ChunkRow.run_id == run_id,
                    ChunkRow.state == ChunkState.QUEUED.value,
                    # A chunk parked until a retry time is not work in the broker: it holds no place.
                    or_(ChunkRow.dispatched_at.is_(None), ChunkRow.dispatched_at <= now),
                )
            ).scalar_one()
            free = window - queued
            if free <= 0:
                return []
            candidates = (
                conn.execute(
                    self._lock(
                        select(ChunkRow.id)
                        .where(
                            ChunkRow.run_id == run_id,
                            ChunkRow.state == ChunkState.PLANNED.value,
                            ChunkRow.sealed.is_(True),
                        )
                        .order_by(ChunkRow.seq)
                        .limit(free),
                        skip_locked=True,
                    )
                )
                .scalars()
                .all()
            )
            if not candidates:
                return []
            conn.execute(
                update(ChunkRow)
                .where(ChunkRow.id.in_(candidates))
                .values(
                    state=ChunkState.QUEUED.value,
                    dispatched_at=now,
                    dispatch_count=ChunkRow.dispatch_count + 1,
                )
            )
        return list(candidates)

    def stale_chunks(self, run_id: str, *, now: datetime, quiet_since: datetime) -> list[int]:
        has_work = exists().where(ItemRow.chunk_id == ChunkRow.id, claimable(now))
        recent = exists().where(ItemRow.chunk_id == ChunkRow.id, ItemRow.updated_at >= quiet_since)
        with self._write.begin() as conn:
            stale = (
                conn.execute(
                    select(ChunkRow.id).where(
                        ChunkRow.run_id == run_id,
                        ChunkRow.state == ChunkState.QUEUED.value,
                        or_(ChunkRow.dispatched_at.is_(None), ChunkRow.dispatched_at < quiet_since),
                        has_work,
                        ~recent,
                    )
                )
                .scalars()
                .all()
            )
            if stale:
                conn.execute(
                    update(ChunkRow)
                    .where(ChunkRow.id.in_(stale))
                    .values(dispatched_at=now, dispatch_count=ChunkRow.dispatch_count + 1)
                )
        return list(stale)

    def record_delivery(self, chunk_id: int, *, worker_id: str | None = None) -> int:
        with self._write.begin() as conn:
            return int(
                conn.execute(
                    update(ChunkRow)
                    .where(ChunkRow.id == chunk_id)
                    .values(deliveries=ChunkRow.deliveries + 1, delivered_to=worker_id)
                    .returning(ChunkRow.deliveries)
                ).scalar_one()
            )

    def finish_delivery(self, chunk_id: int) -> None:
        with self._write.begin() as conn:
            conn.execute(update(ChunkRow).where(ChunkRow.id == chunk_id).values(deliveries=0, delivered_to=None))

    def _build_claim(self) -> Any:
        """One round trip: pick the chunk's first `p_limit` claimable items (skipping rows locked by
        other claimers on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises claimers) and lease them."""
        now: BindParameter[datetime] = bindparam("p_now", type_=ItemRow.updated_at.type)
        run_claimable = exists().where(RunRow.id == ItemRow.run_id, RunRow.state.in_(_CLAIMABLE_RUN_STATES))
        candidates = self._lock(
            select(ItemRow.id)
            .where(ItemRow.chunk_id == bindparam("p_chunk_id"), claimable(now), run_claimable)
            .order_by(ItemRow.id)
            .limit(bindparam("p_limit")),
            skip_locked=True,
        )
        return (
            update(ItemRow)
            .where(ItemRow.id.in_(candidates), claimable(now))
            .values(
                state=ItemState.IN_FLIGHT.value,
                lease_owner=bindparam("p_owner"),
                lease_until=bindparam("p_lease_until", type_=ItemRow.lease_until.type),
                attempts=ItemRow.attempts + 1,
                claims_total=ItemRow.claims_total + 1,
                updated_at=now,
            )
            .returning(*ItemRow.__table__.columns)
        )

    @staticmethod
    def _build_renew() -> Any:
        return (
            update(ItemRow)
            .where(
                ItemRow.id == bindparam("p_item_id"),
                ItemRow.state == ItemState.IN_FLIGHT.value,
                ItemRow.lease_owner == bindparam("p_owner"),
            )
            .values(lease_until=bindparam("p_lease_until", type_=ItemRow.lease_until.type))
        )

    @staticmethod
    def _build_finish() -> Any:
        return (
            update(ItemRow)
            .where(
                ItemRow.id == bindparam("p_item_id"),
                ItemRow.state == ItemState.IN_FLIGHT.value,
                ItemRow.lease_owner == bindparam("p_owner"),
            )
            .values(
                state=bindparam("p_state"),
                reason=bindparam("p_reason"),
                last_error=bindparam("p_last_error"),
                next_attempt_at=bindparam("p_next_attempt_at", type_=ItemRow.next_attempt_at.type),
                settled_by_read=ItemRow.settled_by_read | bindparam("p_settled_by_read", type_=Boolean()),
                result_ref=func.coalesce(bindparam("p_result_ref", type_=ItemRow.result_ref.type), ItemRow.result_ref),
                rebill_ref=func.coalesce(bindparam("p_rebill_ref", type_=ItemRow.rebill_ref.type), ItemRow.rebill_ref),
                new_amount=func.coalesce(bindparam("p_new_amount", type_=ItemRow.new_amount.type), ItemRow.new_amount),
                lease_owner=None,
                lease_until=None,
                updated_at=bindparam("p_now", type_=ItemRow.updated_at.type),
            )
        )

    def claim_items(self, chunk_id: int, *, owner: str, now: datetime, lease_until: datetime, limit: int) -> list[Item]:
        with self._write.begin() as conn:
            return self._claim(conn, chunk_id, owner=owner, now=now, lease_until=lease_until, limit=limit)

    def renew_lease(
        self,
        item_ids: Sequence[int],
        *,
        owner: str,
        lease_until: datetime,
        worker_id: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        params = [{"p_item_id": item_id, "p_owner": owner, "p_lease_until": lease_until} for item_id in item_ids]
        try:
            with self._write.begin() as conn:
                if worker_id is not None and not self._still_alive(conn, worker_id, now or lease_until):
                    raise _LeaseLost  # declared dead: its claims are being taken over
                if sum(conn.execute(self._renew_statement, one).rowcount for one in params) != len(params):
                    raise _LeaseLost  # all or none: a unit is sent whole or not at all
        except _LeaseLost:
            return False
        return True

    @staticmethod
    def _still_alive(conn: Connection, worker_id: str, now: datetime) -> bool:
        """Beat for the worker unless it was declared dead: the same row `declare_dead` updates, so of a
        renewal and a death declaration racing for one worker exactly one wins."""
        return (
            conn.execute(
                update(WorkerRow).where(WorkerRow.id == worker_id, WorkerRow.dead_at.is_(None)).values(beat_at=now)
            ).rowcount
            == 1
        )

    def finish_items(self, finished: Sequence[FinishedItem], *, owner: str, now: datetime) -> None:
        if finished:
            with self._write.begin() as conn:
                self._finish(conn, finished, owner=owner, now=now)

    def finish_and_claim(
        self,
        finished: Sequence[FinishedItem],
        *,
        owner: str,
        now: datetime,
        chunk_id: int,
        lease_until: datetime,
        limit: int,
    ) -> list[Item]:
        # One transaction per batch instead of two: under 16 threads each costs 0.4-0.7 ms of CPU.
        with self._write.begin() as conn:
            if finished:
                self._finish(conn, finished, owner=owner, now=now)
            return self._claim(conn, chunk_id, owner=owner, now=now, lease_until=lease_until, limit=limit)

    def _claim(
        self, conn: Connection, chunk_id: int, *, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Item]:
        params = {
            "p_chunk_id": chunk_id,
            "p_now": now,
            "p_owner": owner,
            "p_lease_until": lease_until,
            "p_limit": limit,
        }
        rows = conn.execute(self._claim_statement, params).all()
        return sorted((item_from_row(row) for row in rows), key=lambda item: item.id)

    def _finish(self, conn: Connection, finished: Sequence[FinishedItem], *, owner: str, now: datetime) -> None:
        outcomes = [
            {
                "p_item_id": done.item.id,
                "p_owner": owner,
                "p_state": done.outcome.state.value,
                "p_reason": done.outcome.reason,
                "p_last_error": done.outcome.error[:ERROR_LIMIT] if done.outcome.error else None,
                "p_next_attempt_at": done.outcome.next_attempt_at,
                "p_settled_by_read": done.outcome.settled_by_read,
                "p_result_ref": done.outcome.result_ref,
                "p_rebill_ref": done.outcome.rebill_ref,
                "p_new_amount": done.outcome.new_amount,
                "p_now": now,
            }
            for done in finished
        ]
        calls = [call_values(done.item.run_id, call, done.item.id) for done in finished for call in done.calls]
        conn.execute(self._finish_statement, outcomes)
        if calls:
            conn.execute(insert(ApiCallRow), calls)

    def chunk_to_help(self, run_id: str, *, now: datetime) -> int | None:
        waiting = exists().where(
            ChunkRow.run_id == run_id,
            or_(
                and_(ChunkRow.state == ChunkState.PLANNED.value, ChunkRow.sealed.is_(True)),
                and_(
                    ChunkRow.state == ChunkState.QUEUED.value,
                    ChunkRow.deliveries == 0,
                    or_(ChunkRow.dispatched_at.is_(None), ChunkRow.dispatched_at <= now),
                ),
            ),
        )
        # Only a chunk on its first delivery: one delivered again after a worker died may be what kills workers.
        being_worked = select(ChunkRow.id).where(
            ChunkRow.run_id == run_id, ChunkRow.state == ChunkState.QUEUED.value, ChunkRow.deliveries == 1
        )
        with self._read.connect() as conn:
            if conn.execute(select(waiting)).scalar():
                return None
            return conn.execute(
                # Any such chunk will do; no ORDER BY, so the lookup stays on the chunk index however
                # many of the run's items are already settled.
                select(ItemRow.chunk_id).where(ItemRow.chunk_id.in_(being_worked), claimable(now)).limit(1)
            ).scalar()

    def chunk_progress(self, chunk_id: int, *, now: datetime) -> ChunkProgress:
        with self._write.begin() as conn:
            open_items, claimable_now, retry_at, lease_at = conn.execute(
                select(
                    func.count(),
                    func.count().filter(claimable(now)),
                    func.min(ItemRow.next_attempt_at).filter(ItemRow.state == ItemState.RETRY_WAIT.value),
                    func.min(ItemRow.lease_until).filter(ItemRow.state == ItemState.IN_FLIGHT.value),
                ).where(ItemRow.chunk_id == chunk_id, ItemRow.state.in_(_OPEN_ITEM_STATES))
            ).one()
            if open_items == 0:
                conn.execute(update(ChunkRow).where(ChunkRow.id == chunk_id).values(state=ChunkState.DONE.value))
                return ChunkProgress(open_items=0, wake_at=None, done=True)
        candidates = [t for t in (retry_at, lease_at) if t is not None]
        if claimable_now:
            candidates.append(now)
        return ChunkProgress(open_items=open_items, wake_at=min(candidates) if candidates else None, done=False)

    def requeue_chunk(self, chunk_id: int, *, at: datetime, now: datetime) -> bool:
        """Hold one wake-up per chunk: only when no later one is already scheduled."""
        with self._write.begin() as conn:
            return (
                conn.execute(
                    update(ChunkRow)
                    .where(
                        ChunkRow.id == chunk_id,
                        or_(ChunkRow.dispatched_at.is_(None), ChunkRow.dispatched_at <= now),
                    )
                    .values(
                        state=ChunkState.QUEUED.value,
                        dispatched_at=at,
                        dispatch_count=ChunkRow.dispatch_count + 1,
                    )
                ).rowcount
                == 1
            )

    def hasten_chunk(self, chunk_id: int, *, at: datetime, now: datetime) -> bool:
        """Schedule a wake-up at `at` unless a delivery is being worked or one is due by then.

        The chunk's own task may have scheduled its wake-up for the lease a helper held, which the
        helper has since released; a wake-up is never left waiting for that lease. At worst the
        chunk gets one delivery too many, which finds its items claimed or settled."""
        with self._write.begin() as conn:
            return (
                conn.execute(
                    update(ChunkRow)
                    .where(
                        ChunkRow.id == chunk_id,
                        ChunkRow.deliveries == 0,
                        or_(
                            ChunkRow.dispatched_at.is_(None),
                            ChunkRow.dispatched_at <= now,
                            ChunkRow.dispatched_at > at,
                        ),
                    )
                    .values(
                        state=ChunkState.QUEUED.value,
                        dispatched_at=at,
                        dispatch_count=ChunkRow.dispatch_count + 1,
                    )
                ).rowcount
                == 1
            )

    def fail_open_items(self, chunk_id: int, *, reason: str, now: datetime) -> int:
        with self._write.begin() as conn:
            return int(
                conn.execute(
                    update(ItemRow)
                    .where(ItemRow.chunk_id == chunk_id, ItemRow.state.in_(_OPEN_ITEM_STATES))
                    .values(
                        state=ItemState.FAILED.value,
                        reason=reason,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=now,
                    )
                ).rowcount
            )

    def has_open_items(self, run_id: str) -> bool:
        with self._read.connect() as conn:
            found = conn.execute(
                select(ItemRow.id).where(ItemRow.run_id == run_id, ItemRow.state.in_(_OPEN_ITEM_STATES)).limit(1)
            ).first()
        return found is not None

    def item_counts(self, run_id: str) -> dict[ItemState, int]:
        with self._read.connect() as conn:
            rows = conn.execute(
                select(ItemRow.state, func.count()).where(ItemRow.run_id == run_id).group_by(ItemRow.state)
            ).all()
        return {ItemState(state): count for state, count in rows}

    def reset_failed_items(self, run_id: str, *, now: datetime) -> int:
        with self._write.begin() as conn:
            chunk_ids = (
                conn.execute(
                    select(ItemRow.chunk_id)
                    .where(ItemRow.run_id == run_id, ItemRow.state == ItemState.FAILED.value)
                    .distinct()
                )
                .scalars()
                .all()
            )
            # A retry starts the failed items afresh; the failure stays on record.
            conn.execute(
                insert(EarlierOutcomeRow).from_select(
                    _EARLIER_COLUMNS,
                    select(*_EARLIER_SOURCE, literal(now, EarlierOutcomeRow.replaced_at.type)).where(
                        ItemRow.run_id == run_id, ItemRow.state == ItemState.FAILED.value
                    ),
                )
            )
            reset = conn.execute(
                update(ItemRow)
                .where(ItemRow.run_id == run_id, ItemRow.state == ItemState.FAILED.value)
                .values(
                    state=ItemState.PENDING.value,
                    attempts=0,
                    reason=None,
                    next_attempt_at=None,
                    updated_at=now,
                )
            ).rowcount
            live = [c for c in chunk_ids if c is not None]
            if live:
                conn.execute(
                    update(ChunkRow)
                    .where(ChunkRow.id.in_(live))
                    .values(state=ChunkState.PLANNED.value, deliveries=0, dispatched_at=None)
                )
        return int(reset)

    def iter_items(self, run_id: str, *, states: Collection[ItemState] | None = None) -> Iterator[Item]:
        statement = select(ItemRow).where(ItemRow.run_id == run_id).order_by(ItemRow.id)
        if states is not None:
            statement = statement.where(ItemRow.state.in_([s.value for s in states]))
        with self._read.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(statement)
            try:
                for row in result:
                    yield item_from_row(row)
            finally:
                result.close()  # a reader that stops early must not leave a server-side cursor behind

    def set_item_outcomes(self, run_id: str, outcomes: Sequence[tuple[int, ItemOutcome]], *, now: datetime) -> None:
        with self._write.begin() as conn:
            _keep_replaced_failures(conn, run_id, outcomes, now=now)
            for item_id, outcome in outcomes:
                kept = {
                    name: value
                    for name, value in (
                        ("result_ref", outcome.result_ref),
                        ("rebill_ref", outcome.rebill_ref),
                        ("new_amount", outcome.new_amount),
                        ("settled_by_read", outcome.settled_by_read or None),
                    )
                    if value is not None
                }
                conn.execute(
                    update(ItemRow)
                    .where(ItemRow.id == item_id, ItemRow.run_id == run_id)
                    .values(
                        state=outcome.state.value,
                        reason=outcome.reason,
                        last_error=outcome.error,
                        updated_at=now,
                        **kept,
                    )
                )

    def record_calls(self, run_id: str, calls: Sequence[ApiCall], *, item_id: int | None = None) -> None:
        if calls:
            with self._write.begin() as conn:
                conn.execute(insert(ApiCallRow), [call_values(run_id, call, item_id) for call in calls])

    def call_counts(self, run_id: str) -> dict[tuple[str, str], int]:
        with self._read.connect() as conn:
            rows = conn.execute(
                select(ApiCallRow.operation, ApiCallRow.outcome, func.count())
                .where(ApiCallRow.run_id == run_id)
                .group_by(ApiCallRow.operation, ApiCallRow.outcome)
            ).all()
        return {(operation, outcome): count for operation, outcome, count in rows}

    def chunk_seq(self, chunk_id: int) -> int:
        with self._read.connect() as conn:
            return int(conn.execute(select(ChunkRow.seq).where(ChunkRow.id == chunk_id)).scalar_one())

    def chunk_seq_and_size(self, chunk_id: int) -> tuple[int, int] | None:
        """The chunk's number in its run and the invoices it holds (what its broker message is labelled)."""
        with self._read.connect() as conn:
            found = conn.execute(select(ChunkRow.seq, ChunkRow.size).where(ChunkRow.id == chunk_id)).one_or_none()
        return (int(found.seq), int(found.size)) if found is not None else None


def _keep_replaced_failures(
    conn: Connection, run_id: str, outcomes: Sequence[tuple[int, ItemOutcome]], *, now: datetime
) -> None:
    """Keep the failure of each item a later reading settles otherwise (the same failure decided again
    on a later tick is not a new outcome)."""
    replacing = dict(outcomes)
    ids = list(replacing)
    for start in range(0, len(ids), _IN_BATCH):
        failed = conn.execute(
            select(*_EARLIER_SOURCE).where(
                ItemRow.run_id == run_id,
                ItemRow.state == ItemState.FAILED.value,
                ItemRow.id.in_(ids[start : start + _IN_BATCH]),
            )
        ).all()
        kept = [
            dict(zip(_EARLIER_COLUMNS, (*row, now), strict=True))
            for row in failed
            if replacing[row.id].state is not ItemState.FAILED or (replacing[row.id].reason or "") != (row.reason or "")
        ]
        if kept:
            conn.execute(insert(EarlierOutcomeRow), kept)
