"""Find work whose message may be gone and send it again, from the ledger.

Safe to run any number of times, concurrently with workers: every re-dispatched message meets a
conditional claim in the ledger, so a duplicate finds nothing to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.domain.run import Run, RunState
from orchestrator.services.context import Context
from orchestrator.services.transitions import advance, dispatch_ready_chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reconciled:
    runs: int = 0
    chunks: int = 0
    plans: int = 0
    rebills: int = 0
    polls: int = 0

    def __add__(self, other: Reconciled) -> Reconciled:
        return Reconciled(
            self.runs + other.runs,
            self.chunks + other.chunks,
            self.plans + other.plans,
            self.rebills + other.rebills,
            self.polls + other.polls,
        )


def reconcile(ctx: Context) -> Reconciled:
    total = Reconciled()
    for run in ctx.ledger.active_runs():
        total = total + reconcile_run(ctx, run)
    if total.chunks or total.plans or total.rebills or total.polls:
        log.warning("reconciler re-dispatched lost work: %s", total)
    return total


def reconcile_run(ctx: Context, run: Run) -> Reconciled:
    now = ctx.clock()
    quiet_since = now - timedelta(seconds=ctx.tuning.lost_message_seconds)
    plans = rebills = polls = chunks = 0
    if run.state is RunState.PLANNING and run.updated_at < quiet_since:
        ctx.ledger.update_run(run.id, now=now)
        ctx.dispatcher.plan(run.id)
        plans = 1
    if run.state in (RunState.PLANNING, RunState.REVERSING):
        for chunk_id in ctx.ledger.stale_chunks(run.id, now=now, quiet_since=quiet_since):
            ctx.dispatcher.reverse_chunk(run.id, chunk_id)
            chunks += 1
        chunks += dispatch_ready_chunks(ctx, run)
        advance(ctx, run.id)
    # A follow-up tick holds the run by pushing next_poll_at ahead: past it, the message is lost.
    if run.state is RunState.REBILLING and (run.next_poll_at or run.updated_at) < quiet_since:
        ctx.ledger.update_run(run.id, now=now)
        ctx.dispatcher.rebill(run.id)
        rebills = 1
    if run.state is RunState.POLLING and (run.next_poll_at or run.updated_at) < quiet_since:
        ctx.dispatcher.poll(run.id)
        polls = 1
    return Reconciled(1, chunks, plans, rebills, polls)
