"""Worker heartbeats, and taking over what a dead worker held."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from orchestrator.adapters.ledger.database import session_name
from orchestrator.adapters.ledger.models import ChunkRow, ItemRow, RunRow, WorkerRow
from orchestrator.adapters.ledger.rows import LedgerBase
from orchestrator.domain.run import ACTIVE_RUN_STATES, ChunkState, ItemState, RunState
from orchestrator.services.ports import Released, WorkerStatus

log = logging.getLogger(__name__)


class WorkerLiveness(LedgerBase):
    def beat(self, worker_id: str, *, host: str, pid: int, now: datetime) -> bool:
        """Record a heartbeat. False when the worker had been declared dead meanwhile (it is alive
        again now, but what it held was taken over: it must trust none of its claims)."""
        with self._write.begin() as conn:
            dead_at = conn.execute(
                self._lock(select(WorkerRow.id, WorkerRow.dead_at).where(WorkerRow.id == worker_id))
            ).one_or_none()
            if dead_at is None:
                conn.execute(insert(WorkerRow).values(id=worker_id, host=host, pid=pid, started_at=now, beat_at=now))
                return True
            conn.execute(update(WorkerRow).where(WorkerRow.id == worker_id).values(beat_at=now, dead_at=None))
            return dead_at.dead_at is None

    def declare_dead(self, *, silent_since: datetime, now: datetime) -> list[str]:
        """Workers silent since before `silent_since`, newly declared dead by this caller (one winner each)."""
        with self._read.connect() as conn:
            silent = (
                conn.execute(select(WorkerRow.id).where(WorkerRow.dead_at.is_(None), WorkerRow.beat_at < silent_since))
                .scalars()
                .all()
            )
        declared = []
        for worker_id in silent:
            with self._write.begin() as conn:
                won = conn.execute(
                    update(WorkerRow)
                    .where(WorkerRow.id == worker_id, WorkerRow.dead_at.is_(None), WorkerRow.beat_at < silent_since)
                    .values(dead_at=now)
                ).rowcount
            if won:
                declared.append(worker_id)
        return declared

    def release_worker(self, worker_id: str, *, now: datetime) -> Released:
        """End a dead worker's database sessions, then expire every claim of it in active runs and hand
        back its unfinished deliveries, the messages it may have fetched, and its run-level work: the
        chunks and runs to dispatch again."""
        sessions = self._end_sessions(worker_id)
        active = [state.value for state in ACTIVE_RUN_STATES]
        chunks: set[tuple[str, int]] = set()
        with self._write.begin() as conn:
            run_ids = conn.execute(select(RunRow.id).where(RunRow.state.in_(active))).scalars().all()
            expired = 0
            for run_id in run_ids:
                claimed = conn.execute(
                    update(ItemRow)
                    .where(
                        ItemRow.run_id == run_id,
                        ItemRow.state == ItemState.IN_FLIGHT.value,
                        ItemRow.lease_owner.startswith(f"{worker_id}/", autoescape=True),
                    )
                    .values(lease_until=now)
                    .returning(ItemRow.chunk_id)
                ).all()
                expired += len(claimed)
                chunks.update((run_id, chunk_id) for (chunk_id,) in claimed if chunk_id is not None)
            delivered = conn.execute(
                update(ChunkRow)
                .where(ChunkRow.delivered_to == worker_id, ChunkRow.state != ChunkState.DONE.value)
                .values(delivered_to=None, dispatched_at=now, dispatch_count=ChunkRow.dispatch_count + 1)
                .returning(ChunkRow.run_id, ChunkRow.id)
            ).all()
            chunks.update((run_id, chunk_id) for run_id, chunk_id in delivered)
            # A message the dead worker had fetched but not started is invisible here and would wait out
            # the broker's visibility timeout: send every undelivered chunk again (a duplicate of one still
            # in the broker finds its items claimed or done).
            waiting = conn.execute(
                update(ChunkRow)
                .where(
                    ChunkRow.run_id.in_(run_ids),
                    ChunkRow.state == ChunkState.QUEUED.value,
                    ChunkRow.deliveries == 0,
                    or_(ChunkRow.dispatched_at.is_(None), ChunkRow.dispatched_at <= now),
                )
                .values(dispatched_at=now, dispatch_count=ChunkRow.dispatch_count + 1)
                .returning(ChunkRow.run_id, ChunkRow.id)
            ).all()
            chunks.update((run_id, chunk_id) for run_id, chunk_id in waiting)
            held = conn.execute(
                update(RunRow)
                .where(RunRow.worker_id == worker_id, RunRow.state.in_(active))
                .values(worker_id=None, next_poll_at=None, updated_at=now)
                .returning(RunRow.id, RunRow.state)
            ).all()
        return Released(
            claims=expired,
            chunks=tuple(sorted(chunks)),
            runs=tuple((run_id, RunState(state)) for run_id, state in held),
            sessions=sessions,
        )

    def _end_sessions(self, worker_id: str) -> int:
        """PostgreSQL: terminate the sessions labelled with the worker's id (`create_engines`).

        A worker frozen in the middle of a pipelined statement (psycopg sends executemany as a pipeline)
        is neither idle in a transaction nor running a statement, so no server timeout ends it: its row
        locks would stop the takeover until it thawed. Its transactions roll back; what it may have sent
        meanwhile is settled by reading, as for any worker that died. Without the right to end them (a
        role that is not the workers' own), the leases and the idle-in-transaction timeout remain.
        """
        if not self._postgres:
            return 0
        try:
            with self._write.begin() as conn:
                ended = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": session_name(worker_id)},
                ).scalars()
                return sum(1 for done in ended if done)
        except DBAPIError as error:
            log.warning("could not end the database sessions of dead worker %s: %s", worker_id, error.orig)
            return 0

    def workers(self) -> list[WorkerStatus]:
        with self._read.connect() as conn:
            rows = conn.execute(select(WorkerRow).order_by(WorkerRow.started_at)).all()
        return [WorkerStatus(row.id, row.host, row.pid, row.started_at, row.beat_at, row.dead_at) for row in rows]
