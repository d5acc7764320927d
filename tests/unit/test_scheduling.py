"""The scheduling service over the real ledger (SQLite, and PostgreSQL when configured) and the fake
platform: the provider chooses the billing, the ledger's runs of its scope decide whether to run it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from orchestrator.adapters.ledger.firings import SqlFiringLog
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.errors import ProviderAuthError, ProviderUnavailable
from orchestrator.domain.run import RunOptions, RunState
from orchestrator.services import planning, schedule_firing
from orchestrator.services.context import Context
from orchestrator.services.ports import FiringOutcome, ScheduleFiring
from tests.fakes import BILLING, CYCLE, FakeBilling, FakeDispatcher, FakeProvider

SLOT = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
LATEST: dict[str, Any] = {"cycle": CYCLE, "run_name": None}
SCOPE = f"fake:{BILLING}"


@pytest.fixture(autouse=True)
def _billing(provider: FakeProvider) -> None:
    provider.seed()
    provider.billings[BILLING].name = f"{CYCLE} 2026-11"


@pytest.fixture
def firings(ledger: SqlLedger) -> SqlFiringLog:
    return SqlFiringLog(ledger._read, write_engine=ledger._write)


def fire(
    ctx: Context,
    firings: SqlFiringLog,
    options: RunOptions,
    *,
    slot: datetime = SLOT,
    choice: Mapping[str, Any] = LATEST,
    provider_options: Mapping[str, Any] | None = None,
) -> ScheduleFiring:
    return schedule_firing.fire(
        ctx,
        firings,
        schedule="monthly",
        slot_at=slot,
        provider="fake",
        choice=choice,
        options=options,
        provider_options=provider_options,
    )


def test_a_firing_starts_one_run_carrying_its_slot(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, dispatcher: FakeDispatcher, ledger: SqlLedger
) -> None:
    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.STARTED
    assert firing.slot == "monthly@2026-12-01T06:00:00Z"
    assert firing.selected == BILLING
    assert firings.run_for_slot(firing.slot) == firing.run_id
    run = ledger.get_run(firing.run_id or "")
    assert run is not None
    assert (run.state, run.schedule_slot, run.selection.scope) == (RunState.PLANNING, firing.slot, SCOPE)
    assert dispatcher.count("plan") == 1


def test_firing_the_same_slot_again_makes_no_second_run(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, dispatcher: FakeDispatcher, ledger: SqlLedger
) -> None:
    first = fire(ctx, firings, options)
    again = fire(ctx, firings, options)

    assert again == first
    assert len(ledger.find_runs_by_scope(SCOPE)) == 1
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
    assert len(ledger.find_runs_by_scope(SCOPE)) == 1


def test_a_billing_already_reverse_and_rebilled_is_skipped_with_the_reason(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger, dispatcher: FakeDispatcher
) -> None:
    first = fire(ctx, firings, options)
    ledger.transition(first.run_id or "", from_states={RunState.PLANNING}, to=RunState.COMPLETED, now=ctx.clock())

    later = fire(ctx, firings, options, slot=SLOT + timedelta(days=31))

    assert later.outcome is FiringOutcome.SKIPPED
    assert (later.run_id, later.selected) == (None, BILLING)
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


def test_a_stopped_run_of_the_billing_skips_the_firing_saying_how_to_resolve_it(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    first = fire(ctx, firings, options)
    run_id = first.run_id or ""
    ledger.transition(run_id, from_states={RunState.PLANNING}, to=RunState.NEEDS_ATTENTION, now=ctx.clock())

    later = fire(ctx, firings, options, slot=SLOT + timedelta(days=1))

    assert later.outcome is FiringOutcome.SKIPPED
    assert f"is held by run {run_id} (NEEDS_ATTENTION): resolve it (`rebill status {run_id[:8]}`" in (
        later.reason or ""
    )


def test_a_single_contact_run_of_the_billing_skips_the_firing(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    contact = planning.start_run(ctx, "fake", {"billing": BILLING, "party_id": "P1007"}, options)

    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.SKIPPED
    assert f"has a partial run {contact.id}" in (firing.reason or "")
    assert [run.id for run in ledger.find_runs_by_scope(SCOPE)] == [contact.id]


def test_a_dry_run_or_a_cancelled_run_does_not_skip_the_firing(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    planning.start_run(ctx, "fake", {"billing": BILLING}, RunOptions(dry_run=True))
    cancelled = planning.start_run(ctx, "fake", {"billing": BILLING}, options)
    ledger.transition(
        cancelled.id, from_states={RunState.PLANNING}, to=RunState.CANCELLED, now=ctx.clock(), release_guard=True
    )

    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.STARTED


def test_a_billing_rebilled_on_the_platform_is_skipped(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: FakeProvider
) -> None:
    provider.billings["2026-11-rebill"] = FakeBilling("2026-11-rebill", rebill_of=BILLING)

    firing = fire(ctx, firings, options)

    assert firing.outcome is FiringOutcome.SKIPPED
    assert firing.selected == BILLING
    assert "already reverse-and-rebilled on the platform: billing 2026-11-rebill rebills it" in (firing.reason or "")


def test_the_ledger_is_asked_before_the_platform(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: FakeProvider, ledger: SqlLedger
) -> None:
    # Given a billing rebilled by a run of rebill, which the platform also shows as rebilled
    first = fire(ctx, firings, options)
    ledger.transition(first.run_id or "", from_states={RunState.PLANNING}, to=RunState.COMPLETED, now=ctx.clock())
    provider.billings["2026-11-rebill"] = FakeBilling("2026-11-rebill", rebill_of=BILLING)

    later = fire(ctx, firings, options, slot=SLOT + timedelta(days=31))

    # Then the reason names our run, not merely what the platform shows
    assert later.outcome is FiringOutcome.SKIPPED
    assert f"by run {first.run_id} (COMPLETED)" in (later.reason or "")


def test_the_firing_runs_what_the_provider_chose(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: FakeProvider, ledger: SqlLedger
) -> None:
    provider.billings.update(
        {
            "2026-12": FakeBilling("2026-12", billed_on=date(2026, 12, 1)),
            "2027-01": FakeBilling("2027-01", closed=False, billed_on=date(2027, 1, 1)),  # still open
            "2026-12-rebill": FakeBilling("2026-12-rebill", billed_on=date(2027, 1, 2), rebill_of=BILLING),
            "dues-2027": FakeBilling("dues-2027", cycle="Chapter dues", billed_on=date(2027, 2, 1)),
        }
    )

    latest = fire(ctx, firings, options)
    named = fire(
        ctx, firings, options, slot=SLOT + timedelta(days=1), choice={"cycle": CYCLE, "run_name": f"{CYCLE} 2026-11"}
    )

    assert (latest.outcome, latest.selected) == (FiringOutcome.STARTED, "2026-12")
    run = ledger.get_run(latest.run_id or "")
    assert run is not None
    assert run.selection.selector == {"billing": "2026-12"}
    assert (named.outcome, named.selected) == (FiringOutcome.SKIPPED, BILLING)
    assert "already reverse-and-rebilled on the platform" in (named.reason or "")


def test_no_billing_to_take_is_skipped(ctx: Context, firings: SqlFiringLog, options: RunOptions) -> None:
    firing = fire(ctx, firings, options, choice={"cycle": CYCLE, "run_name": "nope"})

    assert firing.outcome is FiringOutcome.SKIPPED
    assert "no billing found" in (firing.reason or "")


def test_a_run_the_provider_refuses_to_open_is_skipped_with_its_reason(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, ledger: SqlLedger
) -> None:
    firing = fire(ctx, firings, options, provider_options={"colour": "red"})

    assert firing.outcome is FiringOutcome.SKIPPED
    assert "bad Fake option: colour" in (firing.reason or "")
    assert ledger.list_runs() == []


def test_a_refusing_tenant_fails_the_firing_and_a_later_firing_of_the_slot_may_succeed(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: FakeProvider
) -> None:
    provider.fail("billing.list", CYCLE, ProviderAuthError("bad credentials", operation="token", status_code=400))

    failed = fire(ctx, firings, options)
    assert failed.outcome is FiringOutcome.FAILED
    assert "bad credentials" in (failed.reason or "")

    retried = fire(ctx, firings, options)
    assert retried.outcome is FiringOutcome.STARTED
    assert firings.get_firing(failed.slot) == retried


def test_a_transient_error_leaves_the_slot_unrecorded_for_the_caller_to_retry(
    ctx: Context, firings: SqlFiringLog, options: RunOptions, provider: FakeProvider
) -> None:
    provider.fail("billing.list", CYCLE, ProviderUnavailable("503"))

    with pytest.raises(ProviderUnavailable):
        fire(ctx, firings, options)

    assert firings.get_firing(schedule_firing.slot_key("monthly", SLOT)) is None
    assert fire(ctx, firings, options).outcome is FiringOutcome.STARTED


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

    firings.run_for_slot = racing  # type: ignore[method-assign]  # the race, staged on this one instance

    # When this firing then finds the billing taken
    again = fire(ctx, firings, options)

    # Then the run in its way is its own slot's: it records STARTED, not SKIPPED
    assert again.outcome is FiringOutcome.STARTED
    assert again.run_id == winner.run_id
