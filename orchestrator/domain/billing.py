"""What a billing platform holds, in the orchestrator's own words.

Every platform (iMIS, Aria, Salesforce Revenue Cloud Billing, EnergyCAP) calls its documents
something else (invoice, bill) and keeps other facts about them. The core knows only what every
one of them has: an id, a number to show, who is billed, the amount and what is still owed. What a
provider needs later to act on a document travels with it as `details`, plain JSON the core stores
and hands back without reading. Money is always `Decimal`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Invoice:
    """One invoice (or bill) of a run's selection, as planning found it."""

    invoice_id: str
    amount: Decimal
    balance: Decimal
    number: str | None = None
    party_id: str | None = None  # who is billed: a member, an account
    party_name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # the provider's own facts (JSON)


class CallOutcome(enum.StrEnum):
    OK = "ok"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One HTTP exchange with a billing platform, as the ledger records it."""

    operation: str
    outcome: CallOutcome
    latency_ms: float
    started_at: datetime
    status_code: int | None = None
    error: str | None = None


def money(value: Decimal) -> str:
    """Two places, as every platform shows an amount."""
    return f"{value:.2f}"
