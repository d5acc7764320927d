"""`--wait`: follow a run from the ledger (never the broker), through worker, broker and ledger loss.

On a terminal: a bar for planning, one for the invoices (settled of all, with the pace, the time left
and the calls in flight against the tenant's cap), and the follow-up with the platform's status path.
Elsewhere (a pipe, CI, a log of `make demo`): a timestamped line with the same numbers every few
seconds, and at once when the run changes state. A run that does not move while no worker consumes
its queue is said within seconds (warnings go to stderr), and so is a worker taking the queue up.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import click
import redis
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from orchestrator.adapters.broker.celery import BrokerUnreachable, queue_consumers
from orchestrator.adapters.ledger.database import LEDGER_UNREACHABLE, unreachable_reason
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError, RebillError
from orchestrator.domain.run import FOLLOWING_RUN_STATES, ItemState, Run, RunState
from orchestrator.entrypoints.cli.reading import run_views
from orchestrator.services.views import Progress as RunProgress, RunViews, shown_duration, shown_money

T = TypeVar("T")

_REFRESH_SECONDS = 0.5
#: Without a terminal: a line this often while the run moves, and at least this often while it does not.
LINE_SECONDS, QUIET_LINE_SECONDS = 5.0, 30.0
#: A run unchanged this long makes the follower ask the broker whether any worker consumes the queue
#: (and again this often while it stays unchanged).
STILL_SECONDS, ASK_AGAIN_SECONDS = 3.0, 10.0
_LEDGER_RETRY_SECONDS = 1.0
#: How long `--wait` waits out a ledger it cannot read before it gives up (exit 2); the run goes on regardless.
LEDGER_PATIENCE_SECONDS = 120.0


def outcome_code(run: Run) -> int:
    """0 only for a completed run (the provider completes a run only once its platform says it is done),
    or a dry run that previewed everything."""
    return 0 if run.state in (RunState.COMPLETED, RunState.DRY_RUN) else 1


def through_ledger_outages(read: Callable[[], T], *, run_id: str, patience_seconds: float) -> T:
    """`read()`, again and again while the ledger is unreachable: say so once, and when it is back.

    Past `patience_seconds` of outage, a ConfigurationError naming REBILL_DATABASE_URL (exit 2).
    """
    down_since: float | None = None
    while True:
        try:
            value = read()
        except LEDGER_UNREACHABLE as error:
            now = time.monotonic()
            if down_since is None:
                down_since = now
                click.echo(
                    f"waiting for the ledger ({unreachable_reason(error)}); the run goes on in the workers", err=True
                )
            elif now - down_since >= patience_seconds:
                raise ConfigurationError(
                    f"the ledger has been unreachable for {now - down_since:.0f} s ({unreachable_reason(error)}): "
                    f"check REBILL_DATABASE_URL; the run goes on in the workers, `rebill status {run_id}` shows it"
                ) from None
            time.sleep(_LEDGER_RETRY_SECONDS)
            continue
        if down_since is not None:
            click.echo(f"the ledger is back after {time.monotonic() - down_since:.0f} s", err=True)
        return value


@dataclass(frozen=True)
class Snapshot:
    """One look at the run: its progress (the web view's), the platform's status path, calls in flight."""

    progress: RunProgress
    path: str  # "5 → 1"
    in_flight: int | None  # calls to the tenant in flight now, all workers (None: not known here)
    cap: int | None

    @property
    def state(self) -> RunState:
        return self.progress.state

    def key(self) -> tuple[object, ...]:
        """What changes when the run moves."""
        outcomes = self.progress.outcomes
        return self.state, self.progress.planned, tuple(sorted(outcomes.counts.items())), self.path

    def counts(self) -> str:
        outcomes = self.progress.outcomes
        shown = [
            f"{word} {outcomes.count(state):,}"
            for word, state in (
                ("reversed", ItemState.REVERSED),
                ("previewed", ItemState.PREVIEWED),
                ("left as-is", ItemState.SKIPPED),
                ("failed", ItemState.FAILED),
                ("waiting to retry", ItemState.RETRY_WAIT),
            )
            if outcomes.count(state) or state in (ItemState.REVERSED, ItemState.FAILED)
        ]
        return ", ".join(shown)

    def pace(self) -> str:
        """`12.5/s, 0:18 left`, when the run is working through its invoices."""
        progress = self.progress
        if progress.state is not RunState.REVERSING or progress.rate_per_second == 0:
            return ""
        eta = progress.eta_seconds
        return f"{progress.rate_per_second:.1f}/s" + (f", {shown_duration(eta)} left" if eta is not None else "")

    def calls(self) -> str:
        if self.in_flight is None or self.state not in (RunState.PLANNING, RunState.REVERSING, *FOLLOWING_RUN_STATES):
            return ""
        return f"{self.in_flight}" + (f"/{self.cap}" if self.cap else "") + " calls in flight"

    def status(self) -> str:
        step = self.progress.last_step
        if step is None:
            return "status -"
        return f"status {self.path} ({step.label})"

    def line(self) -> str:
        """The whole snapshot on one line (without a terminal)."""
        outcomes = self.progress.outcomes
        if self.state is RunState.PLANNING:
            head = f"{outcomes.total:,} invoices planned so far"
        else:
            head = f"{outcomes.settled:,}/{outcomes.total:,} settled"
        if outcomes.settled:
            head += f": {self.counts()}"
        parts = [head, self.calls(), self.pace()]
        if self.state in FOLLOWING_RUN_STATES or self.progress.last_step is not None:
            parts.append(self.status())
        return "; ".join(part for part in parts if part)


class _CountColumn(ProgressColumn):
    """`done/total` for the bars that count (`done/?` while the total is not known); nothing for the others."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counted", True):
            return Text("")
        total = f"{int(task.total):,}" if task.total is not None else "?"
        return Text(f"{int(task.completed):,}/{total}", style="progress.download")


class _Follower:
    def __init__(self, container: Container, run_id: str, *, patience_seconds: float) -> None:
        self._container = container
        self._run_id = run_id
        self._patience = patience_seconds
        self._views: RunViews = run_views(container)
        run = self.read(lambda: container.ledger.get_run(run_id))
        if run is None:
            raise click.ClickException(f"run {run_id} vanished from the ledger")
        self._provider = run.provider
        self._cap: int | None = None
        self._limiter_works = True
        # No silent waits: when the run last changed, when the broker was last asked, what was said.
        self._last_key: tuple[object, ...] | None = None
        self._changed_at = time.monotonic()
        self._asked_at = 0.0
        self._warned = False

    def read(self, read: Callable[[], T]) -> T:
        return through_ledger_outages(read, run_id=self._run_id, patience_seconds=self._patience)

    def look(self) -> Snapshot:
        def observe() -> tuple[RunProgress, str]:
            progress = self._views.progress(self._run_id)
            if progress is None:
                raise click.ClickException(f"run {self._run_id} vanished from the ledger")
            path = " → ".join(event.code for event in self._container.ledger.status_events(self._run_id))
            return progress, path

        progress, path = self.read(observe)
        snapshot = Snapshot(progress, path, self._in_flight(), self._cap)
        if snapshot.key() != self._last_key:
            if self._warned and self._last_key is not None:
                self._warned = False
                click.echo("the run moves again: a worker took it up", err=True)
            self._last_key, self._changed_at = snapshot.key(), time.monotonic()
        return snapshot

    def _in_flight(self) -> int | None:
        """The tenant's slots held now by every worker (calls in flight), from the limiter's Redis."""
        if not self._limiter_works:
            return None
        try:
            limiter = self._container.limiter(self._provider)
            self._cap = limiter.max_concurrency
            return limiter.holders()
        except (RebillError, redis.RedisError):  # not configured here, or its Redis is away: shown as unknown
            self._limiter_works = False
            return None

    def watch_workers(self, snapshot: Snapshot) -> None:
        """Ask the broker whether any worker consumes the run's queue, once the run has stood still a while."""
        now = time.monotonic()
        if (
            snapshot.state.is_final
            or now - self._changed_at < STILL_SECONDS
            or now - self._asked_at < ASK_AGAIN_SECONDS
        ):
            return
        self._asked_at = now
        queue = self._container.settings.queue
        try:
            consumers = queue_consumers(self._container.producer, queue)
        except BrokerUnreachable as error:
            if not self._warned:
                self._warned = True
                click.echo(f"warning: {error} (REBILL_BROKER_URL); the run waits for it", err=True)
            return
        if consumers == 0 and not self._warned:
            self._warned = True
            waited = now - self._changed_at
            click.echo(
                f"warning: no worker consumes queue {queue!r} (nothing has moved for {waited:.0f} s): the run "
                "waits in the broker until one does; start one with `rebill worker` (same REBILL_BROKER_URL, "
                "REBILL_QUEUE and ledger)",
                err=True,
            )
        elif consumers and self._warned:
            self._warned = False
            click.echo(f"{consumers} worker(s) now consume queue {queue!r}", err=True)


def follow(
    container: Container,
    run_id: str,
    *,
    quiet: bool = False,
    ledger_patience_seconds: float = LEDGER_PATIENCE_SECONDS,
) -> int:
    """Live progress until the run rests; a ledger outage is waited out (see `through_ledger_outages`)."""
    follower = _Follower(container, run_id, patience_seconds=ledger_patience_seconds)
    if quiet:
        snapshot = _until_final(follower, lambda _: None)
    elif sys.stdout.isatty():
        snapshot = _with_bars(follower)
    else:
        snapshot = _until_final(follower, _Lines().show)
    run = follower.read(lambda: container.ledger.get_run(run_id))
    if run is None:
        raise click.ClickException(f"run {run_id} vanished from the ledger")
    if not quiet:
        _print_outcome(run, snapshot)
    return outcome_code(run)


def _until_final(follower: _Follower, show: Callable[[Snapshot], None]) -> Snapshot:
    while True:
        snapshot = follower.look()
        show(snapshot)
        if snapshot.state.is_final:
            return snapshot
        follower.watch_workers(snapshot)
        time.sleep(_REFRESH_SECONDS)


class _Lines:
    """A timestamped line when the state changes, every LINE_SECONDS while the run moves, and every
    QUIET_LINE_SECONDS while it does not."""

    def __init__(self) -> None:
        self._state: RunState | None = None
        self._key: tuple[object, ...] | None = None
        self._at = 0.0

    def show(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        every = LINE_SECONDS if snapshot.key() != self._key else QUIET_LINE_SECONDS
        if snapshot.state is self._state and now - self._at < every:
            return
        self._state, self._key, self._at = snapshot.state, snapshot.key(), now
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp} {snapshot.state.value.lower():<15} {snapshot.line()}")


def _with_bars(follower: _Follower) -> Snapshot:
    columns = (TextColumn("{task.description:<10}"), BarColumn(), _CountColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[note]}")) as bars:
        planning = bars.add_task("planning", total=None, note="")
        invoices = bars.add_task("invoices", total=None, note="")
        follow_up = bars.add_task("follow-up", total=None, note="", counted=False, start=False)

        def show(snapshot: Snapshot) -> None:
            outcomes, planned = snapshot.progress.outcomes, snapshot.progress.planned
            bars.update(planning, completed=outcomes.total, total=outcomes.total if planned else None)
            note = "; ".join(part for part in (snapshot.counts(), snapshot.calls(), snapshot.pace()) if part)
            bars.update(invoices, completed=outcomes.settled, total=outcomes.total if planned else None, note=note)
            if snapshot.state in FOLLOWING_RUN_STATES and not bars.tasks[follow_up].started:
                bars.start_task(follow_up)
            finished = snapshot.state.is_final
            bars.update(
                follow_up,
                total=1 if finished or snapshot.state not in FOLLOWING_RUN_STATES else None,
                completed=1 if snapshot.state is RunState.COMPLETED else 0,
                note=snapshot.status() if snapshot.path else "",
            )

        return _until_final(follower, show)


def _print_outcome(run: Run, snapshot: Snapshot) -> None:
    """What happened, in two lines; `rebill status` has the rest."""
    outcomes = snapshot.progress.outcomes
    click.echo(f"run {run.id}: {run.state.value}" + (f": {run.reason}" if run.reason else ""))
    click.echo(
        f"  reversed {outcomes.count(ItemState.REVERSED):,} ({shown_money(outcomes.reversed)}), "
        f"left as-is {outcomes.count(ItemState.SKIPPED):,} ({shown_money(outcomes.left)}), "
        f"failed {outcomes.count(ItemState.FAILED):,} ({shown_money(outcomes.failed)}); status {snapshot.path or '-'}"
    )
