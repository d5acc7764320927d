"""worker liveness: heartbeats, and who holds each delivery and each run's run-level work

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workers") as batch_op:
        batch_op.create_index("ix_workers_beat_at", ["beat_at"], unique=False)
    with op.batch_alter_table("chunks") as batch_op:
        batch_op.add_column(sa.Column("delivered_to", sa.String(length=120), nullable=True))
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("worker_id", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("worker_id")
    with op.batch_alter_table("chunks") as batch_op:
        batch_op.drop_column("delivered_to")
    op.drop_table("workers")
