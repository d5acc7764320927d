"""The run store: runs (created under their scope's lock), their steps and the statuses they saw."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.adapters.ledger.models import RunRow, ScopeRow, StatusEventRow, StepRow
from orchestrator.adapters.ledger.rows import LedgerBase, column_values, run_from_row, step_from_row
from orchestrator.domain.errors import RunRefused
from orchestrator.domain.run import (
    ACTIVE_RUN_STATES,
    FOLLOWING_RUN_STATES,
    Observation,
    ReasonCode,
    Run,
    RunState,
    StatusEvent,
    Step,
    StepPhase,
    overlap_refusal,
)
from orchestrator.services.ports import NewRun


class RunStore(LedgerBase):
    # --- runs -------------------------------------------------------------------------------

    def create_run(self, run: NewRun) -> Run:
        """Check against the scope's runs and insert, under the scope's row lock (PostgreSQL) or the
        database's write lock (SQLite): two runs of one scope are never decided at the same time."""
        opening = run.opening
        selection = opening.selection
        guard_key = None if run.options.dry_run else selection.guard_key
        row = {
            "id": run.id,
            "provider": run.provider,
            "scope": selection.scope,
            "selection_label": selection.label,
            "selector": dict(selection.selector),
            "whole": selection.whole,
            "guard_key": guard_key,
            "state": run.state.value,
            "options": run.options.to_json(),
            "provider_options": dict(opening.options),
            "provider_state": dict(opening.state),
            "item_actions": opening.item_actions,
            "planned": False,
            "plan_offset": 0,
            "plan_count": 0,
            "invoice_count": 0,
            "created_at": run.created_at,
            "updated_at": run.created_at,
            "schedule_slot": run.schedule_slot,
        }
        try:
            with self._write.begin() as conn:
                if not run.options.dry_run:
                    self._take_scope(conn, selection.scope, run.created_at)
                    others = conn.execute(select(RunRow).where(RunRow.scope == selection.scope)).all()
                    refusal = overlap_refusal(selection, [run_from_row(other) for other in others])
                    if refusal is not None:
                        raise RunRefused(refusal)
                conn.execute(insert(RunRow), row)
        except IntegrityError:
            holder = self._holder_of(guard_key, run.schedule_slot)
            if holder is None:
                raise
            raise RunRefused(
                f"{selection.label} is already taken by run {holder.id} ({holder.state.value});"
                " one billing is reversed and rebilled once"
            ) from None
        created = self.get_run(run.id)
        assert created is not None
        return created

    def _take_scope(self, conn: Connection, scope: str, now: datetime) -> None:
        conn.execute(self._insert_ignoring_duplicates(ScopeRow).values(scope=scope, created_at=now))
        if self._postgres:
            conn.execute(select(ScopeRow.scope).where(ScopeRow.scope == scope).with_for_update())

    def _holder_of(self, guard_key: str | None, slot: str | None) -> Run | None:
        conditions = []
        if guard_key:
            conditions.append(RunRow.guard_key == guard_key)
        if slot:
            conditions.append(RunRow.schedule_slot == slot)
        if not conditions:
            return None
        with self._read.connect() as conn:
            found = conn.execute(select(RunRow.id).where(or_(*conditions))).scalar()
        return self.get_run(found) if found else None

    def get_run(self, run_id: str) -> Run | None:
        with self._read.connect() as conn:
            row = conn.execute(select(RunRow).where(RunRow.id == run_id)).one_or_none()
        return run_from_row(row) if row else None

    def resolve_run_id(self, prefix: str) -> str | None:
        with self._read.connect() as conn:
            found = conn.execute(select(RunRow.id).where(RunRow.id.startswith(prefix)).limit(2)).all()
        return found[0][0] if len(found) == 1 else None

    def list_runs(self, limit: int = 50) -> list[Run]:
        with self._read.connect() as conn:
            rows = conn.execute(select(RunRow).order_by(RunRow.created_at.desc()).limit(limit)).all()
        return [run_from_row(row) for row in rows]

    def active_runs(self) -> list[Run]:
        active = [state.value for state in ACTIVE_RUN_STATES]
        with self._read.connect() as conn:
            rows = conn.execute(select(RunRow).where(RunRow.state.in_(active))).all()
        return [run_from_row(row) for row in rows]

    def find_runs_by_scope(self, scope: str) -> list[Run]:
        with self._read.connect() as conn:
            rows = conn.execute(select(RunRow).where(RunRow.scope == scope)).all()
        return [run_from_row(row) for row in rows]

    def transition(
        self,
        run_id: str,
        *,
        from_states: Collection[RunState],
        to: RunState,
        now: datetime,
        reason_code: ReasonCode | None = None,
        reason: str | None = None,
        release_guard: bool = False,
        **fields: Any,
    ) -> bool:
        values = column_values(fields)
        values.update(state=to.value, updated_at=now)
        if not to.is_final or reason_code is not None or reason is not None:  # a moving run has no stop reason
            values.update(reason_code=reason_code.value if reason_code else None, reason=reason)
        if to.is_final:
            values["finished_at"] = now
        if release_guard:
            values["guard_key"] = None
        statement = (
            update(RunRow).where(RunRow.id == run_id, RunRow.state.in_([s.value for s in from_states])).values(**values)
        )
        with self._write.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def update_run(self, run_id: str, *, now: datetime, **fields: Any) -> None:
        with self._write.begin() as conn:
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(updated_at=now, **column_values(fields)))

    def merge_provider_state(self, run_id: str, state: Mapping[str, Any], *, now: datetime) -> None:
        with self._write.begin() as conn:
            current = conn.execute(self._lock(select(RunRow.provider_state).where(RunRow.id == run_id))).scalar()
            merged = {**(current or {}), **state}
            kept = {key: value for key, value in merged.items() if value is not None}
            conn.execute(update(RunRow).where(RunRow.id == run_id).values(provider_state=kept, updated_at=now))

    def claim_poll(
        self, run_id: str, *, expected: datetime | None, next_poll_at: datetime, holder: str | None = None
    ) -> bool:
        condition = RunRow.next_poll_at.is_(None) if expected is None else RunRow.next_poll_at == expected
        statement = (
            update(RunRow)
            .where(RunRow.id == run_id, RunRow.state.in_([s.value for s in FOLLOWING_RUN_STATES]), condition)
            .values(next_poll_at=next_poll_at, worker_id=holder)
        )
        with self._write.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def record_status(self, run_id: str, observation: Observation, *, at: datetime) -> bool:
        with self._write.begin() as conn:
            changed = conn.execute(
                update(RunRow)
                .where(
                    RunRow.id == run_id,
                    or_(RunRow.last_status_code.is_(None), RunRow.last_status_code != observation.code),
                )
                .values(
                    last_status_subject=observation.subject,
                    last_status_code=observation.code,
                    last_status_label=observation.label,
                    last_status_change_at=at,
                    updated_at=at,
                )
            ).rowcount
            if changed:
                conn.execute(
                    insert(StatusEventRow),
                    {
                        "run_id": run_id,
                        "subject": observation.subject,
                        "code": observation.code,
                        "label": observation.label,
                        "observed_at": at,
                        "note": observation.note,
                    },
                )
        return bool(changed)

    def status_events(self, run_id: str) -> list[StatusEvent]:
        with self._read.connect() as conn:
            rows = conn.execute(
                select(StatusEventRow)
                .where(StatusEventRow.run_id == run_id)
                .order_by(StatusEventRow.observed_at, StatusEventRow.id)
            ).all()
        return [StatusEvent(row.subject, row.code, row.label, row.observed_at, row.note) for row in rows]

    # --- steps ------------------------------------------------------------------------------

    def steps(self, run_id: str) -> list[Step]:
        with self._read.connect() as conn:
            rows = conn.execute(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.id)).all()
        return [step_from_row(row) for row in rows]

    def claim_step(self, run_id: str, *, key: str, kind: str, request: Mapping[str, Any], now: datetime) -> bool:
        following = [state.value for state in FOLLOWING_RUN_STATES]
        try:
            with self._write.begin() as conn:
                state = conn.execute(self._lock(select(RunRow.state).where(RunRow.id == run_id))).scalar()
                if state not in following:
                    return False
                existing = conn.execute(
                    self._lock(select(StepRow.phase).where(StepRow.run_id == run_id, StepRow.key == key))
                ).scalar()
                claimed = {"phase": StepPhase.SENDING.value, "claimed_at": now, "updated_at": now}
                if existing is None:
                    conn.execute(
                        insert(StepRow),
                        {
                            "run_id": run_id,
                            "key": key,
                            "kind": kind,
                            "attempts": 1,
                            "request": dict(request),
                            **claimed,
                        },
                    )
                    return True
                if existing != StepPhase.RELEASED.value:
                    return False
                return (
                    conn.execute(
                        update(StepRow)
                        .where(StepRow.run_id == run_id, StepRow.key == key, StepRow.phase == StepPhase.RELEASED.value)
                        .values(attempts=StepRow.attempts + 1, request=dict(request), error=None, **claimed)
                    ).rowcount
                    == 1
                )
        except IntegrityError:
            return False  # another claimer inserted the step first

    def finish_step(
        self,
        run_id: str,
        key: str,
        *,
        phase: StepPhase,
        now: datetime,
        ref: str | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"phase": phase.value, "updated_at": now, "error": error}
        if ref is not None:
            values["ref"] = ref
        with self._write.begin() as conn:
            conn.execute(update(StepRow).where(StepRow.run_id == run_id, StepRow.key == key).values(**values))

    def release_steps(self, run_id: str, *, phases: Collection[StepPhase], now: datetime) -> int:
        with self._write.begin() as conn:
            return int(
                conn.execute(
                    update(StepRow)
                    .where(StepRow.run_id == run_id, StepRow.phase.in_([phase.value for phase in phases]))
                    .values(phase=StepPhase.RELEASED.value, updated_at=now)
                ).rowcount
            )
