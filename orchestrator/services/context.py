"""What every service function needs, bundled once by the composition root."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestrator.domain.billing import ApiCall
from orchestrator.services.ports import BillingProvider, Clock, Dispatcher, Ledger, Providers


def utc_now() -> datetime:
    return datetime.now(UTC)


class CallRecorder:
    """Collects the provider's ApiCalls per unit of work (per thread), so each lands on its ledger row."""

    def __init__(self) -> None:
        self._current: ContextVar[list[ApiCall] | None] = ContextVar("rebill_calls", default=None)

    def record(self, call: ApiCall, *, provider: str = "") -> None:
        """Keep `call` (made by `provider`) on the current unit of work's list, if one is collecting."""
        calls = self._current.get()
        if calls is not None:
            calls.append(call)

    @contextmanager
    def collect(self) -> Iterator[list[ApiCall]]:
        calls: list[ApiCall] = []
        token = self._current.set(calls)
        try:
            yield calls
        finally:
            self._current.reset(token)

    @staticmethod
    def drain(calls: list[ApiCall]) -> list[ApiCall]:
        taken = calls[:]
        calls.clear()
        return taken


class WorkerIdentity:
    """This worker process as the others see it: its id (claims and deliveries carry it) and when its
    heartbeat last reached the ledger. Beats are written by its heartbeat thread; any thread may ask
    whether they are fresh."""

    def __init__(self, worker_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.id = worker_id
        self._clock = clock
        self._last_beat: float | None = None
        #: Bumped each time this worker learns it was declared dead: claims taken before are suspect.
        self.epoch = 0

    def beaten(self) -> None:
        self._last_beat = self._clock()

    def taken_over(self) -> None:
        """Others declared this worker dead and took what it held: every claim it made before must be
        checked in the ledger before it writes."""
        self.epoch += 1

    def fresh(self, within: float) -> bool:
        """Its last heartbeat is younger than `within` seconds: nobody can have declared it dead."""
        last = self._last_beat
        return last is not None and self._clock() - last < within


@dataclass(frozen=True, slots=True)
class Tuning:
    """Knobs of the deployment (not of a run)."""

    lease_seconds: float = 120.0
    dispatch_window: int = 16  # chunks of a run in the broker at once, unless its provider has its own
    dispatch_windows: Mapping[str, int] = field(default_factory=dict)  # per provider: twice its tenant cap
    ramp_chunks: Mapping[str, int] = field(default_factory=dict)  # per provider, its tenant cap (`chunk_capacity`)
    lost_message_seconds: float = 120.0
    max_deliveries: int = 5
    rebill_settle_seconds: float = 120.0
    max_countdown_seconds: float = 1800.0  # keep every countdown well under the broker's visibility timeout
    write_budget_seconds: float = 70.0  # the longest one write call may take, slot wait included
    claim_batch_size: int = 10  # items claimed, and their outcomes written, per ledger round trip
    worker_dead_after_seconds: float = 7.0  # a worker silent this long is declared dead

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    def window_for(self, provider: str) -> int:
        return self.dispatch_windows.get(provider, self.dispatch_window)


@dataclass(slots=True)
class Context:
    ledger: Ledger
    providers: Providers
    dispatcher: Dispatcher
    recorder: CallRecorder = field(default_factory=CallRecorder)
    tuning: Tuning = field(default_factory=Tuning)
    clock: Clock = utc_now
    worker: WorkerIdentity | None = None  # None outside a worker process (the command line)

    @property
    def worker_id(self) -> str | None:
        return self.worker.id if self.worker is not None else None

    def provider(self, name: str) -> BillingProvider:
        """The run's provider; ConfigurationError naming what to set when it is not configured here."""
        return self.providers.get(name)

    def countdown_until(self, moment: datetime) -> float:
        seconds = (moment - self.clock()).total_seconds()
        return min(max(0.0, seconds), self.tuning.max_countdown_seconds)
