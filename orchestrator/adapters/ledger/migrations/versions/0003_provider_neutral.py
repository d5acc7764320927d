"""provider-neutral ledger: selections, provider options and state as JSON, run-level steps, scopes

Every run made before this revision is an iMIS run: its BillingLog columns become the iMIS
provider's selector, options and kept state; its rebill phase becomes a `rebill` step (and a posted
batch a `post_batch` step); status events keep iMIS's numbers as codes with their labels.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As iMIS labels them (frozen here: a migration never imports the code it migrates).
_STATUS_LABELS = {
    0: "Pending",
    1: "Processing",
    2: "Completed",
    3: "Failed",
    4: "Unposted batch",
    5: "Reversing invoices",
    6: "Batch deleted",
}
_CORE_OPTIONS = (
    "dry_run",
    "allow_partial",
    "chunk_size",
    "max_attempts",
    "retry_backoff_seconds",
    "retry_backoff_max_seconds",
    "poll_interval_seconds",
    "stall_after_seconds",
)
_IMIS_OPTIONS = (
    "mode",
    "tracking_log",
    "adjustment_reason",
    "adjustment_date",
    "do_not_cancel_membership",
    "automatically_post_batch",
    "post_unposted_batch",
)

_runs = sa.table(
    "runs",
    sa.column("id", sa.String),
    sa.column("original_key", sa.String),
    sa.column("party_id", sa.String),
    sa.column("options", sa.JSON),
    sa.column("original_log", sa.JSON),
    sa.column("tracking_log_key", sa.String),
    sa.column("tracking_log_created", sa.Boolean),
    sa.column("rebill_phase", sa.String),
    sa.column("rebill_sent_at", sa.DateTime(timezone=True)),
    sa.column("rebill_task_id", sa.String),
    sa.column("rebill_log_key", sa.String),
    sa.column("known_log_keys", sa.JSON),
    sa.column("batch_id", sa.String),
    sa.column("batch_posted", sa.Boolean),
    sa.column("last_status", sa.Integer),
    sa.column("reason_code", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("scope", sa.String),
    sa.column("selection_label", sa.Text),
    sa.column("selector", sa.JSON),
    sa.column("whole", sa.Boolean),
    sa.column("provider_options", sa.JSON),
    sa.column("provider_state", sa.JSON),
    sa.column("item_actions", sa.Boolean),
    sa.column("last_status_subject", sa.String),
    sa.column("last_status_code", sa.String),
    sa.column("last_status_label", sa.String),
)
_scopes = sa.table("run_scopes", sa.column("scope", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))
_steps = sa.table(
    "steps",
    sa.column("run_id", sa.String),
    sa.column("key", sa.String),
    sa.column("kind", sa.String),
    sa.column("phase", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("claimed_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("ref", sa.String),
    sa.column("request", sa.JSON),
)


def upgrade() -> None:
    op.create_table(
        "run_scopes",
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "key"),
    )
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("selection_label", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("selector", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("whole", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("notice", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("provider_options", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("provider_state", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("item_actions", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("last_status_subject", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("last_status_code", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("last_status_label", sa.String(length=200), nullable=True))

    connection = op.get_bind()
    for row in connection.execute(sa.select(_runs)).mappings().all():
        _carry_run_over(connection, row)

    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_index("ix_runs_original_key")
        for column in (
            "original_key",
            "party_id",
            "original_log",
            "tracking_log_key",
            "tracking_log_created",
            "rebill_phase",
            "rebill_sent_at",
            "rebill_task_id",
            "rebill_log_key",
            "known_log_keys",
            "batch_id",
            "batch_posted",
            "last_status",
        ):
            batch_op.drop_column(column)
        for column, kind in (
            ("scope", sa.String(length=200)),
            ("selection_label", sa.Text()),
            ("selector", sa.JSON()),
            ("whole", sa.Boolean()),
            ("provider_options", sa.JSON()),
            ("provider_state", sa.JSON()),
            ("item_actions", sa.Boolean()),
        ):
            batch_op.alter_column(column, existing_type=kind, nullable=False)
        batch_op.create_index("ix_runs_scope", ["scope"], unique=False)

    with op.batch_alter_table("chunks") as batch_op:
        batch_op.add_column(sa.Column("group_key", sa.String(length=200), nullable=True))
    _items(connection)
    _status_events(connection)


def _carry_run_over(connection: sa.Connection, row: Any) -> None:
    """One iMIS run of the old shape in the new one."""
    options = dict(row.options or {})
    original = dict(row.original_log or {})
    key, party = row.original_key, row.party_id
    scope = f"imis:{key}"
    label = f"BillingLog {key} ({original.get('run_name') or original.get('cycle_name') or ''})" + (
        f" for party {party}" if party else ""
    )
    selector = {"billing_log": key, **({"party_id": party} if party else {})}
    state = {
        "original": original,
        "tracking_log_key": row.tracking_log_key,
        "tracking_log_created": bool(row.tracking_log_created),
        "known_log_keys": row.known_log_keys,
        "rebill_log_key": row.rebill_log_key,
        "batch_id": row.batch_id,
        "batch_posted": bool(row.batch_posted),
    }
    status = row.last_status
    connection.execute(
        _runs.update()
        .where(_runs.c.id == row.id)
        .values(
            scope=scope,
            selection_label=label,
            selector=selector,
            whole=party is None,
            options={name: options[name] for name in _CORE_OPTIONS if name in options},
            provider_options={name: options[name] for name in _IMIS_OPTIONS if name in options},
            provider_state=state,
            item_actions=options.get("mode", "orchestrated") != "native",
            last_status_subject=row.rebill_log_key or row.tracking_log_key if status is not None else None,
            last_status_code=str(status) if status is not None else None,
            last_status_label=_STATUS_LABELS.get(status, str(status)) if status is not None else None,
            reason_code="AWAITING_OPERATOR" if row.reason_code == "UNPOSTED_BATCH" else row.reason_code,
        )
    )
    exists = connection.execute(sa.select(_scopes.c.scope).where(_scopes.c.scope == scope)).first()
    if exists is None:
        connection.execute(_scopes.insert().values(scope=scope, created_at=row.created_at))
    phase = row.rebill_phase or "NOT_SENT"
    if phase != "NOT_SENT":
        connection.execute(
            _steps.insert().values(
                run_id=row.id,
                key="rebill",
                kind="rebill",
                phase=phase,
                attempts=1,
                claimed_at=row.rebill_sent_at or row.updated_at,
                updated_at=row.updated_at,
                ref=row.rebill_task_id,
                request={},
            )
        )
    if row.batch_posted and row.batch_id:
        connection.execute(
            _steps.insert().values(
                run_id=row.id,
                key="post_batch",
                kind="post_batch",
                phase="SENT",
                attempts=1,
                claimed_at=row.updated_at,
                updated_at=row.updated_at,
                ref=row.batch_id,
                request={"batch_id": row.batch_id},
            )
        )


def _items(connection: sa.Connection) -> None:
    postgres = connection.dialect.name == "postgresql"
    with op.batch_alter_table("items") as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("result_ref", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("rebill_ref", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("new_amount", sa.String(length=40), nullable=True))
    if postgres:
        op.execute("ALTER TABLE items ALTER COLUMN new_amount TYPE NUMERIC(19, 4) USING new_amount::numeric(19, 4)")
        op.execute(
            "UPDATE items SET details = json_build_object("
            "'accounting_method', accounting_method, 'number', invoice_number)"
        )
        op.execute("ALTER TABLE items ALTER COLUMN invoice_number TYPE VARCHAR(64) USING invoice_number::text")
    else:
        op.execute(
            "UPDATE items SET details = json_object('accounting_method', accounting_method, 'number', invoice_number)"
        )
    with op.batch_alter_table("items") as batch_op:
        batch_op.drop_column("accounting_method")
        if not postgres:
            batch_op.alter_column("invoice_number", existing_type=sa.BigInteger(), type_=sa.String(length=64))
    if not postgres:
        op.execute("UPDATE items SET invoice_number = CAST(invoice_number AS TEXT) WHERE invoice_number IS NOT NULL")


def _status_events(connection: sa.Connection) -> None:
    with op.batch_alter_table("status_events") as batch_op:
        batch_op.alter_column("billing_log_key", new_column_name="subject", existing_type=sa.String(length=64))
        batch_op.add_column(sa.Column("code", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("label", sa.String(length=200), nullable=True))
    labels = " ".join(f"WHEN {status} THEN '{label}'" for status, label in _STATUS_LABELS.items())
    op.execute(
        f"UPDATE status_events SET code = CAST(status AS VARCHAR(40)), "  # noqa: S608 - constants only
        f"label = CASE status {labels} ELSE CAST(status AS VARCHAR(40)) END"
    )
    with op.batch_alter_table("status_events") as batch_op:
        batch_op.drop_column("status")
        batch_op.alter_column("subject", existing_type=sa.String(length=64), type_=sa.String(length=200))
        batch_op.alter_column("code", existing_type=sa.String(length=40), nullable=False)
        batch_op.alter_column("label", existing_type=sa.String(length=200), nullable=False)


def downgrade() -> None:
    raise NotImplementedError("the provider-neutral ledger cannot be taken back to the iMIS-only one")
