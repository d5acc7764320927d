"""The SQLAlchemy ledger: every method one short transaction, claims as conditional updates.

It is put together from the seams of the work it records: the run store (runs, their scope locks,
steps and statuses), the plan writer (pages of a selection into items and chunks), the item claims
(chunks, leases, outcomes, calls) and the workers' liveness (heartbeats, taking over from the dead).
"""

from __future__ import annotations

from orchestrator.adapters.ledger.claims import ItemClaims
from orchestrator.adapters.ledger.liveness import WorkerLiveness
from orchestrator.adapters.ledger.plans import PlanWriter
from orchestrator.adapters.ledger.runs import RunStore


class SqlLedger(RunStore, PlanWriter, ItemClaims, WorkerLiveness):
    """The `Ledger` port on SQLite or PostgreSQL."""
