"""Fault settings of the iMIS simulator: the shared ones (`simulators.common.faults`) plus iMIS's own.

The shared settings (latency, jitter, the probabilistic faults and how they are drawn) are
described in `simulators.common.faults`. iMIS adds the token lifetime, the page-size cap, how a
refusal is answered, the reverse-and-rebill task's pace and end, and `fail_invoices`, which makes
every `Invoice/_execute` call about one invoice fail the same way until the entry is removed;
none of those modes applies the operation.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from simulators.common import faults as common
from simulators.common.faults import FaultDecision, FaultKind, merge_patch

__all__ = [
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "Faults",
    "InvoiceFailMode",
    "RebillOutcome",
    "RefusalStyle",
    "merge_patch",
]

InvoiceFailMode = Literal["refuse", "500", "html", "truncated"]
RefusalStyle = Literal["200", "400"]
RebillOutcome = Literal["complete", "fail", "batch_deleted", "stall"]


class Faults(common.Faults):
    """Everything the iMIS simulator can be told to do wrong (or differently)."""

    token_lifetime_seconds: float = Field(default=1200.0, ge=0.0)
    page_size_cap: int = Field(default=500, ge=1)
    refusal_style: RefusalStyle = "200"
    task_step_seconds: float = Field(default=0.5, ge=0.0)
    rebill_outcome: RebillOutcome = "complete"
    fail_invoices: dict[str, InvoiceFailMode] = Field(default_factory=dict)


class FaultInjector(common.FaultInjector[Faults]):
    """The shared injector over iMIS's `Faults` (defaults when none are given), with per-invoice faults."""

    def __init__(self, faults: Faults | None = None, rng: random.Random | None = None) -> None:
        super().__init__(faults or Faults(), rng)

    def invoice_fault(self, invoice_id: str | None) -> InvoiceFailMode | None:
        if invoice_id is None:
            return None
        return self.settings.fail_invoices.get(invoice_id)
