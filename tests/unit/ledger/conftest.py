from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest

from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.billing import Invoice
from orchestrator.domain.run import PlannedItem, Run, RunOptions, RunState, Selection
from orchestrator.services.ports import NewRun, Opening
from tests.fakes import FakeClock

MakeRun = Callable[..., Run]


def selection(billing: str = "2026-11", party: str | None = None) -> Selection:
    """A selection shaped as the fake platform makes them: one scope per billing, a party makes it partial."""
    scope = f"fake:{billing}"
    return Selection(
        scope=scope,
        guard_key=scope + (f":party:{party}" if party else ""),
        label=f"billing {billing}" + (f" for party {party}" if party else ""),
        selector={"billing": billing, **({"party_id": party} if party else {})},
        whole=party is None,
    )


def new_run(
    clock: FakeClock, chosen: Selection, *, dry_run: bool = False, state: RunState = RunState.PLANNING
) -> NewRun:
    return NewRun(
        id=str(uuid.uuid4()),
        provider="fake",
        opening=Opening(selection=chosen, state={"cycle": "Monthly dues"}),
        options=RunOptions(dry_run=dry_run, chunk_size=5),
        state=state,
        created_at=clock(),
    )


@pytest.fixture
def make_run(ledger: SqlLedger, clock: FakeClock) -> MakeRun:
    """Create a run of `billing` (and `party`) in the ledger, optionally with planned invoices."""

    def make(
        billing: str = "2026-11",
        *,
        party: str | None = None,
        dry_run: bool = False,
        state: RunState | None = None,
        invoices: int = 0,
    ) -> Run:
        run = ledger.create_run(new_run(clock, selection(billing, party), dry_run=dry_run))
        if invoices:
            planned = [
                PlannedItem.eligible(Invoice(str(1000 + n), Decimal("95.00"), Decimal("95.00"), party_id=f"P{n}"))
                for n in range(invoices)
            ]
            ledger.record_plan_page(run.id, planned, expected_offset=0, next_offset=invoices, chunk_size=5, now=clock())
            ledger.finish_planning(run.id, expected_offset=invoices, now=clock(), to=RunState.REVERSING)
        if state is not None:
            ledger.transition(run.id, from_states=set(RunState), to=state, now=clock())
        found = ledger.get_run(run.id)
        assert found is not None
        return found

    return make
