"""The scheduling service over the real ledger (SQLite, and PostgreSQL when configured) and a fake tenant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.adapters.ledger.firings import SqlFiringLog
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.billing import BillingLog, BillingLogStatus
from orchestrator.domain.errors import ProviderAuthError
from orchestrator.domain.run import RunOptions, RunState
from orchestrator.services import scheduling
from orchestrator.services.context import Context
from orchestrator.services.ports import FiringOutcome
from tests.fakes import ORIGINAL_KEY, FakeDispatcher, FakeProvider

CYCLE = "Regular Membership Fees"
SLOT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
LATEST = scheduling.BillingChoice(CYCLE)


@dataclass
class CycleProvider(FakeProvider):
    """The fake tenant, able to list a cycle's billing logs."""

    def billing_logs_of_cycle(self, cycle_name: str) -> list[BillingLog]:
        self._enter("BillingLog.list", cycle_name)
        return [log for log in self.logs.values() if log.cycle_name == cycle_name]


@pytest.fixture
def provider() -> CycleProvider:
    tenant = CycleProvider()
    tenant.seed()
    tenant.logs[ORIGINAL_KEY] = dataclasses.replace(
        tenant.logs[ORIGINAL_KEY], run_name=f"{CYCLE} 2025-09", billing_date=datetime(2025, 8, 15, tzinfo=UTC)
    )
    return tenant


@pytest.fixture
def firings(ledger: SqlLedger) -> SqlFiringLog:
    return SqlFiringLog(ledger._read, write_engine=ledger._write)


def fire(ctx: Context, firings: SqlFiringLog, options: RunOptions, *, slot: datetime = SLOT, choice=LATEST):  # type: ignore[no-untyped-def]
    return scheduling.fire(ctx, firings, schedule="monthly", slot_at=slot, choice=choice, options=options)


def add_log(provider: CycleProvider, key: str, **fields: object) -> BillingLog:
    values: dict[str, object] = {"cycle_name": CYCLE, "status": BillingLogStatus.COMPLETED, **fields}
    provider.logs[key] = BillingLog(key=key, **values)  # type: ignore[arg-type]
    return provider.logs[key]


def test_a_firing_starts_one_run_carrying_its_slot(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, dispatcher: FakeDispatcher, ledger: SqlLedger
) -> None:
    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.STARTED
    assert firing.slot == "monthly@2026-12-01T06:00:00Z"
    assert firing.billing_log_key == ORIGINAL_KEY
    assert firings.run_for_slot(firing.slot) == firing.run_id
    run = ledger.get_run(firing.run_id or "")
    assert run is not None
    assert run.state is RunState.PLANNING
    assert dispatcher.count("plan") == 1


def test_firing_the_same_slot_again_makes_no_second_run(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, dispatcher: FakeDispatcher, ledger: SqlLedger
) -> None:
    first = fire(ctx, firings, options)
    again = fire(ctx, firings, options)

    assert again == first
    assert len(ledger.find_runs_by_billing(ORIGINAL_KEY)) == 1
    assert dispatcher.count("plan") == 1


def test_a_duplicate_firing_that_loses_the_race_reports_the_winners_run(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    # Given a firing that created the run but died before recording itself (its message comes back)
    winner = fire(ctx, firings, options)
    with firings._write.begin() as conn:  # forget the firing row, keep the run
        conn.exec_driver_sql("DELETE FROM schedule_firings")

    # When the slot fires again
    again = fire(ctx, firings, options)

    # Then it finds the run of its slot rather than making another
    assert again.outcome is FiringOutcome.STARTED
    assert again.run_id == winner.run_id
    assert len(ledger.find_runs_by_billing(ORIGINAL_KEY)) == 1


def test_a_billing_already_reverse_and_rebilled_is_skipped_with_the_reason(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger, dispatcher: FakeDispatcher
) -> None:
    first = fire(ctx, firings, options)
    ledger.transition(first.run_id or "", from_states={RunState.PLANNING}, to=RunState.COMPLETED, now=ctx.clock())

    later = fire(ctx, firings, options, slot=SLOT + timedelta(days=31))

    assert later.outcome is FiringOutcome.SKIPPED
    assert later.run_id is None
    assert f"was already reverse-and-rebilled by run {first.run_id} (COMPLETED)" in (later.reason or "")
    assert firings.get_firing(later.slot) == later
    assert dispatcher.count("plan") == 1


def test_an_active_run_of_the_billing_skips_the_firing(
    ctx: Context, firings: SqlFiringLog, options: RunOptions
) -> None:
    first = fire(ctx, firings, options)
    later = fire(ctx, firings, options, slot=SLOT + timedelta(hours=1))

    assert later.outcome is FiringOutcome.SKIPPED
    assert f"is being reverse-and-rebilled by run {first.run_id} (PLANNING)" in (later.reason or "")


def test_a_billing_rebilled_outside_rebill_is_skipped(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: CycleProvider
) -> None:
    add_log(provider, "11111111-1111-1111-1111-111111111111", run_name="Rebill by hand", original_key=ORIGINAL_KEY)

    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.SKIPPED
    assert "already reverse-and-rebilled on the tenant" in (firing.reason or "")
    assert "11111111-1111-1111-1111-111111111111" in (firing.reason or "")


def test_the_latest_completed_original_billing_of_the_cycle_is_taken(ctx: Context, provider: CycleProvider) -> None:
    newer = add_log(provider, "22222222-2222-2222-2222-222222222222", billing_date=datetime(2026, 8, 15, tzinfo=UTC))
    add_log(  # newer still, but still processing
        provider,
        "33333333-3333-3333-3333-333333333333",
        status=BillingLogStatus.PROCESSING,
        billing_date=datetime(2026, 9, 15, tzinfo=UTC),
    )
    add_log(  # a rebill's own log: the result of a reverse-and-rebill, never taken
        provider,
        "44444444-4444-4444-4444-444444444444",
        original_key=ORIGINAL_KEY,
        billing_date=datetime(2026, 10, 1, tzinfo=UTC),
    )
    add_log(provider, "55555555-5555-5555-5555-555555555555", cycle_name="Chapter Dues")

    assert scheduling.choose_billing(ctx, LATEST) == newer
    named = scheduling.BillingChoice(CYCLE, run_name=f"{CYCLE} 2025-09")
    chosen = scheduling.choose_billing(ctx, named)
    assert chosen is not None
    assert chosen.key == ORIGINAL_KEY
    assert scheduling.choose_billing(ctx, scheduling.BillingChoice("No Such Cycle")) is None


def test_no_billing_to_take_is_skipped(ctx: Context, firings: SqlFiringLog, options: RunOptions) -> None:
    firing = fire(ctx, firings, options, choice=scheduling.BillingChoice(CYCLE, run_name="nope"))

    assert firing.outcome is FiringOutcome.SKIPPED
    assert "no billing found" in (firing.reason or "")


def test_a_refusing_tenant_fails_the_firing_and_a_later_firing_of_the_slot_may_succeed(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: CycleProvider
) -> None:
    provider.fail("BillingLog.list", CYCLE, ProviderAuthError("bad credentials", operation="token", status_code=400))

    failed = fire(ctx, firings, options)
    assert failed.outcome is FiringOutcome.FAILED
    assert "bad credentials" in (failed.reason or "")

    retried = fire(ctx, firings, options)
    assert retried.outcome is FiringOutcome.STARTED
    assert firings.get_firing(failed.slot) == retried


def test_a_duplicate_firing_that_finds_its_own_slots_run_reports_it_started(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    # Given a duplicate firing that created the run but has not recorded itself yet
    winner = fire(ctx, firings, options)
    with firings._write.begin() as conn:
        conn.exec_driver_sql("DELETE FROM schedule_firings")
    real_run_for_slot = firings.run_for_slot
    calls = iter([None])  # the first look (before the other firing made its run) finds nothing

    def racing(slot: str) -> str | None:
        return next(calls, real_run_for_slot(slot))

    firings.run_for_slot = racing  # type: ignore[method-assign]

    # When this firing then finds the billing taken
    again = fire(ctx, firings, options)

    # Then the run in its way is its own slot's: it records STARTED, not SKIPPED
    assert again.outcome is FiringOutcome.STARTED
    assert again.run_id == winner.run_id
