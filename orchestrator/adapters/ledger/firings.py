"""Schedule firings in the ledger's database: one row per fired slot (migration 0002)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, Index, Integer, String, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.adapters.ledger.models import Base, RunRow, UtcDateTime
from orchestrator.services.ports import FiringOutcome, ScheduleFiring


class ScheduleFiringRow(Base):
    __tablename__ = "schedule_firings"
    __table_args__ = (Index("ix_schedule_firings_schedule", "schedule", "slot_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slot: Mapped[str] = mapped_column(String(200), unique=True)
    schedule: Mapped[str] = mapped_column(String(64))
    slot_at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(String(36))
    billing_log_key: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)


def _firing(row: ScheduleFiringRow) -> ScheduleFiring:
    return ScheduleFiring(
        slot=row.slot,
        schedule=row.schedule,
        slot_at=row.slot_at,
        outcome=FiringOutcome(row.outcome),
        fired_at=row.fired_at,
        run_id=row.run_id,
        selected=row.billing_log_key,
        reason=row.reason,
    )


class SqlFiringLog:
    """The `FiringLog` port: the slot is unique, the first firing that did not fail is kept."""

    def __init__(self, engine: Engine, *, write_engine: Engine | None = None) -> None:
        self._read = engine
        self._write = write_engine or engine

    def record_firing(self, firing: ScheduleFiring) -> ScheduleFiring:
        values = {
            "slot": firing.slot,
            "schedule": firing.schedule,
            "slot_at": firing.slot_at,
            "outcome": firing.outcome.value,
            "run_id": firing.run_id,
            "billing_log_key": firing.selected,
            "reason": firing.reason,
            "fired_at": firing.fired_at,
        }
        try:
            with self._write.begin() as conn:
                conn.execute(insert(ScheduleFiringRow), values)
        except IntegrityError:
            # A firing of this slot exists: a failed one may be replaced, any other one stands.
            with self._write.begin() as conn:
                conn.execute(
                    update(ScheduleFiringRow)
                    .where(
                        ScheduleFiringRow.slot == firing.slot,
                        ScheduleFiringRow.outcome == FiringOutcome.FAILED.value,
                    )
                    .values(**values)
                )
        stored = self.get_firing(firing.slot)
        assert stored is not None
        return stored

    def get_firing(self, slot: str) -> ScheduleFiring | None:
        with self._read.connect() as conn:
            row = conn.execute(select(ScheduleFiringRow).where(ScheduleFiringRow.slot == slot)).one_or_none()
        return _firing(row) if row else None  # type: ignore[arg-type]  # Row quacks like the mapped class

    def run_for_slot(self, slot: str) -> str | None:
        with self._read.connect() as conn:
            found = conn.execute(select(RunRow.id).where(RunRow.schedule_slot == slot)).scalar()
        return str(found) if found else None

    def recent_firings(self, *, schedule: str | None = None, limit: int = 20) -> list[ScheduleFiring]:
        statement = select(ScheduleFiringRow).order_by(ScheduleFiringRow.slot_at.desc(), ScheduleFiringRow.id.desc())
        if schedule is not None:
            statement = statement.where(ScheduleFiringRow.schedule == schedule)
        with self._read.connect() as conn:
            rows = conn.execute(statement.limit(limit)).all()
        return [_firing(row) for row in rows]  # type: ignore[arg-type]
