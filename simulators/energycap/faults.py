"""What the EnergyCAP simulator can be told to do wrong: the kit's faults plus EnergyCAP's own.

From the kit (`simulators/common/faults.py`, drawn once per counted request): latency and jitter,
429 with Retry-After, 500 (an HTML error page here), 503 (HTML, not applied), a lost reply (the
request is carried out, then 502: a reverse or an import applied), and the others. Restrict them
to some operations with `fault_operations` (e.g. `{"bill.reverse"}` so that settling reads work).

EnergyCAP's own:

| setting           | effect                                                                          |
|-------------------|---------------------------------------------------------------------------------|
| `import_seconds`  | how long an import task takes from Queued to its end (Queued for a quarter of it) |
| `p_kickout`       | a row is kicked out at random, the first time it is imported only                |
| `page_cap`        | lists answer at most this many items per page (below the API's 1000)             |
| `task_guid_reply` | an import answers its task GUID as a JSON string or as `{"taskGUId": ...}`        |
| `deprecated_operations` | replies of these operations carry `ECI-Deprecated` too (as the v3 reverse's always do) |
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any, Literal

from pydantic import Field

from simulators.common import FaultDecision, FaultInjector, Faults


class EnergyCapFaults(Faults):
    import_seconds: float = Field(default=0.5, ge=0.0)
    p_kickout: float = Field(default=0.0, ge=0.0, le=1.0)
    page_cap: int | None = Field(default=None, ge=1)
    task_guid_reply: Literal["string", "object"] = "string"
    deprecated_operations: frozenset[str] = frozenset()

    def public_dict(self) -> dict[str, Any]:
        data = super().public_dict()
        data["deprecated_operations"] = sorted(self.deprecated_operations)
        return data


class CountedFaults(FaultInjector[EnergyCapFaults]):
    """The kit's injector, counting the faults it decides on (the `faults` counter)."""

    def __init__(self, faults: EnergyCapFaults, rng: random.Random) -> None:
        super().__init__(faults, rng)
        self._count_lock = threading.Lock()
        self.decided: Counter[str] = Counter()

    def decide(self, operation: str, *, api: bool = True) -> FaultDecision[EnergyCapFaults]:
        decision = super().decide(operation, api=api)
        if decision.kind is not None:
            with self._count_lock:
                self.decided[decision.kind.value] += 1
        return decision

    def counts(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self.decided)

    def reset_counts(self) -> None:
        with self._count_lock:
            self.decided.clear()
