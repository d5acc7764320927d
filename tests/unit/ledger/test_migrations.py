"""Migration 0003 carries the runs of an iMIS-only ledger (revision 0002) into the provider-neutral one.

A ledger is built at 0002 on a fresh SQLite file and a fresh PostgreSQL schema, filled with runs of
the old shape, upgraded to head as `rebill` does on start, and read back through `SqlLedger`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from orchestrator.adapters.ledger import firings  # noqa: F401 - its table belongs to the models compared
from orchestrator.adapters.ledger.database import MIGRATIONS, LedgerEngines, create_engines, migrate
from orchestrator.adapters.ledger.models import Base, Money, UtcDateTime
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.adapters.providers.imis.model import BillingLog, BillingLogStatus
from orchestrator.adapters.providers.imis.options import ImisKept, ImisOptions, ImisSelector
from orchestrator.domain.errors import RunRefused
from orchestrator.domain.run import (
    ItemState,
    Observation,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Selection,
    StepPhase,
)
from orchestrator.services.ports import NewRun, Opening
from tests.support.databases import backends, database_url

COMPLETED_RUN = str(uuid.UUID(int=1))
CONTACT_RUN = str(uuid.UUID(int=2))
BILLING = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
TRACKING = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
OTHER_BILLING = "11111111-2222-3333-4444-555555555555"
STARTED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

# The tables as revision 0002 left them (only what the rows below fill).
_metadata = sa.MetaData()


def _old_table(name: str, **columns: Any) -> sa.Table:
    return sa.Table(name, _metadata, *(sa.Column(column, kind) for column, kind in columns.items()))


_runs = _old_table(
    "runs",
    id=sa.String,
    provider=sa.String,
    original_key=sa.String,
    party_id=sa.String,
    guard_key=sa.String,
    state=sa.String,
    reason_code=sa.String,
    reason=sa.Text,
    options=sa.JSON,
    original_log=sa.JSON,
    tracking_log_key=sa.String,
    tracking_log_created=sa.Boolean,
    planned=sa.Boolean,
    plan_offset=sa.Integer,
    plan_count=sa.Integer,
    invoice_count=sa.Integer,
    rebill_phase=sa.String,
    rebill_sent_at=UtcDateTime,
    rebill_task_id=sa.String,
    rebill_log_key=sa.String,
    known_log_keys=sa.JSON,
    batch_id=sa.String,
    batch_posted=sa.Boolean,
    last_status=sa.Integer,
    last_status_change_at=UtcDateTime,
    created_at=UtcDateTime,
    updated_at=UtcDateTime,
    finished_at=UtcDateTime,
)
_chunks = _old_table(
    "chunks",
    id=sa.Integer,
    run_id=sa.String,
    seq=sa.Integer,
    state=sa.String,
    size=sa.Integer,
    sealed=sa.Boolean,
    dispatch_count=sa.Integer,
    deliveries=sa.Integer,
)
_items = _old_table(
    "items",
    run_id=sa.String,
    chunk_id=sa.Integer,
    invoice_id=sa.String,
    invoice_number=sa.BigInteger,
    accounting_method=sa.Integer,
    party_id=sa.String,
    party_name=sa.String,
    amount=Money,
    balance=Money,
    state=sa.String,
    reason=sa.Text,
    attempts=sa.Integer,
    claims_total=sa.Integer,
    settled_by_read=sa.Boolean,
    updated_at=UtcDateTime,
)
_status_events = _old_table(
    "status_events",
    run_id=sa.String,
    billing_log_key=sa.String,
    status=sa.Integer,
    observed_at=UtcDateTime,
    note=sa.Text,
)

_OLD_OPTIONS = {
    "mode": "orchestrated",
    "party_id": None,
    "dry_run": False,
    "tracking_log": True,
    "allow_partial": False,
    "chunk_size": 50,
    "max_attempts": 5,
    "retry_backoff_seconds": 1.0,
    "retry_backoff_max_seconds": 120.0,
    "adjustment_reason": "Reverse and rebill",
    "adjustment_date": None,
    "do_not_cancel_membership": True,
    "automatically_post_batch": True,
    "post_unposted_batch": True,
    "poll_interval_seconds": 5.0,
    "stall_after_seconds": 1800.0,
}


def _original_log(key: str, run_name: str) -> dict[str, Any]:
    return {
        "key": key,
        "cycle_name": "Regular Membership Fees",
        "status": 2,
        "run_name": run_name,
        "billing_type": "I",
        "billing_date": None,
        "effective_date": "2025-09-01T00:00:00+00:00",
        "accounting_method": 0,
        "party_id": None,
        "auto_pay_option": 0,
        "original_key": None,
        "batch_id": None,
        "information": None,
    }


def _upgrade(engines: LedgerEngines, revision: str) -> None:
    with engines.write.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _fill_with_old_runs(engines: LedgerEngines) -> None:
    at = STARTED
    with engines.write.begin() as conn:
        conn.execute(
            _runs.insert(),
            [
                {
                    "id": COMPLETED_RUN,
                    "provider": "imis",
                    "original_key": BILLING,
                    "party_id": None,
                    "guard_key": f"imis:{BILLING}",
                    "state": "COMPLETED",
                    "reason_code": None,
                    "reason": None,
                    "options": _OLD_OPTIONS,
                    "original_log": _original_log(BILLING, "Regular Membership Fees 2025-09"),
                    "tracking_log_key": TRACKING,
                    "tracking_log_created": True,
                    "planned": True,
                    "plan_offset": 3,
                    "plan_count": 2,
                    "invoice_count": 3,
                    "rebill_phase": "SENT",
                    "rebill_sent_at": at + timedelta(minutes=5),
                    "rebill_task_id": "task-77",
                    "rebill_log_key": TRACKING,
                    "known_log_keys": None,
                    "batch_id": "B-1",
                    "batch_posted": True,
                    "last_status": 2,
                    "last_status_change_at": at + timedelta(minutes=9),
                    "created_at": at,
                    "updated_at": at + timedelta(minutes=9),
                    "finished_at": at + timedelta(minutes=9),
                },
                {
                    "id": CONTACT_RUN,
                    "provider": "imis",
                    "original_key": OTHER_BILLING,
                    "party_id": "P1007",
                    "guard_key": f"imis:{OTHER_BILLING}:party:P1007",
                    "state": "NEEDS_ATTENTION",
                    "reason_code": "UNPOSTED_BATCH",
                    "reason": "post batch B-9 in iMIS, then `rebill retry`",
                    "options": {**_OLD_OPTIONS, "party_id": "P1007", "tracking_log": False, "chunk_size": 7},
                    "original_log": _original_log(OTHER_BILLING, ""),
                    "tracking_log_key": None,
                    "tracking_log_created": False,
                    "planned": True,
                    "plan_offset": 1,
                    "plan_count": 1,
                    "invoice_count": 1,
                    "rebill_phase": "UNKNOWN",
                    "rebill_sent_at": at + timedelta(minutes=2),
                    "rebill_task_id": None,
                    "rebill_log_key": "c0ffee00-0000-0000-0000-000000000001",
                    "known_log_keys": ["c0ffee00-0000-0000-0000-000000000000"],
                    "batch_id": "B-9",
                    "batch_posted": False,
                    "last_status": 4,
                    "last_status_change_at": at + timedelta(minutes=3),
                    "created_at": at,
                    "updated_at": at + timedelta(minutes=3),
                    "finished_at": at + timedelta(minutes=3),
                },
            ],
        )
        chunk = {"seq": 0, "state": "DONE", "sealed": True, "dispatch_count": 1, "deliveries": 0}
        conn.execute(
            _chunks.insert(),
            [
                {**chunk, "id": 1, "run_id": COMPLETED_RUN, "size": 2},
                {**chunk, "id": 2, "run_id": CONTACT_RUN, "size": 1},
            ],
        )
        item = {"attempts": 1, "claims_total": 1, "settled_by_read": False, "updated_at": at, "reason": None}
        conn.execute(
            _items.insert(),
            [
                {
                    **item,
                    "run_id": COMPLETED_RUN,
                    "chunk_id": 1,
                    "invoice_id": "1001",
                    "invoice_number": 1001,
                    "accounting_method": 0,
                    "party_id": "P1001",
                    "party_name": "Ada Lovelace",
                    "amount": Decimal("95.00"),
                    "balance": Decimal("0"),
                    "state": "REVERSED",
                    "settled_by_read": True,
                },
                {
                    **item,
                    "run_id": COMPLETED_RUN,
                    "chunk_id": 1,
                    "invoice_id": "1002",
                    "invoice_number": 1002,
                    "accounting_method": 1,
                    "party_id": "P1002",
                    "party_name": None,
                    "amount": Decimal("120.50"),
                    "balance": Decimal("0"),
                    "state": "REVERSED",
                },
                {
                    **item,
                    "run_id": COMPLETED_RUN,
                    "chunk_id": None,
                    "invoice_id": "1003",
                    "invoice_number": None,
                    "accounting_method": 0,
                    "party_id": "P1003",
                    "party_name": None,
                    "amount": Decimal("95.00"),
                    "balance": Decimal("0.00"),
                    "state": "SKIPPED",
                    "reason": "has a payment applied",
                    "attempts": 0,
                    "claims_total": 0,
                },
                {
                    **item,
                    "run_id": CONTACT_RUN,
                    "chunk_id": 2,
                    "invoice_id": "2001",
                    "invoice_number": 9007199254740993,  # past a double's exact integers
                    "accounting_method": 1,
                    "party_id": "P1007",
                    "party_name": "Grace Hopper",
                    "amount": Decimal("95.00"),
                    "balance": Decimal("0"),
                    "state": "REVERSED",
                },
            ],
        )
        conn.execute(
            _status_events.insert(),
            [
                {
                    "run_id": COMPLETED_RUN,
                    "billing_log_key": TRACKING,
                    "status": status,
                    "observed_at": at + delay,
                    "note": None,
                }
                for status, delay in ((5, timedelta(0)), (1, timedelta(minutes=6)), (2, timedelta(minutes=9)))
            ]
            + [
                {
                    "run_id": CONTACT_RUN,
                    "billing_log_key": "c0ffee00-0000-0000-0000-000000000001",
                    "status": 4,
                    "observed_at": at + timedelta(minutes=3),
                    "note": "batch B-9",
                }
            ],
        )


@pytest.fixture(params=backends())
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerEngines]:
    """A ledger made at revision 0002, filled with runs of that shape, then upgraded as `rebill` does."""
    with database_url(request.param, tmp_path) as url:
        engines = create_engines(url)
        _upgrade(engines, "0002")
        _fill_with_old_runs(engines)
        migrate(engines)
        yield engines
        engines.dispose()


def _run(ledger: SqlLedger, run_id: str) -> Run:
    run = ledger.get_run(run_id)
    assert run is not None
    return run


def test_a_completed_whole_billing_run_reads_back_as_the_new_model(upgraded: LedgerEngines) -> None:
    ledger = SqlLedger(upgraded.read, write_engine=upgraded.write)

    run = _run(ledger, COMPLETED_RUN)

    assert (run.provider, run.state, run.reason_code) == ("imis", RunState.COMPLETED, None)
    assert run.selection == Selection(
        scope=f"imis:{BILLING}",
        guard_key=f"imis:{BILLING}",
        label=f"BillingLog {BILLING} (Regular Membership Fees 2025-09)",
        selector={"billing_log": BILLING},
        whole=True,
    )
    assert run.guard_held
    assert run.options == RunOptions(chunk_size=50, max_attempts=5, poll_interval_seconds=5.0)
    assert run.item_actions
    assert ImisSelector.model_validate(dict(run.selection.selector)).billing_log == BILLING
    assert ImisOptions.model_validate(dict(run.provider_options)) == ImisOptions()
    kept = ImisKept.model_validate(dict(run.provider_state))
    assert kept == ImisKept(
        original=_original_log(BILLING, "Regular Membership Fees 2025-09"),
        tracking_log_key=TRACKING,
        tracking_log_created=True,
        rebill_log_key=TRACKING,
        batch_id="B-1",
        batch_posted=True,
    )
    assert BillingLog.from_json(kept.original).status is BillingLogStatus.COMPLETED  # a retry could rebill from it
    assert (run.plan_offset, run.plan_count, run.invoice_count, run.planned) == (3, 2, 3, True)
    assert run.last_status == Observation(TRACKING, "2", "Completed")
    assert run.finished_at == STARTED + timedelta(minutes=9)

    assert [(step.key, step.kind, step.phase, step.ref, dict(step.request)) for step in ledger.steps(run.id)] == [
        ("rebill", "rebill", StepPhase.SENT, "task-77", {}),
        ("post_batch", "post_batch", StepPhase.SENT, "B-1", {"batch_id": "B-1"}),
    ]
    assert ledger.steps(run.id)[0].claimed_at == STARTED + timedelta(minutes=5)
    assert [(event.subject, event.code, event.label) for event in ledger.status_events(run.id)] == [
        (TRACKING, "5", "Reversing invoices"),
        (TRACKING, "1", "Processing"),
        (TRACKING, "2", "Completed"),
    ]

    items = {item.invoice.invoice_id: item for item in ledger.iter_items(run.id)}
    assert ledger.item_counts(run.id) == {ItemState.REVERSED: 2, ItemState.SKIPPED: 1}
    first, cash_and_accrual, skipped = items["1001"], items["1002"], items["1003"]
    assert (first.invoice.number, first.invoice.party_name, first.invoice.amount) == (
        "1001",
        "Ada Lovelace",
        Decimal("95.00"),
    )
    assert first.settled_by_read
    assert dict(first.invoice.details) == {"accounting_method": 0, "number": 1001}
    assert dict(cash_and_accrual.invoice.details) == {"accounting_method": 1, "number": 1002}
    assert cash_and_accrual.invoice.amount == Decimal("120.50")
    assert (skipped.invoice.number, skipped.reason, skipped.chunk_id) == (None, "has a payment applied", None)
    assert dict(skipped.invoice.details) == {"accounting_method": 0, "number": None}
    assert (first.result_ref, first.rebill_ref, first.new_amount) == (None, None, None)


def test_a_single_contact_run_waiting_on_a_batch_reads_back_as_awaiting_an_operator(upgraded: LedgerEngines) -> None:
    ledger = SqlLedger(upgraded.read, write_engine=upgraded.write)

    run = _run(ledger, CONTACT_RUN)

    assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
    assert run.reason == "post batch B-9 in iMIS, then `rebill retry`"
    assert run.selection == Selection(
        scope=f"imis:{OTHER_BILLING}",
        guard_key=f"imis:{OTHER_BILLING}:party:P1007",
        label=f"BillingLog {OTHER_BILLING} (Regular Membership Fees) for party P1007",
        selector={"billing_log": OTHER_BILLING, "party_id": "P1007"},
        whole=False,
    )
    assert run.options.chunk_size == 7
    assert ImisOptions.model_validate(dict(run.provider_options)).tracking_log is False
    kept = ImisKept.model_validate(dict(run.provider_state))
    assert (kept.tracking_log_key, kept.known_log_keys, kept.batch_id, kept.batch_posted) == (
        None,
        ["c0ffee00-0000-0000-0000-000000000000"],
        "B-9",
        False,
    )
    assert run.last_status == Observation("c0ffee00-0000-0000-0000-000000000001", "4", "Unposted batch")
    assert [(step.key, step.phase, step.ref) for step in ledger.steps(run.id)] == [("rebill", StepPhase.UNKNOWN, None)]
    [event] = ledger.status_events(run.id)
    assert (event.code, event.label, event.note) == ("4", "Unposted batch", "batch B-9")
    [item] = ledger.iter_items(run.id)
    assert item.invoice.number == "9007199254740993"
    assert dict(item.invoice.details) == {"accounting_method": 1, "number": 9007199254740993}


def test_carried_runs_hold_their_scopes(upgraded: LedgerEngines) -> None:
    ledger = SqlLedger(upgraded.read, write_engine=upgraded.write)

    def whole_run_of(billing: str) -> NewRun:
        scope = f"imis:{billing}"
        return NewRun(
            id=str(uuid.uuid4()),
            provider="imis",
            opening=Opening(Selection(scope, scope, f"BillingLog {billing}", {"billing_log": billing})),
            options=RunOptions(),
            state=RunState.PLANNING,
            created_at=STARTED + timedelta(days=1),
        )

    with pytest.raises(RunRefused, match=f"already has a partial run {CONTACT_RUN}"):
        ledger.create_run(whole_run_of(OTHER_BILLING))
    with pytest.raises(RunRefused, match=f"already taken by run {COMPLETED_RUN}"):
        ledger.create_run(whole_run_of(BILLING))


def test_the_upgraded_schema_is_the_models(upgraded: LedgerEngines) -> None:
    with upgraded.read.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    assert differences == []
