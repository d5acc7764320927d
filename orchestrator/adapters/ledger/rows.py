"""What the ledger's modules share: row <-> domain mapping, and the engines with their dialect's ways.

SQLite (the embedded default) serialises writers: write transactions start with BEGIN IMMEDIATE so
two threads never both read and then fail to upgrade. PostgreSQL claims with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import BindParameter

from orchestrator.adapters.ledger.models import ItemRow, RunRow, StepRow
from orchestrator.domain.billing import ApiCall, Invoice
from orchestrator.domain.run import (
    Item,
    ItemState,
    Observation,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Selection,
    Step,
    StepPhase,
)

ERROR_LIMIT = 2000


def claimable(now: datetime | BindParameter[datetime]) -> Any:
    return or_(
        ItemRow.state == ItemState.PENDING.value,
        and_(ItemRow.state == ItemState.RETRY_WAIT.value, ItemRow.next_attempt_at <= now),
        and_(ItemRow.state == ItemState.IN_FLIGHT.value, ItemRow.lease_until < now),
    )


def run_from_row(row: Any) -> Run:
    last_status = (
        Observation(row.last_status_subject or "", row.last_status_code, row.last_status_label or row.last_status_code)
        if row.last_status_code is not None
        else None
    )
    return Run(
        id=row.id,
        provider=row.provider,
        selection=Selection(
            scope=row.scope,
            guard_key=row.guard_key or "",
            label=row.selection_label,
            selector=row.selector or {},
            whole=row.whole,
        ),
        state=RunState(row.state),
        options=RunOptions.from_json(row.options),
        created_at=row.created_at,
        updated_at=row.updated_at,
        provider_options=row.provider_options or {},
        provider_state=row.provider_state or {},
        item_actions=row.item_actions,
        guard_held=row.guard_key is not None,
        reason_code=ReasonCode(row.reason_code) if row.reason_code else None,
        reason=row.reason,
        notice=row.notice,
        planned=row.planned,
        plan_offset=row.plan_offset,
        plan_count=row.plan_count,
        invoice_count=row.invoice_count,
        last_status=last_status,
        last_status_change_at=row.last_status_change_at,
        next_poll_at=row.next_poll_at,
        finished_at=row.finished_at,
        schedule_slot=row.schedule_slot,
    )


def item_from_row(row: Any) -> Item:
    return Item(
        id=row.id,
        run_id=row.run_id,
        chunk_id=row.chunk_id,
        invoice=Invoice(
            invoice_id=row.invoice_id,
            amount=row.amount,
            balance=row.balance,
            number=row.invoice_number,
            party_id=row.party_id,
            party_name=row.party_name,
            details=row.details or {},
        ),
        state=ItemState(row.state),
        attempts=row.attempts,
        claims_total=row.claims_total,
        reason=row.reason,
        last_error=row.last_error,
        settled_by_read=row.settled_by_read,
        next_attempt_at=row.next_attempt_at,
        result_ref=row.result_ref,
        rebill_ref=row.rebill_ref,
        new_amount=row.new_amount,
    )


def step_from_row(row: Any) -> Step:
    return Step(
        run_id=row.run_id,
        key=row.key,
        kind=row.kind,
        phase=StepPhase(row.phase),
        claimed_at=row.claimed_at,
        attempts=row.attempts,
        ref=row.ref,
        error=row.error,
        request=row.request or {},
    )


def column_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Domain values to column values."""
    return {name: value.value if isinstance(value, enum.Enum) else value for name, value in fields.items()}


def call_values(run_id: str, call: ApiCall, item_id: int | None) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "item_id": item_id,
        "operation": call.operation,
        "outcome": call.outcome.value,
        "status_code": call.status_code,
        "latency_ms": round(call.latency_ms, 3),
        "error": call.error[:ERROR_LIMIT] if call.error else None,
        "started_at": call.started_at,
    }


class LedgerBase:
    """The engines and what differs between SQLite and PostgreSQL."""

    def __init__(self, engine: Engine, *, write_engine: Engine | None = None) -> None:
        self._read = engine
        self._write = write_engine or engine
        self._postgres = engine.dialect.name == "postgresql"

    def _insert_ignoring_duplicates(self, table: type[Any]) -> Any:
        if self._postgres:
            return pg_insert(table).on_conflict_do_nothing()
        return sqlite_insert(table).on_conflict_do_nothing()

    def _lock(self, statement: Any, *, skip_locked: bool = False) -> Any:
        return statement.with_for_update(skip_locked=skip_locked) if self._postgres else statement


__all__ = [
    "ERROR_LIMIT",
    "LedgerBase",
    "RunRow",
    "StepRow",
    "call_values",
    "claimable",
    "column_values",
    "item_from_row",
    "run_from_row",
    "step_from_row",
]
