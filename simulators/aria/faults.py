"""Fault settings of the Aria simulator: the shared ones (`simulators.common.faults`) plus Aria's own.

The shared settings (latency, jitter, the probabilistic faults and how they are drawn) are described
in `simulators.common.faults`; for Aria the useful ones are `p_500` (an HTML error page, nothing
applied) and `p_reply_lost` (the call is applied, then 502: on gen_rb_m the rebill exists but the
client never hears of it). Aria adds, for gen_rb_m only and drawn after the shared ones:

| setting         | answer (HTTP 200)                                    | rebill applied?         |
|-----------------|------------------------------------------------------|-------------------------|
| `p_busy`        | 3108 another invoice in progress for the billing group | no                    |
| `p_unexpected`  | 1001 unexpected error                                | `unexpected_applies`    |

and `page_cap`, the `limit` above which the object query silently returns fewer records. Every
fault injected is counted by kind (`injected()`), for the counters route.
"""

from __future__ import annotations

import enum
import random
from collections import Counter

from pydantic import Field

from simulators.common import faults as common
from simulators.common.faults import FaultDecision

__all__ = ["AriaFaultInjector", "AriaFaults", "RebillFault"]

DEFAULT_PAGE_CAP = 1000


class AriaFaults(common.Faults):
    """Everything the Aria simulator can be told to do wrong."""

    p_busy: float = common.Probability
    p_unexpected: float = common.Probability
    unexpected_applies: bool = True
    page_cap: int = Field(default=DEFAULT_PAGE_CAP, ge=1)


class RebillFault(enum.StrEnum):
    BUSY = "busy"
    UNEXPECTED = "unexpected"


class AriaFaultInjector(common.FaultInjector[AriaFaults]):
    """The shared injector over `AriaFaults`, with gen_rb_m's own faults and a count of every fault."""

    def __init__(self, faults: AriaFaults | None = None, rng: random.Random | None = None) -> None:
        super().__init__(faults or AriaFaults(), rng)
        self._injected: Counter[str] = Counter()

    def decide(self, operation: str, *, api: bool = True) -> FaultDecision[AriaFaults]:
        decision = super().decide(operation, api=api)
        if decision.kind is not None:
            with self._lock:
                self._injected[decision.kind.value] += 1
        return decision

    def rebill_fault(self) -> RebillFault | None:
        """Draw gen_rb_m's own fault (one uniform draw, `p_busy` first), and count it."""
        settings = self.settings
        if settings.p_busy <= 0 and settings.p_unexpected <= 0:
            return None
        with self._lock:
            draw = self._rng.random()
            fault = None
            if draw < settings.p_busy:
                fault = RebillFault.BUSY
            elif draw < settings.p_busy + settings.p_unexpected:
                fault = RebillFault.UNEXPECTED
            if fault is not None:
                self._injected[fault.value] += 1
            return fault

    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._injected)

    def reset_counts(self) -> None:
        with self._lock:
            self._injected.clear()
