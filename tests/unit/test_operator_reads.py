"""What operators read of a run (status, runs, reports), from the real ledger through the web view's
read port, after runs driven by the services with the fake platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orchestrator.adapters.ledger.database import LedgerEngines
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.adapters.ledger.views import SqlRunViews
from orchestrator.domain.errors import ProviderRefused, ProviderUnavailable
from orchestrator.domain.run import ItemOutcome, ItemState, RunOptions, RunState
from orchestrator.entrypoints.cli.output import print_runs
from orchestrator.services import planning, reports, runs
from orchestrator.services.context import Context
from orchestrator.services.views import Outcomes, Progress, RunHeadline
from tests.fakes import BILLING, FakeClock, FakeDispatcher, FakeProvider

LOCKED = "invoice.reverse: invoice {} is locked by another user"


@pytest.fixture
def views(engines: LedgerEngines) -> SqlRunViews:
    return SqlRunViews(engines.read)


@pytest.fixture
def failed_run(
    ctx: Context, provider: FakeProvider, dispatcher: FakeDispatcher, clock: FakeClock, options: RunOptions
) -> str:
    """A run of 20 open invoices (5 more left as-is): 1003 and 1004 refused, 1005 unreachable past its
    attempts; it stopped NEEDS_ATTENTION."""
    provider.seed(open_count=20)
    for invoice in ("1003", "1004"):
        provider.fail(
            "invoice.reverse",
            invoice,
            ProviderRefused(LOCKED.format(invoice), operation="invoice.reverse", status_code=409),
        )
    provider.fail(
        "invoice.check", "1005", *[ProviderUnavailable("invoice.check: HTTP 503", status_code=503) for _ in range(3)]
    )
    run_id = planning.start_run(ctx, provider.name, {"billing": BILLING}, options).id
    dispatcher.deliver(ctx, clock=clock)
    return run_id


class TestItemErrors:
    def test_an_items_error_reads_as_its_kind_and_message_not_a_repr(self, failed_run: str, ledger: SqlLedger) -> None:
        failed = {item.invoice.invoice_id: item for item in ledger.iter_items(failed_run, states={ItemState.FAILED})}

        assert failed["1003"].last_error == f"ProviderRefused: {LOCKED.format('1003')}"
        assert failed["1005"].last_error == "ProviderUnavailable: invoice.check: HTTP 503"
        assert all("operation=" not in (item.last_error or "") for item in failed.values())


class TestEarlierOutcomes:
    def test_a_retry_keeps_the_failure_it_replaced_with_every_attempt(
        self, failed_run: str, ctx: Context, dispatcher: FakeDispatcher, clock: FakeClock, views: SqlRunViews
    ) -> None:
        run_id = failed_run
        clock.advance(60)
        runs.retry_run(ctx, run_id)
        dispatcher.deliver(ctx, clock=clock)

        assert runs.find_run(ctx, run_id).state is RunState.COMPLETED
        histories = {history.line.invoice_id: history for history in views.every_invoice(run_id)}
        locked = histories["1003"]
        assert locked.line.outcome is ItemState.REVERSED
        [earlier] = locked.earlier
        assert (earlier.outcome, earlier.reason, earlier.attempts) == (ItemState.FAILED, LOCKED.format("1003"), 1)
        assert earlier.error == f"ProviderRefused: {LOCKED.format('1003')}"
        assert earlier.settled_at < earlier.replaced_at
        assert (locked.line.attempts, locked.line.attempts_total) == (1, 2)
        assert [call.outcome for call in locked.calls if call.operation == "invoice.reverse"] == ["permanent", "ok"]
        unreachable = histories["1005"]
        assert unreachable.earlier[0].reason == "gave up after 3 attempts: invoice.check: HTTP 503"
        assert unreachable.line.attempts_total == 4
        assert not histories["1001"].earlier

    def test_a_failure_a_later_reading_settles_otherwise_is_kept_once(
        self, ctx: Context, ledger: SqlLedger, views: SqlRunViews, clock: FakeClock, provider: FakeProvider
    ) -> None:
        provider.seed(open_count=3)
        run_id = planning.start_run(ctx, provider.name, {"billing": BILLING}, RunOptions(chunk_size=5)).id
        planning.plan_run(ctx, run_id)
        item = next(ledger.iter_items(run_id))
        failed = ItemOutcome(ItemState.FAILED, reason="void refused", error="ProviderRefused: void refused")

        ledger.set_item_outcomes(run_id, [(item.id, failed)], now=clock())
        ledger.set_item_outcomes(run_id, [(item.id, failed)], now=clock())  # decided again on a later tick
        ledger.set_item_outcomes(run_id, [(item.id, ItemOutcome(ItemState.REVERSED, result_ref="V-1"))], now=clock())

        history = views.invoice(run_id, item.id)
        assert history is not None
        assert [(e.outcome, e.reason) for e in history.earlier] == [(ItemState.FAILED, "void refused")]
        assert (history.line.outcome, history.line.result_ref) == (ItemState.REVERSED, "V-1")


class TestRunSummary:
    def test_status_has_money_failures_by_reason_the_status_path_and_the_calls(
        self, failed_run: str, ctx: Context, views: SqlRunViews
    ) -> None:
        summary = reports.run_summary(ctx, views, runs.find_run(ctx, failed_run))

        assert summary["state"] == "NEEDS_ATTENTION"
        assert summary["items"]["REVERSED"] == 17
        assert summary["money"] == {
            "reversed": "1615.00",  # 17 x 95.00
            "left_as_is": "475.00",  # 5 x 95.00
            "failed": "285.00",
            "open": "0.00",
            "billed_anew": None,
        }
        [locked, unreachable] = summary["failures"]
        assert (locked["count"], locked["amount"]) == (2, "190.00")
        assert locked["reason"] == LOCKED.format("{invoice}")
        assert locked["example_invoice"] == "1003"
        assert locked["example_call"]["operation"] == "invoice.reverse"
        assert (unreachable["count"], unreachable["example_invoice"]) == (1, "1005")
        assert [event["status"] for event in summary["status_history"]] == ["open"]
        assert all(datetime.fromisoformat(event["at"]) for event in summary["status_history"])
        calls = {(c["operation"], c["outcome"]): c["count"] for c in summary["api_calls"]}
        assert calls[("invoice.reverse", "permanent")] == 2
        assert calls[("invoice.check", "transient")] == 3
        assert summary["api_calls_total"] == sum(calls.values())

    def test_a_report_lists_only_the_failed_invoices_when_asked(self, failed_run: str, views: SqlRunViews) -> None:
        failed = list(reports.report_rows(views, failed_run, failed_only=True))
        every = list(reports.report_rows(views, failed_run))

        assert sorted(row["invoice_id"] for row in failed) == ["1003", "1004", "1005"]
        assert {row["outcome"] for row in failed} == {"FAILED"}
        assert len(every) == 25
        assert all(row["updated_at"] for row in every)
        row = next(row for row in failed if row["invoice_id"] == "1005")
        transient = [call for call in row["calls"] if call["outcome"] == "transient"]
        assert len(transient) == 3  # every attempt's call is kept
        assert all(call["at"] and call["error"] == "invoice.check: HTTP 503" for call in transient)


class TestPace:
    def test_counts_the_invoices_worked_not_those_planning_left_as_is(
        self, failed_run: str, ctx: Context, clock: FakeClock, engines: LedgerEngines
    ) -> None:
        clock.advance(4)

        progress = SqlRunViews(engines.read, clock=clock).progress(failed_run)

        assert progress is not None
        assert progress.outcomes.settled == 25
        assert progress.settled_last_minute == 20  # the 5 left as-is at planning were never worked
        age = (clock() - runs.find_run(ctx, failed_run).created_at).total_seconds()
        assert age < 60
        assert progress.window_seconds == pytest.approx(age)  # a young run is paced over its age, not a minute

    def test_a_young_run_is_paced_over_its_age(self) -> None:
        progress = Progress(
            run_id="R",
            state=RunState.REVERSING,
            reason=None,
            planned=True,
            outcomes=Outcomes({ItemState.REVERSED: 40, ItemState.PENDING: 60}),
            settled_last_minute=40,
            observed_at=datetime(2026, 12, 1, tzinfo=UTC),
            last_step=None,
            window_seconds=4.0,
        )
        assert (progress.rate_per_second, progress.eta_seconds) == (10.0, 6.0)


class TestOutcomes:
    def test_previewed_invoices_are_settled(self) -> None:
        outcomes = Outcomes({ItemState.PREVIEWED: 3, ItemState.SKIPPED: 1, ItemState.PENDING: 1})
        assert (outcomes.settled, outcomes.total) == (4, 5)


def headline(run_id: str, state: RunState, reason: str | None, *, provider: str = "salesforce") -> RunHeadline:
    started = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    return RunHeadline(
        id=run_id,
        provider=provider,
        selection="invoice batch run 7071x000000ABCD",
        state=state,
        reason_code=None,
        reason=reason,
        dry_run=False,
        created_at=started,
        finished_at=started + timedelta(minutes=12, seconds=3),
        planned=True,
        outcomes=Outcomes(
            {ItemState.REVERSED: 199_870, ItemState.SKIPPED: 100, ItemState.FAILED: 30},
            {ItemState.REVERSED: Decimal("19987000.00"), ItemState.FAILED: Decimal("2850.00")},
        ),
    )


class TestRunsTable:
    LONG = "30 invoice(s) failed: once the cause is fixed, `rebill retry` re-sends only them, then the rebill"
    FAILED_RUN = "3acc12ef-0000-4000-8000-000000000001"

    @pytest.fixture(autouse=True)
    def _terminal_of_80_columns(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COLUMNS", "80")

    def listed(self, capsys: pytest.CaptureFixture[str], *, wide: bool, other: str = "salesforce") -> list[str]:
        shown = (
            headline(self.FAILED_RUN, RunState.NEEDS_ATTENTION, self.LONG),
            headline("7bdd34aa-0000-4000-8000-000000000002", RunState.COMPLETED, None, provider=other),
        )
        print_runs(shown, wide=wide)
        return capsys.readouterr().out.splitlines()

    def test_fits_80_columns_with_counts_money_duration_and_the_reason(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        lines = self.listed(capsys, wide=False)

        assert all(len(line) <= 80 for line in lines), lines
        header, failed, reason, completed = lines
        assert header.split() == ["run", "state", "started", "took", "rev/left/failed", "reversed", "reason"]
        assert failed.split() == [
            "3acc12ef",
            "NEEDS_ATTENTION",
            "12-01",
            "09:00",
            "12:03",
            "199,870/100/30",
            "19,987,000.00",
        ]
        assert reason.startswith(" " * 9 + "30 invoice(s) failed")  # no room left on its row: below it, cut short
        assert reason.endswith("…")
        assert completed.split()[:2] == ["7bdd34aa", "COMPLETED"]

    def test_runs_of_several_providers_name_theirs_and_the_reason_moves_below(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        lines = self.listed(capsys, wide=False, other="imis")

        assert all(len(line) <= 80 for line in lines), lines
        header, failed, reason, completed = lines
        assert header.split()[:2] == ["run", "state"]  # too wide for a provider column: it leads the reason
        assert failed.startswith("3acc12ef NEEDS_ATTENTION 12-01 09:00")
        assert reason.startswith(" " * 9 + "salesforce: 30 invoice(s) failed")
        assert completed.startswith("7bdd34aa COMPLETED")
        assert completed.endswith(" imis")

    def test_wide_shows_every_column_full_ids_and_reasons(self, capsys: pytest.CaptureFixture[str]) -> None:
        lines = self.listed(capsys, wide=True)

        assert lines[0].split()[1] == "provider"
        assert lines[1].startswith(self.FAILED_RUN + " salesforce")
        assert lines[1].endswith(self.LONG)
