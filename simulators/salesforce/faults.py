"""Fault and pacing settings of the Salesforce simulator: the shared ones plus the org's own.

The shared settings and how they are drawn per request are in `simulators.common.faults`. On this
platform they are answered the way Salesforce answers:

| shared fault      | Salesforce answer                                                            | applied? |
|-------------------|------------------------------------------------------------------------------|----------|
| `429` (`p_429`)   | 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentPerOrgLongTxn Limit exceeded."       | no       |
| `500` (`p_500`)   | 500 `UNKNOWN_EXCEPTION`                                                      | no       |
| `503_html`        | 503 HTML maintenance page                                                    | no       |
| `reply_lost`      | the operation (void, generate, recover...) is applied, then 502 HTML         | **yes**  |

Salesforce never answers 429: its throttle is a 403, so the shared throttling fault is that 403.

The org's own settings: session lifetime (`token_ttl_seconds`, then 401 `INVALID_SESSION_ID`), query
page size and locator idle expiry, the daily allocation and its rolling window (then 403
`REQUEST_LIMIT_EXCEEDED` "TotalRequests"), the pace of the void and generate walks, and which
generated invoices end in `Error` (`error_schedules` always, `p_schedule_error` by draw) and which
recoveries fail (`p_recover_error`).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from pydantic import Field

from simulators.common import faults as common
from simulators.common.faults import FaultDecision, FaultInjector, FaultKind, Probability

__all__ = ["FaultTally", "SalesforceFaults"]

#: How the counters name the shared faults on this platform.
_TALLY_NAMES = {FaultKind.TOO_MANY_REQUESTS: "403_concurrency", FaultKind.SERVER_ERROR: "500_unknown_exception"}


class SalesforceFaults(common.Faults):
    """Everything the Salesforce simulator can be told to do wrong, or at another pace."""

    token_ttl_seconds: float | None = Field(default=None, gt=0)  # None: a session lives forever
    page_size: int = Field(default=200, ge=1, le=2000)
    locator_idle_seconds: float = Field(default=900.0, gt=0)
    daily_allocation: int = Field(default=100_000, ge=0)
    usage_window_seconds: float = Field(default=86_400.0, gt=0)
    void_seconds: float = Field(default=2.0, ge=0)
    generate_seconds: float = Field(default=3.0, ge=0)
    p_schedule_error: float = Probability
    error_schedules: frozenset[str] = frozenset()
    p_recover_error: float = Probability

    def public_dict(self) -> dict[str, Any]:
        data = super().public_dict()
        data["error_schedules"] = sorted(self.error_schedules)
        return data


class FaultTally(FaultInjector[SalesforceFaults]):
    """The kit's injector, counting every fault it decides (for the `faults` counter)."""

    def __init__(self, faults: SalesforceFaults, rng: random.Random) -> None:
        super().__init__(faults, rng)
        self._tally: Counter[str] = Counter()
        self._tally_lock = threading.Lock()

    def decide(self, operation: str, *, api: bool = True) -> FaultDecision[SalesforceFaults]:
        decision = super().decide(operation, api=api)
        if decision.kind is not None:
            self.count(_TALLY_NAMES.get(decision.kind, decision.kind.value))
        return decision

    def count(self, name: str) -> None:
        """Count one fault (the state counts its own: schedules ending in Error, spent allocation...)."""
        with self._tally_lock:
            self._tally[name] += 1

    def tally(self) -> dict[str, int]:
        with self._tally_lock:
            return dict(self._tally)

    def reset_tally(self) -> None:
        with self._tally_lock:
            self._tally.clear()
