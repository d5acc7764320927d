"""The SQLAlchemy ledger: every method one short transaction, claims as conditional updates.

It is put together from the three seams of the work it records: the run store (runs, their scope
locks, steps and statuses), the plan writer (pages of a selection into items and chunks) and the
item claims (chunks, leases, outcomes, calls).
"""

from __future__ import annotations

from orchestrator.adapters.ledger.claims import ItemClaims
from orchestrator.adapters.ledger.plans import PlanWriter
from orchestrator.adapters.ledger.runs import RunStore


class SqlLedger(RunStore, PlanWriter, ItemClaims):
    """The `Ledger` port on SQLite or PostgreSQL."""
