"""web view indexes: per-state money and settle times of a run, and an invoice's calls

Each replaces an index it extends, so writers maintain as many indexes as before:
`ix_items_run_state` (run_id, state) becomes (run_id, state, amount, updated_at), read without the
rows for a run's counts, money and activity; `ix_api_calls_run` (run_id) becomes (run_id, item_id),
one invoice's calls (and the run's own, item_id NULL) without scanning the run's.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_run_outcomes", ["run_id", "state", "amount", "updated_at"], unique=False)
        batch_op.drop_index("ix_items_run_state")
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.create_index("ix_api_calls_run_item", ["run_id", "item_id"], unique=False)
        batch_op.drop_index("ix_api_calls_run")


def downgrade() -> None:
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.create_index("ix_api_calls_run", ["run_id"], unique=False)
        batch_op.drop_index("ix_api_calls_run_item")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.create_index("ix_items_run_state", ["run_id", "state"], unique=False)
        batch_op.drop_index("ix_items_run_outcomes")
