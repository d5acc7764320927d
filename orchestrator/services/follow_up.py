"""Follow a run up on its platform once its items are settled: run-level steps, each sent exactly
once, and the platform's status watched to the end (iMIS: the rebill task, then its billing log
walking 5 -> 1 -> 2; Salesforce: generate calls, then the new invoices).

Each step is claimed in the ledger before it is sent. A step whose answer never came is UNKNOWN: its
provider settles it by reading before anything else is decided, and only a reading that shows it
did not apply lets it be sent again. Nothing is ever sent twice on a guess; after the settle window
the run asks for attention instead.

No worker sleeps: each tick claims the run's next poll time in the ledger and schedules the next
message with a countdown; duplicates of a tick's message find the time taken and stop.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta

from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderError,
    ProviderPaused,
    TransientProviderError,
)
from orchestrator.domain.run import (
    FOLLOWING_RUN_STATES,
    Item,
    ItemState,
    ReasonCode,
    Run,
    RunState,
    Step,
    StepPhase,
    retry_delay,
)
from orchestrator.services.context import Context
from orchestrator.services.ports import (
    BillingProvider,
    Decision,
    Finish,
    Ledger,
    Send,
    Settlement,
    StepResult,
    Watch,
)
from orchestrator.services.transitions import stop_run

log = logging.getLogger(__name__)

_EARLY_TOLERANCE = timedelta(milliseconds=200)
#: Decisions one tick may take in a row (steps sent back to back) before it yields to other work.
_DECISIONS_PER_TICK = 50
#: How long one tick holds the run: a tick that dies is taken over by the next message after this.
_TICK_LEASE = timedelta(seconds=60)
#: What `_settle_steps` answers once every uncertain step is settled: decide again at once.
_DECIDE_AGAIN = Watch(after=0)


class LedgerFollowView:
    """The provider's read-only view of its run's ledger while following it."""

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self._ledger = ledger
        self._run_id = run_id

    def items(self, *, states: Collection[ItemState] | None = None) -> Iterator[Item]:
        return self._ledger.iter_items(self._run_id, states=states)

    def steps(self) -> Sequence[Step]:
        return self._ledger.steps(self._run_id)


def follow(ctx: Context, run_id: str) -> None:
    """One tick: settle what is uncertain, then do what the provider decides until it says to wait."""
    run = ctx.ledger.get_run(run_id)
    if run is None or run.state not in FOLLOWING_RUN_STATES:
        return
    now = ctx.clock()
    if run.next_poll_at is not None and now + _EARLY_TOLERANCE < run.next_poll_at:
        return  # a duplicate message: the time belongs to another tick
    held_until = now + _TICK_LEASE
    if not ctx.ledger.claim_poll(run_id, expected=run.next_poll_at, next_poll_at=held_until, holder=ctx.worker_id):
        return
    provider = ctx.provider(run.provider)
    with ctx.recorder.collect() as calls:
        try:
            wait = _tick(ctx, provider, run)
        except TransientProviderError as error:
            log.warning("run %s: following failed transiently (%s); trying again", run_id, error)
            if isinstance(error, ProviderPaused):
                ctx.ledger.update_run(run_id, now=ctx.clock(), notice=error.message)
            wait = Watch(after=_backoff(run, error))
        except PermanentProviderError as error:
            stop_run(
                ctx,
                run_id,
                was=_current_state(ctx, run_id),
                to=RunState.FAILED,
                code=ReasonCode.BILLING_FAILED,
                reason=f"cannot follow the run on {provider.title}: {error}",
            )
            wait = None
        finally:
            ctx.ledger.record_calls(run_id, calls)
    if wait is None:
        return
    seconds = min(
        wait.after if wait.after is not None else run.options.poll_interval_seconds,
        ctx.tuning.max_countdown_seconds,
    )
    if ctx.ledger.claim_poll(run_id, expected=held_until, next_poll_at=ctx.clock() + timedelta(seconds=seconds)):
        ctx.dispatcher.poll(run_id, countdown=seconds)


def _tick(ctx: Context, provider: BillingProvider, run: Run) -> Watch | None:
    """The provider's decisions applied until one says to wait (a Watch) or the run stops (None)."""
    view = LedgerFollowView(ctx.ledger, run.id)
    for _ in range(_DECISIONS_PER_TICK):
        uncertain = [step for step in view.steps() if step.phase in (StepPhase.SENDING, StepPhase.UNKNOWN)]
        if uncertain:
            settled = _settle_steps(ctx, provider, run, uncertain)
            if settled is not _DECIDE_AGAIN:
                return settled
            continue
        decision = provider.follow(run, view)
        stalled = _record(ctx, run, decision)
        action = decision.action
        if isinstance(action, Finish):
            _finish(ctx, run, action)
            return None
        if isinstance(action, Watch):
            if stalled is not None:
                _stall(ctx, provider, run, stalled)
                return None
            if run.state is RunState.REBILLING:
                ctx.ledger.transition(run.id, from_states={RunState.REBILLING}, to=RunState.POLLING, now=ctx.clock())
            return action
        wait = _send(ctx, provider, run, action)
        if wait is not None or (refreshed := ctx.ledger.get_run(run.id)) is None:
            return wait
        run = refreshed
    return Watch()


def _record(ctx: Context, run: Run, decision: Decision) -> str | None:
    """Keep what the provider learnt; the stalled status's label when it has not moved for too long."""
    now = ctx.clock()
    if decision.state:
        ctx.ledger.merge_provider_state(run.id, decision.state, now=now)
    if decision.items:
        ctx.ledger.set_item_outcomes(run.id, decision.items, now=now)
    if decision.notice != run.notice:
        ctx.ledger.update_run(run.id, now=now, notice=decision.notice)
    observation = decision.observation
    if observation is None:
        return None
    if ctx.ledger.record_status(run.id, observation, at=now):
        return None
    since = run.last_status_change_at or run.updated_at
    if (now - since).total_seconds() > run.options.stall_after_seconds:
        return f"{observation.subject}: {observation.label} ({observation.code})"
    return None


def _send(ctx: Context, provider: BillingProvider, run: Run, action: Send) -> Watch | None:
    """Claim the step and send it; None when sent (decide again), else how long to wait."""
    now = ctx.clock()
    if not ctx.ledger.claim_step(run.id, key=action.key, kind=action.kind, request=action.request, now=now):
        return Watch()  # someone else holds it: its outcome is read on the next tick
    step = next(step for step in ctx.ledger.steps(run.id) if step.key == action.key)
    try:
        result = provider.send_step(run, step)
    except ProviderError as error:
        return _send_failed(ctx, provider, run, step, error)
    _settled(ctx, run, step, result)
    log.info("run %s: %s sent%s", run.id, step.key, f" ({result.ref})" if result.ref else "")
    return None


def _send_failed(ctx: Context, provider: BillingProvider, run: Run, step: Step, error: ProviderError) -> Watch | None:
    now = ctx.clock()
    if error.may_have_applied:
        ctx.ledger.finish_step(run.id, step.key, phase=StepPhase.UNKNOWN, now=now, error=error.message)
        log.warning("run %s: %s outcome unknown (%s); settling by reading", run.id, step.key, error)
        return Watch()
    if isinstance(error, TransientProviderError):
        ctx.ledger.finish_step(run.id, step.key, phase=StepPhase.RELEASED, now=now, error=error.message)
        if isinstance(error, ProviderPaused):
            ctx.ledger.update_run(run.id, now=now, notice=error.message)
        return Watch(after=_backoff(run, error, attempt=step.attempts))
    ctx.ledger.finish_step(run.id, step.key, phase=StepPhase.FAILED, now=now, error=error.message)
    stop_run(
        ctx,
        run.id,
        was=_current_state(ctx, run.id),
        to=RunState.FAILED,
        code=ReasonCode.REBILL_REFUSED,
        reason=f"{provider.title} refused {step.key}: {error.message}",
    )
    return None


def _settle_steps(ctx: Context, provider: BillingProvider, run: Run, uncertain: Sequence[Step]) -> Watch | None:
    """Read what became of steps sent without an answer; wait while any is still unknown."""
    now = ctx.clock()
    unknown: list[Step] = []
    for step in uncertain:
        if step.phase is StepPhase.SENDING and now - step.claimed_at < _TICK_LEASE:
            return Watch()  # its sender may still be waiting for the answer
        result = provider.settle_step(run, step)
        if result.settlement is Settlement.UNKNOWN:
            unknown.append(step)
        else:
            _settled(ctx, run, step, result)
    if not unknown:
        return _DECIDE_AGAIN
    oldest = min(step.claimed_at for step in unknown)
    if now - oldest < timedelta(seconds=ctx.tuning.rebill_settle_seconds):
        return Watch()
    keys = ", ".join(step.key for step in unknown)
    stop_run(
        ctx,
        run.id,
        was=_current_state(ctx, run.id),
        to=RunState.NEEDS_ATTENTION,
        code=ReasonCode.REBILL_OUTCOME_UNKNOWN,
        reason=f"{keys} got no answer and {provider.title} shows no sign of it after "
        f"{int(ctx.tuning.rebill_settle_seconds)} s; check {provider.title}, then `rebill retry {run.id}` "
        "(it reads the platform again before sending anything)",
    )
    return None


def _settled(ctx: Context, run: Run, step: Step, result: StepResult) -> None:
    now = ctx.clock()
    if result.state:
        ctx.ledger.merge_provider_state(run.id, result.state, now=now)
    phase = StepPhase.RELEASED if result.settlement is Settlement.NOT_APPLIED else StepPhase.SENT
    ctx.ledger.finish_step(run.id, step.key, phase=phase, now=now, ref=result.ref)


def _finish(ctx: Context, run: Run, action: Finish) -> None:
    if ctx.ledger.transition(
        run.id,
        from_states=FOLLOWING_RUN_STATES,
        to=action.state,
        now=ctx.clock(),
        reason_code=action.code,
        reason=action.reason,
        notice=None,
    ):
        log.info("run %s: %s%s", run.id, action.state.value, f" ({action.reason})" if action.reason else "")


def _stall(ctx: Context, provider: BillingProvider, run: Run, status: str) -> None:
    minutes = run.options.stall_after_seconds / 60
    stop_run(
        ctx,
        run.id,
        was=_current_state(ctx, run.id),
        to=RunState.STALLED,
        code=ReasonCode.STALLED,
        reason=f"{status} has not changed for over {minutes:g} min; check {provider.title}, then "
        f"`rebill retry {run.id}` to resume following it",
    )


def _current_state(ctx: Context, run_id: str) -> RunState:
    run = ctx.ledger.get_run(run_id)
    return run.state if run is not None else RunState.POLLING


def _backoff(run: Run, error: TransientProviderError, *, attempt: int = 1) -> float:
    return retry_delay(
        attempt,
        base=run.options.retry_backoff_seconds,
        cap=max(run.options.retry_backoff_max_seconds, run.options.poll_interval_seconds),
        retry_after=error.retry_after,
    )
