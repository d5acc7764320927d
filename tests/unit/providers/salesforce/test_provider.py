"""SalesforceProvider against the Salesforce simulator in-process (`httpx.MockTransport(SalesforceApp(state).handle)`).

No ledger: `Core` below does by hand what the core does around a provider (items, steps claimed once,
the provider's kept state), so each port method is checked against what the org then holds. The
org's walks (Void In Progress -> Voided, Processing -> new invoice) move with its clock or
`finish_walks()`; the provider's own clocks (dates, stuck voids, settle pauses) are moved by hand.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.salesforce import SalesforceClient, SalesforceProvider
from orchestrator.adapters.providers.salesforce.provider import GENERATE, RECOVER
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderPaused, ProviderUnavailable, RunRefused
from orchestrator.domain.run import (
    Item,
    ItemState,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Step,
    StepPhase,
)
from orchestrator.services.ports import BillingProvider, Decision, Finish, Send, Settlement, Watch
from simulators.salesforce.app import SalesforceApp
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.simulators.salesforce.helpers import CLIENT_ID, CLIENT_SECRET, FakeClock

TODAY = datetime(2025, 12, 1, 3, 30, tzinfo=UTC)  # still 30 November in New York


class Now:
    """The provider's wall clock and monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.wall = TODAY
        self.seconds = 0.0

    def __call__(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.seconds += seconds


@pytest.fixture
def org_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(org_clock: FakeClock) -> SalesforceState:
    return SalesforceState(CLIENT_ID, CLIENT_SECRET, SalesforceFaults(page_size=50), clock=org_clock)


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def provider(state: SalesforceState, now: Now, calls: list[ApiCall]) -> SalesforceProvider:
    client = SalesforceClient(
        base_url="https://acme.my.salesforce.com",
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        transport=httpx.MockTransport(SalesforceApp(state).handle),
        timeout=httpx.Timeout(5.0),
        observer=calls.append,
    )
    return SalesforceProvider(client, now=now, monotonic=now.monotonic, generate_settle_seconds=10)


@pytest.fixture
def seeded(state: SalesforceState) -> SeededRun:
    return state.seed_run(invoices=60, seed=7)


class Core:
    """The core's part around a provider, in memory: a run, its items and steps, each step claimed once."""

    def __init__(self, provider: SalesforceProvider, run: Run, now: Now) -> None:
        self.provider = provider
        self.run = run
        self.now = now
        self._items: dict[int, Item] = {}
        self._steps: dict[str, Step] = {}

    @classmethod
    def open(
        cls, provider: SalesforceProvider, now: Now, selector: dict[str, Any], options: RunOptions | None = None
    ) -> Core:
        run_options = options or RunOptions(max_attempts=2, poll_interval_seconds=5)
        opening = provider.open(selector, {}, run_options)
        run = Run(
            id="run-1",
            provider="salesforce",
            selection=opening.selection,
            state=RunState.REVERSING,
            options=run_options,
            created_at=now.wall,
            updated_at=now.wall,
            provider_options=opening.options,
        )
        return cls(provider, run, now)

    @classmethod
    def planned(cls, provider: SalesforceProvider, now: Now, seeded: SeededRun) -> Core:
        """A run of the seeded invoice batch run, planned."""
        core = cls.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id})
        core.plan()
        return core

    # FollowView
    def items(self, *, states: Collection[ItemState] | None = None) -> Iterator[Item]:
        return iter([item for item in self._items.values() if states is None or item.state in states])

    def steps(self) -> list[Step]:
        return list(self._steps.values())

    def plan(self) -> list[Item]:
        for page in self.provider.iter_plan(self.run, cursor=0):
            for planned in page.items:
                item = Item(
                    len(self._items) + 1, self.run.id, None, planned.invoice, planned.state, reason=planned.reason
                )
                self._items[item.id] = item
        return list(self._items.values())

    def void_all(self) -> None:
        for item in list(self.items(states={ItemState.PENDING})):
            self.act(item)

    def act(self, item: Item) -> None:
        """One claim of an item, as the core works it: settle when claimed before, then prepare and apply."""
        claimed = dataclasses.replace(item, attempts=item.attempts + 1, claims_total=item.claims_total + 1)
        outcomes = dict(self.provider.settle(self.run, [claimed])) if claimed.claimed_before else {}
        if not outcomes:
            outcomes = dict(self.provider.apply(self.run, self.provider.prepare(self.run, [claimed])))
        self.set(claimed, outcomes[item.id])

    def set(self, item: Item, outcome: Any) -> None:
        fields = {"state": outcome.state, "reason": outcome.reason, "settled_by_read": outcome.settled_by_read}
        fields.update({k: getattr(outcome, k) for k in ("result_ref", "rebill_ref") if getattr(outcome, k)})
        self._items[item.id] = dataclasses.replace(item, **fields)

    def keep(self, state: dict[str, Any]) -> None:
        merged = {**self.run.provider_state, **state}
        self.run = dataclasses.replace(self.run, provider_state={k: v for k, v in merged.items() if v is not None})

    def decide(self) -> Decision:
        """One follow decision, its state and items kept; a Send is claimed and sent."""
        decision = self.provider.follow(self.run, self)
        self.keep(dict(decision.state))
        for item_id, outcome in decision.items:
            self.set(self._items[item_id], outcome)
        if isinstance(decision.action, Send):
            self.send(decision.action)
        return decision

    def send(self, action: Send) -> Step:
        before = self._steps.get(action.key)
        assert before is None or before.phase is StepPhase.RELEASED, f"{action.key} claimed twice"
        step = Step(
            self.run.id,
            action.key,
            action.kind,
            StepPhase.SENDING,
            self.now.wall,
            attempts=1 if before is None else before.attempts + 1,
            request=action.request,
        )
        self._steps[action.key] = step
        try:
            result = self.provider.send_step(self.run, step)
        except ProviderUnavailable as lost:
            if not lost.may_have_applied:
                raise
            self._steps[action.key] = dataclasses.replace(step, phase=StepPhase.UNKNOWN)
            return self._steps[action.key]
        return self.settled(step, result)

    def settled(self, step: Step, result: Any) -> Step:
        self.keep(dict(result.state))
        phase = StepPhase.RELEASED if result.settlement is Settlement.NOT_APPLIED else StepPhase.SENT
        self._steps[step.key] = dataclasses.replace(step, phase=phase, ref=result.ref)
        return self._steps[step.key]

    def follow(self, *, limit: int = 40) -> Decision:
        """Decide until the provider waits or finishes (what one follow-up tick does)."""
        for _ in range(limit):
            decision = self.decide()
            if not isinstance(decision.action, Send):
                return decision
        raise AssertionError("the provider kept sending")


def test_the_provider_implements_the_port() -> None:
    for name, member in inspect.getmembers(BillingProvider, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(SalesforceProvider, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name


class TestOpen:
    def test_a_batch_run_is_scoped_labelled_and_its_dates_fixed(
        self, provider: SalesforceProvider, seeded: SeededRun
    ) -> None:
        opening = provider.open({"invoice_batch_run": seeded.invoice_batch_run_id}, {}, RunOptions())
        run_id = seeded.invoice_batch_run_id
        assert opening.selection.scope == opening.selection.guard_key == f"salesforce:run:{run_id}"
        posted = sum(1 for reason in seeded.expected.values() if reason != "not_posted")
        assert opening.selection.label == f"invoice batch run {run_id} (60 invoices, {posted} posted)"
        assert opening.options["target_date"] == opening.options["invoice_date"] == "2025-12-01"
        assert opening.options["draft"] is False

    def test_today_is_the_org_s_and_given_dates_are_kept(
        self, state: SalesforceState, now: Now, seeded: SeededRun
    ) -> None:
        provider = SalesforceProvider(_client(state), time_zone=ZoneInfo("America/New_York"), now=now)
        opening = provider.open(
            {"billing_account": seeded.billing_account_ids[0]}, {"invoice_date": "2025-12-05"}, RunOptions()
        )
        assert opening.selection.scope == f"salesforce:account:{seeded.billing_account_ids[0]}"
        assert (opening.options["target_date"], opening.options["invoice_date"]) == ("2025-11-30", "2025-12-05")

    @pytest.mark.parametrize(
        ("selector", "why"),
        [
            ({}, "one of the two"),
            ({"invoice_batch_run": "7Bk5g00000ReBiLAAQ", "billing_account": "0015g00000ReBiLAAQ"}, "one of the two"),
            ({"invoice_batch_run": "7Bk5g00000ReBiL"}, "not an 18-character Salesforce id"),
            ({"invoice_batch_run": "7Bk5g00000ReBi' OR"}, "not an 18-character Salesforce id"),
            ({"invoice_batch_run": "7Bk5g00000ReBiLAAQ"}, "no invoice of invoice batch run 7Bk5g00000ReBiLAAQ"),
        ],
    )
    def test_refused(self, provider: SalesforceProvider, seeded: SeededRun, selector: dict[str, str], why: str) -> None:
        with pytest.raises(RunRefused, match=why):
            provider.open(selector, {}, RunOptions())

    def test_a_selection_with_nothing_posted_is_refused(
        self, provider: SalesforceProvider, state: SalesforceState, seeded: SeededRun, now: Now
    ) -> None:
        account = next(state.invoice(i).billing_account_id for i, why in seeded.expected.items() if why == "not_posted")
        for invoice in [i for i in state.invoices.values() if i.billing_account_id == account]:
            invoice.status = "Canceled"
        with pytest.raises(RunRefused, match="is Posted: there is nothing to void"):
            provider.open({"billing_account": account}, {}, RunOptions())


class TestPlan:
    def test_every_invoice_with_the_contract_s_verdict_page_by_page(
        self, provider: SalesforceProvider, seeded: SeededRun, now: Now
    ) -> None:
        core = Core.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id})
        pages = list(provider.iter_plan(core.run, cursor=0))
        assert [(page.cursor, page.next_cursor) for page in pages] == [(0, 50), (50, None)]
        planned = {item.invoice.invoice_id: item for page in pages for item in page.items}
        assert {i: item.reason for i, item in planned.items()} == seeded.expected
        assert list(planned) == sorted(seeded.invoice_ids)
        eligible = planned[seeded.eligible_ids[0]]
        assert eligible.state is ItemState.PENDING
        assert eligible.invoice.details["schedules"]
        assert seeded.eligible_ids[0] in eligible.invoice.details["seen"]

    def test_an_expired_locator_reruns_the_query_and_skips_what_was_read(
        self, provider: SalesforceProvider, state: SalesforceState, seeded: SeededRun, now: Now
    ) -> None:
        core = Core.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id})
        pages = provider.iter_plan(core.run, cursor=0)
        first = next(pages)
        assert state.expire_locators() >= 1
        rest = list(pages)
        ids = [item.invoice.invoice_id for page in (first, *rest) for item in page.items]
        assert ids == sorted(seeded.invoice_ids)
        assert [(page.cursor, page.next_cursor) for page in rest] == [(50, None)]

    def test_a_query_page_of_more_than_200_is_planned_a_page_per_200_as_each_is_read(
        self, org_clock: FakeClock, now: Now
    ) -> None:
        state = SalesforceState(CLIENT_ID, CLIENT_SECRET, SalesforceFaults(page_size=500), clock=org_clock)
        seeded = state.seed_run(invoices=450, seed=8)
        queries: list[str] = []
        app = SalesforceApp(state)

        def handle(request: httpx.Request) -> httpx.Response:
            queries.append(request.url.params.get("q", ""))
            return app.handle(request)

        client = SalesforceClient(
            base_url="https://acme.my.salesforce.com",
            client_id=CLIENT_ID,
            client_secret=SecretStr(CLIENT_SECRET),
            transport=httpx.MockTransport(handle),
            timeout=httpx.Timeout(5.0),
        )
        provider = SalesforceProvider(client, now=now, monotonic=now.monotonic)
        core = Core.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id})
        pages = provider.iter_plan(core.run, cursor=0)
        first = next(pages)
        ordered = sorted(seeded.invoice_ids)
        # Yielded before any invoice past the first 200 of the (one) query page had its lines read.
        assert not any(invoice in query for query in queries for invoice in ordered[200:])
        rest = list(pages)
        assert [(page.cursor, page.next_cursor) for page in (first, *rest)] == [(0, 200), (200, 400), (400, None)]
        planned = {item.invoice.invoice_id: item.reason for page in (first, *rest) for item in page.items}
        assert list(planned) == ordered
        assert planned == seeded.expected
        resumed = list(provider.iter_plan(core.run, cursor=250))
        assert [(page.cursor, page.next_cursor) for page in resumed] == [(250, None)]
        assert [item.invoice.invoice_id for item in resumed[0].items] == ordered[250:]

    def test_a_resumed_plan_starts_at_its_cursor(
        self, provider: SalesforceProvider, seeded: SeededRun, now: Now
    ) -> None:
        core = Core.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id})
        pages = list(provider.iter_plan(core.run, cursor=37))
        assert [(page.cursor, page.next_cursor) for page in pages] == [(37, 50), (50, None)]
        ids = [item.invoice.invoice_id for page in pages for item in page.items]
        assert ids == sorted(seeded.invoice_ids)[37:]


class TestVoid:
    @pytest.fixture
    def core(self, provider: SalesforceProvider, seeded: SeededRun, now: Now) -> Core:
        return Core.planned(provider, now, seeded)

    def test_applied_once_with_its_request_identifier(self, core: Core, state: SalesforceState) -> None:
        item = next(core.items(states={ItemState.PENDING}))
        core.act(item)
        done = core._items[item.id]
        assert done.state is ItemState.REVERSED
        assert done.result_ref is not None
        assert not done.settled_by_read
        assert state.invoice(item.invoice.invoice_id).status == "Void In Progress"
        assert state.counters()["voids"] == {item.invoice.invoice_id: 1}

    def test_a_lost_reply_is_settled_by_reading_never_by_voiding_again(
        self, core: Core, state: SalesforceState
    ) -> None:
        item = next(core.items(states={ItemState.PENDING}))
        state.faults.update(p_reply_lost=1.0, fault_operations=["void"])
        with pytest.raises(ProviderUnavailable) as lost:
            core.act(item)
        assert lost.value.may_have_applied
        state.faults.update(p_reply_lost=0.0, fault_operations=None)
        core.act(dataclasses.replace(item, attempts=1, claims_total=1))  # its second claim
        done = core._items[item.id]
        assert (done.state, done.settled_by_read) == (ItemState.REVERSED, True)
        assert done.reason == "confirmed voided by reading the invoice (Void In Progress)"
        counters = state.counters()
        assert counters["voids"] == {item.invoice.invoice_id: 1}
        assert counters["duplicate_void_attempts"] == 0

    def test_a_refusal_of_an_invoice_already_voided_is_read_as_applied(
        self, core: Core, state: SalesforceState
    ) -> None:
        item = next(core.items(states={ItemState.PENDING}))
        state.void(item.invoice.invoice_id)  # voided meanwhile (another claim whose outcome was lost)
        core.act(item)
        done = core._items[item.id]
        assert (done.state, done.settled_by_read) == (ItemState.REVERSED, True)

    def test_paid_since_planning_is_skipped_with_the_reason(self, core: Core, state: SalesforceState) -> None:
        item = next(core.items(states={ItemState.PENDING}))
        state.apply_payment(item.invoice.invoice_id, item.invoice.amount / 2)
        core.act(item)
        assert (core._items[item.id].state, core._items[item.id].reason) == (ItemState.SKIPPED, "paid")
        assert state.counters()["voids"] == {}

    def test_any_other_refusal_fails_with_salesforce_s_message(
        self, core: Core, state: SalesforceState, seeded: SeededRun
    ) -> None:
        item = next(i for i in core.items() if i.reason == "not_latest_on_schedule")
        core.act(dataclasses.replace(item, state=ItemState.PENDING, reason=None))
        failed = core._items[item.id]
        assert failed.state is ItemState.FAILED
        assert failed.reason is not None
        assert "most recently posted invoice on a billing schedule" in failed.reason


class TestFollow:
    @pytest.fixture
    def seeded(self, state: SalesforceState) -> SeededRun:
        return state.seed_run(invoices=150, seed=11)

    @pytest.fixture
    def core(self, provider: SalesforceProvider, seeded: SeededRun, now: Now) -> Core:
        core = Core.planned(provider, now, seeded)
        core.void_all()
        return core

    def test_voids_watched_then_generate_by_200_then_the_new_invoices(
        self, core: Core, state: SalesforceState, org_clock: FakeClock, calls: list[ApiCall]
    ) -> None:
        voided = list(core.items(states={ItemState.REVERSED}))
        calls.clear()
        waiting = core.follow()
        assert isinstance(waiting.action, Watch)
        assert waiting.observation is not None
        assert (waiting.observation.code, waiting.observation.label) == (
            "Void In Progress",
            f"0 of {len(voided)} voided invoices Voided",
        )
        assert sum(call.operation == "query" for call in calls) == -(-len(voided) // 200)  # bulk, not per invoice
        assert not core.steps()

        org_clock.advance(3)  # past the void walk
        generating = core.follow()
        schedules = sorted({s for item in voided for s in item.invoice.details["schedules"]})
        assert len(schedules) > 200
        steps = core.steps()
        assert [step.key for step in steps] == [f"generate/{n:04d}" for n in range(1, -(-len(schedules) // 200) + 1)]
        assert [s for step in steps for s in step.request["billingScheduleIds"]] == schedules
        assert all(len(step.request["billingScheduleIds"]) <= 200 for step in steps)
        correlation = [step.request["correlationId"] for step in steps]
        assert correlation == [f"rebill/run-1/{step.key}/1" for step in steps]
        assert {step.phase for step in steps} == {StepPhase.SENT}
        assert isinstance(generating.action, Watch)
        sent = state.counters()["generate_calls"]
        assert [call["correlationId"] for call in sent] == correlation
        assert all("accountId" not in call and "billingTransactionId" not in call for call in sent)

        org_clock.advance(4)  # past the generate walk
        done = core.follow()
        assert isinstance(done.action, Finish)
        assert done.action.state is RunState.COMPLETED
        counters = state.counters()
        assert counters["invoices_per_regenerated_schedule"] == dict.fromkeys(schedules, 1)
        assert counters["duplicate_generates"] == 0
        for item in core.items(states={ItemState.REVERSED}):
            assert item.rebill_ref
            new_id = item.rebill_ref.split(" ")[0]
            assert state.invoice(new_id).status == "Posted"
            assert state.invoice(new_id).billing_account_id == item.invoice.party_id

    def test_a_void_stuck_in_progress_asks_for_an_operator_naming_it(
        self, provider: SalesforceProvider, state: SalesforceState, seeded: SeededRun, now: Now, org_clock: FakeClock
    ) -> None:
        state.faults.update(void_seconds=3600)  # the org's recalculation takes an hour
        core = Core.planned(provider, now, seeded)
        core.void_all()
        stuck = sorted(item.invoice.invoice_id for item in core.items(states={ItemState.REVERSED}))
        assert isinstance(core.follow().action, Watch)
        now.advance(901)
        decision = core.follow()
        assert isinstance(decision.action, Finish)
        assert (decision.action.state, decision.action.code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
        assert decision.action.reason is not None
        named = ", ".join(stuck[:10])
        assert f"{len(stuck)} invoice(s) still Void In Progress after 900 s: {named} and {len(stuck) - 10} more" in (
            decision.action.reason
        )
        assert not core.steps()
        # `rebill retry` follows again: the watch starts over, and once they are Voided the generate calls go out.
        assert isinstance(core.follow().action, Watch)
        org_clock.advance(3600)
        core.follow()
        assert [step.kind for step in core.steps()] == [GENERATE, GENERATE]

    def test_a_generate_whose_reply_was_lost_is_settled_by_reading(
        self, core: Core, state: SalesforceState, org_clock: FakeClock
    ) -> None:
        org_clock.advance(3)
        state.faults.update(p_reply_lost=1.0, fault_operations=["generate"])
        core.decide()
        state.faults.update(p_reply_lost=0.0, fault_operations=None)
        unknown = core.steps()[0]
        assert unknown.phase is StepPhase.UNKNOWN
        result = core.provider.settle_step(core.run, unknown)
        assert result.settlement is Settlement.APPLIED  # its schedules are Processing
        assert len(state.counters()["generate_calls"]) == 1

    def test_a_generate_that_never_arrived_is_sent_again_after_the_pause(
        self, core: Core, state: SalesforceState, org_clock: FakeClock, now: Now
    ) -> None:
        org_clock.advance(3)
        decision = core.provider.follow(core.run, core)
        core.keep(dict(decision.state))
        assert isinstance(decision.action, Send)
        lost = Step(
            core.run.id, decision.action.key, GENERATE, StepPhase.UNKNOWN, now.wall, request=decision.action.request
        )
        assert core.provider.settle_step(core.run, lost).settlement is Settlement.UNKNOWN  # the org may lag
        now.advance(11)
        assert core.provider.settle_step(core.run, lost).settlement is Settlement.NOT_APPLIED
        core._steps[lost.key] = dataclasses.replace(lost, phase=StepPhase.RELEASED)
        core.decide()
        again = core._steps[lost.key]
        assert (again.phase, again.attempts) == (StepPhase.SENT, 2)
        assert again.request["correlationId"] == f"rebill/run-1/{lost.key}/2"
        assert [call["correlationId"] for call in state.counters()["generate_calls"]] == [
            again.request["correlationId"]
        ]

    def test_schedules_in_error_are_recovered_one_per_request(
        self, core: Core, state: SalesforceState, org_clock: FakeClock, now: Now
    ) -> None:
        failing = sorted(next(core.items(states={ItemState.REVERSED})).invoice.details["schedules"])
        state.faults.update(error_schedules=failing[:1])
        org_clock.advance(3)
        core.follow()
        org_clock.advance(4)
        decision = core.follow()
        recovers = [step for step in core.steps() if step.kind == RECOVER]
        assert [step.key for step in recovers] == [f"recover/{schedule}/1" for schedule in failing]
        assert [r["billingScheduleId"] for r in state.counters()["recoveries"]] == failing
        assert isinstance(decision.action, Finish)
        assert decision.action.state is RunState.COMPLETED

    def test_recovery_still_failing_after_the_attempts_asks_for_an_operator(
        self, core: Core, state: SalesforceState, org_clock: FakeClock, now: Now
    ) -> None:
        failing = next(core.items(states={ItemState.REVERSED})).invoice.details["schedules"][0]
        state.faults.update(error_schedules=[failing], p_recover_error=1.0)
        org_clock.advance(3)
        core.follow()
        org_clock.advance(4)
        assert isinstance(core.follow().action, Watch)  # the first recover failed; the next waits its turn
        now.advance(5)
        decision = core.follow()
        assert isinstance(decision.action, Finish)
        assert (decision.action.state, decision.action.code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
        assert decision.action.reason is not None
        assert f"{failing} (INVOICE_RECOVERY_FAILED: The invoice couldn't be posted.)" in decision.action.reason
        assert [step.key for step in core.steps() if step.kind == RECOVER] == [
            f"recover/{failing}/1",
            f"recover/{failing}/2",
        ]
        # `rebill retry`: the recoveries are granted anew, and one that works completes the run.
        state.faults.update(p_recover_error=0.0)
        now.advance(5)
        assert isinstance(core.follow().action, Finish)
        assert core.steps()[-1].key == f"recover/{failing}/3"


class TestUsage:
    @pytest.fixture
    def core(self, provider: SalesforceProvider, seeded: SeededRun, now: Now) -> Core:
        return Core.planned(provider, now, seeded)

    def test_the_run_pauses_near_the_allocation_and_resumes_by_itself(
        self, core: Core, state: SalesforceState, now: Now
    ) -> None:
        pending = list(core.items(states={ItemState.PENDING}))
        state.set_usage(90_500)
        core.act(pending[0])  # this void's reply says 90.5 %; the next one probes once, still 90.5 %
        with pytest.raises(ProviderPaused) as paused:
            core.act(pending[1])
        assert str(paused.value) == (
            "paused: API usage 91% of the daily allocation (90502/100000); resumes by itself below 90%"
        )
        with pytest.raises(ProviderPaused):
            core.provider.follow(core.run, core)
        assert state.counters()["voids"] == {pending[0].invoice.invoice_id: 1}
        state.set_usage(1_000)  # the rolling window moved on
        with pytest.raises(ProviderPaused):
            core.act(pending[1])  # not read again before the recheck interval
        now.advance(30)
        core.act(pending[1])
        assert core._items[pending[1].id].state is ItemState.REVERSED

    def test_a_spent_allocation_pauses(self, core: Core, state: SalesforceState) -> None:
        state.faults.update(daily_allocation=state.usage().used)
        with pytest.raises(ProviderPaused, match="the org's daily API allocation is spent"):
            core.act(next(core.items(states={ItemState.PENDING})))
        assert state.counters()["voids"] == {}


def test_a_dry_run_describes_the_generate_calls_and_writes_nothing(
    provider: SalesforceProvider, state: SalesforceState, seeded: SeededRun, now: Now
) -> None:
    core = Core.open(provider, now, {"invoice_batch_run": seeded.invoice_batch_run_id}, RunOptions(dry_run=True))
    core.plan()
    described = provider.describe_follow_up(core.run, core)
    eligible = list(core.items(states={ItemState.PENDING}))
    schedules = sorted({s for item in eligible for s in item.invoice.details["schedules"]})
    assert described == [
        {
            "key": "generate/0001",
            "billingScheduleIds": schedules,
            "action": "Posted",
            "invoiceDate": "2025-12-01",
            "targetDate": "2025-12-01",
            "correlationId": "rebill/run-1/generate/0001/1",
        }
    ]
    counters = state.counters()
    assert (counters["voids"], counters["generate_calls"], counters["recoveries"]) == ({}, [], [])
    assert provider.summarize(core.run)["target_date"] == "2025-12-01"


def test_check_reads_one_count_and_never_shows_the_secret(provider: SalesforceProvider, calls: list[ApiCall]) -> None:
    line = provider.check()
    assert line.startswith("Salesforce https://acme.my.salesforce.com: token accepted, invoices readable")
    assert CLIENT_SECRET not in line
    assert [call.operation for call in calls] == ["token", "query"]


def test_scheduled_runs_are_not_supported_yet(provider: SalesforceProvider) -> None:
    chosen = provider.choose_scheduled({"cycle": "monthly"})
    assert chosen.selector is None
    assert chosen.reason is not None
    assert "not supported for Salesforce yet" in chosen.reason


def _client(state: SalesforceState) -> SalesforceClient:
    return SalesforceClient(
        base_url="https://acme.my.salesforce.com",
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        transport=httpx.MockTransport(SalesforceApp(state).handle),
        timeout=httpx.Timeout(5.0),
    )
