"""Worker liveness: every worker beats in the ledger every few seconds; one found silent past
REBILL_WORKER_DEAD_AFTER_SECONDS is declared dead and what it held is taken up at once: its claims
expire, its unfinished chunk deliveries and its run-level work (planning, a follow-up tick) are
dispatched again. Leases stay long (a slow call is not a dead worker) and remain the backstop.

A worker that was only frozen (SIGSTOP, a long pause) and comes back finds its claims may have been
taken: the fence before every write renews its claim in the ledger whenever its own heartbeat is not
fresh, and a claim another worker took cannot be renewed (`reversal._claim_outlives_the_write`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.domain.run import RunState
from orchestrator.services.context import Context, WorkerIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TakenOver:
    workers: tuple[str, ...] = ()
    claims: int = 0
    chunks: int = 0
    runs: int = 0


def beat(ctx: Context, worker: WorkerIdentity, *, host: str, pid: int) -> None:
    """One heartbeat; a worker that learns it was declared dead says so (its claims were taken over)."""
    if not ctx.ledger.beat(worker.id, host=host, pid=pid, now=ctx.clock()):
        worker.taken_over()  # before the beat counts as fresh: no claim of before passes the fence unchecked
        log.warning(
            "worker %s was declared dead while silent and is back: its claims were taken over; "
            "every write it still attempts is checked against the ledger first",
            worker.id,
        )
    worker.beaten()


def take_over_from_dead_workers(ctx: Context) -> TakenOver:
    """Declare silent workers dead and give back what they held; safe to run in every worker at once."""
    now = ctx.clock()
    silent_since = now - timedelta(seconds=ctx.tuning.worker_dead_after_seconds)
    taken = TakenOver()
    for worker_id in ctx.ledger.declare_dead(silent_since=silent_since, now=now):
        released = ctx.ledger.release_worker(worker_id, now=now)
        for run_id, chunk_id in released.chunks:
            ctx.dispatcher.reverse_chunk(run_id, chunk_id)
        for run_id, state in released.runs:
            if state is RunState.PLANNING:
                ctx.dispatcher.plan(run_id)
            elif state is RunState.REBILLING:
                ctx.dispatcher.rebill(run_id)
            elif state is RunState.POLLING:
                ctx.dispatcher.poll(run_id)
        log.warning(
            "worker %s declared dead (no heartbeat for over %g s): ended %s database session(s), expired %s "
            "claim(s), re-dispatched %s chunk(s) and %s run step(s)",
            worker_id,
            ctx.tuning.worker_dead_after_seconds,
            released.sessions,
            released.claims,
            len(released.chunks),
            len(released.runs),
        )
        taken = TakenOver(
            workers=(*taken.workers, worker_id),
            claims=taken.claims + released.claims,
            chunks=taken.chunks + len(released.chunks),
            runs=taken.runs + len(released.runs),
        )
    return taken
