"""Act on the items of one chunk, each exactly once.

An item is claimed with a lease before anything is sent. An item claimed before (a crash, a
timeout, a redelivered message, a retry) may already have been acted on: its provider settles it by
reading the platform first, and the write is only sent for what reading shows is still to do.

A unit of work is one item, or the whole chunk for a provider whose one write covers many invoices
(`ActionUnit.CHUNK`): then the chunk is claimed at once and settled, prepared and sent as one.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderPaused,
    TransientProviderError,
)
from orchestrator.domain.run import Item, ItemOutcome, ItemState, ReasonCode, Run, RunState, retry_delay
from orchestrator.services import logcontext
from orchestrator.services.context import Context
from orchestrator.services.ports import ActionUnit, BillingProvider, FinishedItem
from orchestrator.services.transitions import advance, dispatch_ready_chunks, stop_run

log = logging.getLogger(__name__)

#: Items claimed at once for a provider whose unit is the chunk: every item of it.
_WHOLE_CHUNK = 100_000


def process_chunk(ctx: Context, run_id: str, chunk_id: int) -> None:
    started = ctx.clock()
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state not in (RunState.PLANNING, RunState.REVERSING):
        return
    deliveries = ctx.ledger.record_delivery(chunk_id, worker_id=ctx.worker_id)
    if deliveries > ctx.tuning.max_deliveries:
        failed = ctx.ledger.fail_open_items(
            chunk_id,
            reason=f"chunk delivered {deliveries} times without finishing (a worker died each time)",
            now=ctx.clock(),
        )
        log.error(
            "chunk %s of run %s gave up after %s deliveries (%s items failed)",
            chunk_id,
            run_id,
            deliveries,
            failed,
        )
    else:
        _work_through(ctx, run, chunk_id)
        ctx.ledger.finish_delivery(chunk_id)
    _after_chunk(ctx, run, chunk_id)
    _help_with_the_tail(ctx, run, until=started + timedelta(seconds=ctx.tuning.max_countdown_seconds))


def _help_with_the_tail(ctx: Context, run: Run, *, until: datetime) -> None:
    """Once nothing of the run waits in the broker, claim items of chunks other workers are in.

    Each chunk is worked one item after another, so without this a run's last chunks would keep one
    thread each while the other threads and the tenant's slots sat idle. Claims are per item, so a
    helper never works an item another worker holds; the chunk's own task still settles the chunk.
    No new chunk is taken up after `until` (half the broker's visibility timeout after the task
    began), so the task's own message is acknowledged before the broker would deliver it again.
    A provider that acts on whole chunks has nothing to help with: its chunk is claimed at once.
    """
    if ctx.provider(run.provider).unit is ActionUnit.CHUNK:
        return
    while ctx.clock() < until and (chunk_id := ctx.ledger.chunk_to_help(run.id, now=ctx.clock())) is not None:
        if not _work_through(ctx, run, chunk_id):
            return
        _wake_for_what_was_left(ctx, run, chunk_id)
        advance(ctx, run.id)


def _wake_for_what_was_left(ctx: Context, run: Run, chunk_id: int) -> None:
    """An item a helper left waiting for a retry must not wait for the wake-up its chunk's own task,
    finished meanwhile, scheduled for the helper's lease (a lease is minutes; a retry, seconds)."""
    now = ctx.clock()
    progress = ctx.ledger.chunk_progress(chunk_id, now=now)
    if progress.done or progress.wake_at is None:
        return
    wake_at = max(progress.wake_at, now)
    if ctx.ledger.hasten_chunk(chunk_id, at=wake_at, now=now):
        ctx.dispatcher.reverse_chunk(run.id, chunk_id, countdown=ctx.countdown_until(wake_at))


def _work_through(ctx: Context, run: Run, chunk_id: int) -> int:
    """Claim the chunk's items a batch at a time; each batch's outcomes are written, and the next
    batch claimed, in one transaction.

    Outcomes are written after the batch, so a worker killed mid-batch leaves items it may have
    acted on as IN_FLIGHT: their next claim settles them by reading, as for any crash.
    Returns how many items were worked.
    """
    provider = ctx.provider(run.provider)
    whole_chunks = provider.unit is ActionUnit.CHUNK
    owner = f"{ctx.worker_id or '-'}/{chunk_id}/{uuid.uuid4().hex}"  # the worker first: a dead one's claims expire
    batch = _WHOLE_CHUNK if whole_chunks else ctx.tuning.claim_batch_size
    now = ctx.clock()
    lease_until = now + ctx.tuning.lease
    claim = Claim(owner, lease_until, ctx.worker.epoch if ctx.worker is not None else 0)
    items = ctx.ledger.claim_items(chunk_id, owner=owner, now=now, lease_until=lease_until, limit=batch)
    if whole_chunks and items:
        # A whole chunk is one write: its provider names the write after the chunk's number in the run.
        seq = ctx.ledger.chunk_seq(chunk_id)
        items = [dataclasses.replace(item, chunk_seq=seq) for item in items]
    worked = 0
    while items:
        units = [items] if whole_chunks else [[item] for item in items]
        finished: list[FinishedItem] = []
        try:
            for unit in units:
                with (
                    logcontext.bound(item_id=unit[0].id, invoice_id=unit[0].invoice.invoice_id),
                    ctx.recorder.collect() as calls,
                ):
                    outcomes = work_unit(ctx, provider, run, unit, claim=claim)
                finished.extend(
                    FinishedItem(item, outcomes[item.id], calls if index == 0 else ())
                    for index, item in enumerate(unit)
                )
        except BaseException:
            ctx.ledger.finish_items(finished, owner=owner, now=ctx.clock())
            raise
        worked += len(finished)
        _clear_notice_once_moving(ctx, run, finished)
        now = ctx.clock()
        claim = Claim(owner, now + ctx.tuning.lease, ctx.worker.epoch if ctx.worker is not None else 0)
        items = ctx.ledger.finish_and_claim(
            finished, owner=owner, now=now, chunk_id=chunk_id, lease_until=claim.lease_until, limit=batch
        )
    return worked


def _after_chunk(ctx: Context, run: Run, chunk_id: int) -> None:
    now = ctx.clock()
    progress = ctx.ledger.chunk_progress(chunk_id, now=now)
    if not progress.done and progress.wake_at is not None:
        wake_at = max(progress.wake_at, now)
        if ctx.ledger.requeue_chunk(chunk_id, at=wake_at, now=now):
            ctx.dispatcher.reverse_chunk(run.id, chunk_id, countdown=ctx.countdown_until(wake_at))
    dispatch_ready_chunks(ctx, run)
    advance(ctx, run.id)


@dataclass(frozen=True, slots=True)
class Claim:
    """A batch of claims as this worker took them: whose, until when, and in which of its lives."""

    owner: str
    lease_until: datetime
    epoch: int  # the worker's epoch when it claimed: a later one means it was taken over since


def work_unit(
    ctx: Context, provider: BillingProvider, run: Run, items: Sequence[Item], *, claim: Claim
) -> dict[int, ItemOutcome]:
    """Decide and do what one claimed unit needs; an outcome for every item, never raises for provider errors."""
    outcomes: dict[int, ItemOutcome] = {}
    for item in items:
        if item.attempts > run.options.max_attempts:
            outcomes[item.id] = ItemOutcome(
                ItemState.FAILED,
                reason=f"abandoned {item.attempts - 1} times (worker lost mid-action); "
                "`rebill retry` settles it by reading the platform",
            )
    todo = [item for item in items if item.id not in outcomes]
    if not todo:
        return outcomes
    try:
        with provider.one_invoice_at_a_time():
            _act(ctx, provider, run, todo, outcomes, claim=claim)
    except TransientProviderError as error:
        _transient(ctx, run, todo, outcomes, error)
    except ProviderAuthError as error:
        _credentials_refused(ctx, provider, run, todo, outcomes, error)
    except PermanentProviderError as error:
        for item in todo:
            outcomes.setdefault(item.id, ItemOutcome(ItemState.FAILED, reason=error.message, error=error.readable()))
    return outcomes


def _credentials_refused(
    ctx: Context,
    provider: BillingProvider,
    run: Run,
    todo: Sequence[Item],
    outcomes: dict[int, ItemOutcome],
    error: ProviderAuthError,
) -> None:
    """The tenant refuses our credentials: no other invoice would fare better, so the run stops (no more
    claims while it waits) and this unit waits to be tried again after `rebill retry`."""
    for item in todo:
        outcomes.setdefault(item.id, ItemOutcome(ItemState.RETRY_WAIT, error=repr(error), next_attempt_at=ctx.clock()))
    if stop_run(
        ctx,
        run.id,
        was=RunState.REVERSING,
        to=RunState.NEEDS_ATTENTION,
        code=ReasonCode.CREDENTIALS_REFUSED,
        reason=f"{provider.title} refused the credentials: {error.message}. Fix them (`rebill providers check "
        f"{provider.name}`), then `rebill retry {run.id}`",
    ):
        log.error("run %s stopped: %s refused the credentials (%s)", run.id, provider.title, error.message)


def _act(
    ctx: Context,
    provider: BillingProvider,
    run: Run,
    todo: list[Item],
    outcomes: dict[int, ItemOutcome],
    *,
    claim: Claim,
) -> None:
    if any(item.claimed_before for item in todo):
        outcomes.update(provider.settle(run, todo))
        todo = [item for item in todo if item.id not in outcomes]
        if not todo:
            return
    prepared = provider.prepare(run, todo)
    outcomes.update(prepared.decided)
    if not prepared.send:
        return
    if run.options.dry_run:
        outcomes.update(provider.preview(run, prepared))
    elif _claim_outlives_the_write(ctx, prepared.send, claim):
        outcomes.update(provider.apply(run, prepared))
    else:
        # Taken over, or this worker was declared dead: written only if the claim is still ours, and then
        # left for the next claim, which reads the platform before anything is sent.
        for item in prepared.send:
            outcomes[item.id] = ItemOutcome(
                ItemState.RETRY_WAIT, reason="claim not confirmed before the write", next_attempt_at=ctx.clock()
            )


def _transient(
    ctx: Context, run: Run, todo: Sequence[Item], outcomes: dict[int, ItemOutcome], error: TransientProviderError
) -> None:
    """The unit waits for a retry with backoff, or fails once it has used its attempts."""
    options = run.options
    if isinstance(error, ProviderPaused) and run.notice != error.message:
        ctx.ledger.update_run(run.id, now=ctx.clock(), notice=error.message)
    for item in todo:
        if item.id in outcomes:
            continue
        if item.attempts >= options.max_attempts and not isinstance(error, ProviderPaused):
            outcomes[item.id] = ItemOutcome(
                ItemState.FAILED,
                reason=f"gave up after {item.attempts} attempts: {error.message}",
                error=error.readable(),
            )
            continue
        delay = retry_delay(
            item.attempts,
            base=options.retry_backoff_seconds,
            cap=options.retry_backoff_max_seconds,
            retry_after=error.retry_after,
        )
        outcomes[item.id] = ItemOutcome(
            ItemState.RETRY_WAIT, error=error.readable(), next_attempt_at=ctx.clock() + timedelta(seconds=delay)
        )


def _clear_notice_once_moving(ctx: Context, run: Run, finished: Sequence[FinishedItem]) -> None:
    """A pause's notice stays on the run until an item goes through again."""
    if run.notice and any(done.outcome.state is ItemState.REVERSED for done in finished):
        ctx.ledger.update_run(run.id, now=ctx.clock(), notice=None)


def _claim_outlives_the_write(ctx: Context, items: Sequence[Item], claim: Claim) -> bool:
    """The fence before the one call that must never be sent twice.

    Nobody may claim the items before our lease ends, and nobody declares this worker dead (which
    expires its claims at once) while its heartbeat is fresh. So while the lease outlives the longest
    write call, the heartbeat is fresh and the worker was not declared dead since it claimed (a later
    epoch), the claim is ours without asking; otherwise (a long pause, a frozen process just resumed)
    it is renewed in the ledger, which fails if another worker took an item over meanwhile. What
    remains: a pause of more than half the dead-worker time between this check and the request
    leaving (see docs/reliability.md, known limits).
    """
    now = ctx.clock()
    worker = ctx.worker
    trusted = worker is None or (worker.epoch == claim.epoch and worker.fresh(ctx.tuning.worker_dead_after_seconds / 2))
    if trusted and claim.lease_until - now > timedelta(seconds=ctx.tuning.write_budget_seconds):
        return True
    return ctx.ledger.renew_lease(
        [item.id for item in items],
        owner=claim.owner,
        lease_until=now + ctx.tuning.lease,
        worker_id=ctx.worker_id,
        now=now,
    )
