"""The org's daily API allocation: pause a run before it is spent, and resume once usage falls.

Every `/services/data` reply says `Sforce-Limit-Info: api-usage=N/M` (the client keeps the latest).
At `pause_at` of M nothing more is sent: `ProviderPaused` says why, the core shows that on the run
and tries again later. A reading only changes when a call is made, so while paused one cheap
probe (`SELECT COUNT() FROM Invoice LIMIT 1`) refreshes it, at most once per `recheck_seconds`
per process (not once per waiting invoice). Salesforce's own refusal when the allocation is spent
(403 REQUEST_LIMIT_EXCEEDED TotalRequests, `AllocationExhausted`) pauses the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from orchestrator.adapters.providers.salesforce.client import SalesforceClient
from orchestrator.adapters.providers.salesforce.errors import AllocationExhausted
from orchestrator.adapters.providers.salesforce.soql import INVOICE, count
from orchestrator.adapters.providers.salesforce.wire import ApiUsage
from orchestrator.domain.errors import ProviderPaused

__all__ = ["UsageGate"]

_PROBE = count(INVOICE).limit(1)


class UsageGate:
    """Thread-safe: one per provider, shared by every worker thread of a process."""

    def __init__(
        self,
        client: SalesforceClient,
        *,
        pause_at: float,
        recheck_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.pause_at = pause_at
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._probed_at: float | None = None

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Calls that may only be made below the threshold: checked first, a spent allocation pauses."""
        self.check()
        with self.pausing():
            yield

    @contextlib.contextmanager
    def pausing(self) -> Iterator[None]:
        """Salesforce's refusal for a spent allocation becomes a pause (reads made in any case)."""
        try:
            yield
        except AllocationExhausted as spent:
            raise self._paused(spent.usage or self._client.usage) from None

    def check(self) -> None:
        """ProviderPaused while the latest reading is at or above the threshold (probing again when due)."""
        usage = self._client.usage
        if usage is None or usage.share < self.pause_at:
            return
        if self._probe_due():
            with self.pausing():
                self._client.count(_PROBE)
            usage = self._client.usage
            if usage is None or usage.share < self.pause_at:
                return
        raise self._paused(usage)

    def _probe_due(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._probed_at is not None and now - self._probed_at < self.recheck_seconds:
                return False
            self._probed_at = now
            return True

    def _paused(self, usage: ApiUsage | None) -> ProviderPaused:
        threshold = f"{self.pause_at:.0%}"
        if usage is None:
            said = "the org's daily API allocation is spent"
        elif usage.share >= 1:
            said = f"the org's daily API allocation is spent ({usage.used}/{usage.allocation})"
        else:
            said = f"API usage {usage.share:.0%} of the daily allocation ({usage.used}/{usage.allocation})"
        return ProviderPaused(
            f"paused: {said}; resumes by itself below {threshold}",
            operation="api-usage",
            retry_after=self.recheck_seconds,
        )
