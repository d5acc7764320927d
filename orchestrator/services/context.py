"""What every service function needs, bundled once by the composition root."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


@dataclass(frozen=True, slots=True)
class Runtime:
    """Knobs of the deployment (not of a run)."""

    lease_seconds: float = 120.0
    dispatch_window: int = 16  # chunks of a run in the broker at once, unless its provider has its own
    dispatch_windows: Mapping[str, int] = field(default_factory=dict)  # per provider: twice its tenant cap
    lost_message_seconds: float = 120.0
    max_deliveries: int = 5
    rebill_settle_seconds: float = 120.0
    max_countdown_seconds: float = 1800.0  # keep every countdown well under the broker's visibility timeout
    write_budget_seconds: float = 70.0  # the longest one write call may take, slot wait included
    claim_batch_size: int = 10  # items claimed, and their outcomes written, per ledger round trip

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
    runtime: Runtime = field(default_factory=Runtime)
    clock: Clock = utc_now

    def provider(self, name: str) -> BillingProvider:
        """The run's provider; ConfigurationError naming what to set when it is not configured here."""
        return self.providers.get(name)

    def countdown_until(self, moment: datetime) -> float:
        seconds = (moment - self.clock()).total_seconds()
        return min(max(0.0, seconds), self.runtime.max_countdown_seconds)
