"""EnergyCapProvider: every port method against the EnergyCAP simulator in process (no ledger).

The simulator's own state is the witness: its counters say how many reverse calls, batches,
reversals per original and imports each scenario made, so "exactly once per chunk" is read there.
The core's part (claims, the fence, steps) is played here by hand, one port call at a time.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.energycap import EnergyCapClient, EnergyCapProvider
from orchestrator.adapters.providers.energycap.provider import batch_code, import_code, run_prefix
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderError, ProviderRefused, RunRefused
from orchestrator.domain.run import (
    Item,
    ItemOutcome,
    ItemState,
    PlannedItem,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Step,
    StepPhase,
)
from orchestrator.services.ports import ActionUnit, BillingProvider, Decision, Finish, Send, Settlement, Watch
from simulators.energycap import EnergyCapApp, EnergyCapFaults, EnergyCapState, SeededPeriod, corrected_bills_csv
from tests.simulators.energycap.helpers import Clock, reverse

API_KEY = "ec-provider-test-key"
BASE_URL = "https://energycap.example"
RUN_ID = "7f3a21c0-5d1a-4c8e-9f47-3a2d18e0c6b1"
PERIOD = 202510
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IMPORT_SECONDS = 2.0


# --- fixtures and the core's part, by hand -----------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> EnergyCapState:
    return EnergyCapState(API_KEY, EnergyCapFaults(import_seconds=IMPORT_SECONDS), clock=clock)


@pytest.fixture
def period(state: EnergyCapState) -> SeededPeriod:
    """60 bills of 202510 (2 void, 2 reversed with their reversal bills, some exported), 12 of 202509."""
    return state.seed_period(60, seed=5)


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def provider(state: EnergyCapState, calls: list[ApiCall]) -> EnergyCapProvider:
    client = EnergyCapClient(
        base_url=BASE_URL,
        api_key=SecretStr(API_KEY),
        transport=httpx.MockTransport(EnergyCapApp(state).handle),
        timeout=httpx.Timeout(5, connect=2),
        observer=calls.append,
    )
    return EnergyCapProvider(client, page_size=25)


@pytest.fixture
def corrected(tmp_path: Path, state: EnergyCapState, period: SeededPeriod) -> Path:
    """A corrected bill for every eligible bill of the period."""
    path = tmp_path / "corrected.csv"
    path.write_text(corrected_bills_csv(state, period))
    return path


def opened(
    provider: EnergyCapProvider,
    selector: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    chunk_size: int = 20,
    dry_run: bool = False,
) -> Run:
    run_options = RunOptions(chunk_size=chunk_size, dry_run=dry_run, poll_interval_seconds=1.0)
    opening = provider.open(selector, options or {}, run_options)
    return Run(
        id=RUN_ID,
        provider=provider.name,
        selection=opening.selection,
        state=RunState.PLANNING,
        options=run_options,
        created_at=NOW,
        updated_at=NOW,
        provider_options=opening.options,
        provider_state=opening.state,
    )


def plan(provider: EnergyCapProvider, run: Run, *, cursor: int = 0) -> list[PlannedItem]:
    return [planned for page in provider.iter_plan(run, cursor=cursor) for planned in page.items]


def claimed(run: Run, planned: Sequence[PlannedItem]) -> list[list[Item]]:
    """The eligible bills as the core claims them: whole chunks of the run's size, numbered from 0."""
    eligible = [p for p in planned if p.state is ItemState.PENDING]
    size = run.options.chunk_size
    return [
        [
            Item(
                id=start + offset + 1,
                run_id=run.id,
                chunk_id=start // size + 1,
                invoice=p.invoice,
                state=ItemState.IN_FLIGHT,
                attempts=1,
                claims_total=1,
                chunk_seq=start // size,
            )
            for offset, p in enumerate(eligible[start : start + size])
        ]
        for start in range(0, len(eligible), size)
    ]


def claimed_again(chunk: Sequence[Item]) -> list[Item]:
    return [dataclasses.replace(item, attempts=item.attempts + 1, claims_total=item.claims_total + 1) for item in chunk]


def act(provider: EnergyCapProvider, run: Run, chunk: Sequence[Item]) -> dict[int, ItemOutcome]:
    """What the core does with one claimed chunk: settle if claimed before, prepare, apply."""
    outcomes: dict[int, ItemOutcome] = {}
    if any(item.claimed_before for item in chunk):
        outcomes.update(provider.settle(run, chunk))
    todo = [item for item in chunk if item.id not in outcomes]
    if todo:
        prepared = provider.prepare(run, todo)
        outcomes.update(prepared.decided)
        outcomes.update(provider.apply(run, prepared))
    return outcomes


def settled(chunk: Sequence[Item], outcomes: Mapping[int, ItemOutcome]) -> list[Item]:
    return [
        dataclasses.replace(
            item,
            state=outcomes[item.id].state,
            reason=outcomes[item.id].reason,
            result_ref=outcomes[item.id].result_ref,
            settled_by_read=outcomes[item.id].settled_by_read,
        )
        for item in chunk
    ]


def bill_id(item: Item) -> int:
    return int(item.invoice.invoice_id)


class View:
    """The ledger as `follow` reads it: the run's items and steps."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.by_id = {item.id: item for item in items}
        self.step_rows: dict[str, Step] = {}

    def items(self, *, states: Collection[ItemState] | None = None) -> Iterator[Item]:
        return iter([item for item in self.by_id.values() if states is None or item.state in states])

    def steps(self) -> Sequence[Step]:
        return list(self.step_rows.values())

    def record(self, outcomes: Sequence[tuple[int, ItemOutcome]]) -> None:
        for item_id, outcome in outcomes:
            item = self.by_id[item_id]
            self.by_id[item_id] = dataclasses.replace(
                item,
                state=outcome.state,
                reason=outcome.reason,
                rebill_ref=outcome.rebill_ref or item.rebill_ref,
                new_amount=outcome.new_amount or item.new_amount,
            )


def reversed_run(provider: EnergyCapProvider, run: Run) -> tuple[Run, View]:
    """Open, plan and reverse every chunk; the run as it enters REBILLING."""
    items = []
    for chunk in claimed(run, plan(provider, run)):
        items += settled(chunk, act(provider, run, chunk))
    return dataclasses.replace(run, state=RunState.REBILLING), View(items)


def rebilling(provider: EnergyCapProvider, corrected: Path) -> tuple[Run, View]:
    """A run of the period with its corrected bills, every chunk reversed."""
    return reversed_run(provider, opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)}))


def first_import(provider: EnergyCapProvider, corrected: Path, phase: StepPhase) -> tuple[Run, View, Step]:
    """The import step `follow` decides first, as the ledger holds it once claimed (in `phase`)."""
    run, view = rebilling(provider, corrected)
    action = provider.follow(run, view).action
    assert isinstance(action, Send)
    return run, view, Step(run.id, action.key, action.kind, phase, NOW, request=dict(action.request))


def follow(provider: EnergyCapProvider, run: Run, view: View) -> tuple[Run, Decision]:
    """What the core's follow-up does until the provider waits or finishes: keep its state and items,
    claim and send each step. Returns the run with its kept state, and the last decision."""
    for _ in range(10):
        decision = provider.follow(run, view)
        view.record(decision.items)
        if decision.state:
            kept = {**run.provider_state, **decision.state}
            run = dataclasses.replace(run, provider_state={k: v for k, v in kept.items() if v is not None})
        action = decision.action
        if not isinstance(action, Send):
            return run, decision
        step = Step(run.id, action.key, action.kind, StepPhase.SENDING, NOW, request=dict(action.request))
        view.step_rows[step.key] = step
        result = provider.send_step(run, step)
        assert result.settlement is Settlement.APPLIED
        view.step_rows[step.key] = dataclasses.replace(step, phase=StepPhase.SENT, ref=result.ref)
    raise AssertionError("follow did not come to rest")


# --- the port -------------------------------------------------------------------------------------------------


def test_the_provider_implements_the_port() -> None:
    for name, member in inspect.getmembers(BillingProvider, inspect.isfunction):
        if not name.startswith("_"):
            ours = getattr(EnergyCapProvider, name)
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
    assert (EnergyCapProvider.name, EnergyCapProvider.title) == ("energycap", "EnergyCAP")
    assert EnergyCapProvider.unit is ActionUnit.CHUNK
    assert EnergyCapProvider.previews_items is False


def test_names_follow_the_run_and_the_chunk() -> None:
    assert run_prefix(RUN_ID) == "7F3A21C0"
    assert batch_code(RUN_ID, 0) == "RB-7F3A21C0-0001"
    assert batch_code(RUN_ID, 41) == "RB-7F3A21C0-0042"
    assert import_code(RUN_ID, 2) == "RB-7F3A21C0-I2"


class TestOpen:
    def test_a_period_is_pinned_to_its_last_bill(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        run = opened(provider, {"account_period": PERIOD})
        assert run.selection.scope == "energycap:202510"
        assert run.selection.guard_key == "energycap:202510"
        assert run.selection.whole
        assert run.selection.label == "account period 202510"
        assert run.selection.selector == {"account_period": PERIOD, "up_to_bill_id": max(period.bill_ids)}
        assert run.provider_state == {}

    def test_without_paging_headers_the_last_bill_is_found_by_reading_every_page(
        self, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        app = EnergyCapApp(state)

        def without_totals(request: httpx.Request) -> httpx.Response:
            served = app.handle(request)
            headers = [(k, v) for k, v in served.headers.items() if not k.lower().startswith("total")]
            return httpx.Response(served.status_code, headers=headers, content=served.content)

        client = EnergyCapClient(
            base_url=BASE_URL,
            api_key=SecretStr(API_KEY),
            transport=httpx.MockTransport(without_totals),
            timeout=httpx.Timeout(5, connect=2),
        )
        run = opened(EnergyCapProvider(client, page_size=25), {"account_period": PERIOD})
        assert run.selection.selector["up_to_bill_id"] == max(period.bill_ids)

    def test_accounts_hold_their_part_of_the_period(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        codes = list(period.account_codes[:2])
        run = opened(provider, {"account_period": PERIOD, "account_code": codes})
        other = opened(provider, {"account_period": PERIOD, "account_code": list(reversed(codes))})
        assert run.selection.scope == "energycap:202510"
        assert not run.selection.whole
        assert run.selection.guard_key.startswith("energycap:202510:accounts:")
        assert run.selection.guard_key == other.selection.guard_key  # the same accounts, in any order
        assert codes[0] in run.selection.label

    def test_a_bill_ids_file_is_read_once_and_kept(
        self, provider: EnergyCapProvider, period: SeededPeriod, tmp_path: Path
    ) -> None:
        wanted = [period.eligible_ids[3], period.void_ids[0], period.eligible_ids[0]]
        path = tmp_path / "ids.txt"
        path.write_text("billId\n" + "\n".join(map(str, wanted)) + f"\n\n# a comment\n{wanted[0]}\n")
        run = opened(provider, {"bill_ids_file": str(path)})
        path.unlink()  # the run never needs the file again
        assert run.selection.selector["bill_ids"] == sorted(wanted)
        assert run.selection.scope.startswith("energycap:ids:")
        assert run.selection.label == "3 bill(s) of ids.txt"
        planned = plan(provider, run)
        assert [int(p.invoice.invoice_id) for p in planned] == sorted(wanted)
        assert {p.invoice.invoice_id: p.reason for p in planned}[str(period.void_ids[0])] == "void"

    def test_unknown_and_malformed_ids_are_refused_naming_their_lines(
        self, provider: EnergyCapProvider, period: SeededPeriod, tmp_path: Path
    ) -> None:
        path = tmp_path / "ids.txt"
        path.write_text(f"{period.eligible_ids[0]}\n999999\n")
        with pytest.raises(RunRefused, match=r"ids\.txt line 2: no bill 999999 in EnergyCAP"):
            opened(provider, {"bill_ids_file": str(path)})
        path.write_text("12\nabc\n-4\n")
        with pytest.raises(RunRefused) as refused:
            opened(provider, {"bill_ids_file": str(path)})
        assert "ids.txt line 2: 'abc' is not a bill id" in str(refused.value)
        assert "ids.txt line 3: '-4' is not a bill id" in str(refused.value)

    @pytest.mark.parametrize(
        ("selector", "why"),
        [
            ({}, "one of the two"),
            ({"account_period": PERIOD, "bill_ids_file": "ids.txt"}, "one of the two"),
            ({"bill_ids_file": "ids.txt", "account_code": ["AC-1"]}, "cannot narrow a bill-ids file"),
            ({"account_period": 202513}, "account_period"),
            ({"account_period": PERIOD, "account_code": ["it's"]}, "quote"),
            ({"account_period": PERIOD, "acount_code": ["AC-1"]}, "acount_code"),
        ],
    )
    def test_a_bad_selection_is_refused(
        self, provider: EnergyCapProvider, period: SeededPeriod, selector: dict[str, Any], why: str
    ) -> None:
        with pytest.raises(RunRefused, match=why):
            opened(provider, selector)

    def test_a_chunk_is_at_most_one_call(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        with pytest.raises(RunRefused, match="1 to 1000 bills per call"):
            opened(provider, {"account_period": PERIOD}, chunk_size=1001)
        assert opened(provider, {"account_period": PERIOD}, chunk_size=1000).options.chunk_size == 1000

    def test_an_empty_period_is_refused(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        with pytest.raises(RunRefused, match="no bills in account period 202401"):
            opened(provider, {"account_period": 202401})

    def test_the_corrected_bills_are_matched_and_kept(
        self, provider: EnergyCapProvider, period: SeededPeriod, corrected: Path
    ) -> None:
        run = opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})
        rebill = run.provider_state["rebill"]
        assert rebill["name"] == str(corrected)
        assert rebill["lines"] == list(range(2, len(period.eligible_ids) + 2))
        assert rebill["csv"].count("\n") == len(period.eligible_ids) + 1
        assert run.provider_options == {"rebill_file": str(corrected), "allow_unmatched": False}

    def test_rows_matching_no_eligible_bill_are_refused_unless_allowed(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path
    ) -> None:
        void = state.bills[period.void_ids[0]]
        lines = corrected.read_text().splitlines()
        lines.append(
            f"{void.account.account_code},{void.meters[0].meter_code},{void.billing_period},"
            f"{void.begin_date},{void.end_date},10.00,Energy,6.00,Delivery,4.00"
        )
        lines.append("AC-00000,MT-0,202510,2025-10-01,2025-10-31,5.00,,,,")
        corrected.write_text("\n".join(lines) + "\n")
        extra = len(lines) - 1, len(lines)
        with pytest.raises(RunRefused) as refused:
            opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})
        message = str(refused.value)
        assert f"corrected.csv line {extra[0]}: account {void.account.account_code}" in message
        assert f"corrected.csv line {extra[1]}: account AC-00000" in message
        assert "--allow-unmatched" in message

        run = opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected), "allow_unmatched": True})
        assert run.provider_state["rebill"]["unmatched"] == list(extra)
        assert len(run.provider_state["rebill"]["lines"]) == len(period.eligible_ids)
        assert "left out (no eligible bill): line(s)" in provider.summarize(run)["unmatched_rows"]

    def test_a_bad_corrected_bills_file_is_refused_naming_file_and_line(
        self, provider: EnergyCapProvider, period: SeededPeriod, corrected: Path
    ) -> None:
        lines = corrected.read_text().splitlines()
        lines[3] = lines[3].replace(",2025-", ",2025/", 1)
        corrected.write_text("\n".join(lines) + "\n")
        with pytest.raises(RunRefused, match=r"corrected\.csv line 4: beginDate"):
            opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})

    def test_opening_writes_nothing(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path
    ) -> None:
        opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})
        counters = state.counters()
        assert counters["reverse_calls"] == []
        assert counters["imports"] == []
        assert counters["batches"] == {}
        assert set(counters["requests"]) == {"bill.list"}


class TestPlan:
    def test_every_bill_with_its_verdict(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        planned = plan(provider, opened(provider, {"account_period": PERIOD}))
        verdicts = {int(p.invoice.invoice_id): (p.state, p.reason) for p in planned}
        assert list(verdicts) == sorted(period.bill_ids)
        assert {i for i, (s, _) in verdicts.items() if s is ItemState.PENDING} == set(period.eligible_ids)
        assert {verdicts[i] for i in period.void_ids} == {(ItemState.SKIPPED, "void")}
        assert {verdicts[i] for i in period.reversed_ids} == {(ItemState.SKIPPED, "already_reversed")}
        assert {verdicts[i] for i in period.reversal_ids} == {(ItemState.SKIPPED, "reversal_bill")}
        assert set(period.exported_ids) - set(period.void_ids) - set(period.reversed_ids) <= set(period.eligible_ids)

    def test_a_bill_is_the_neutral_invoice_with_what_follows_it(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        first = plan(provider, opened(provider, {"account_period": PERIOD}))[0].invoice
        bill = state.bills[int(first.invoice_id)]
        assert (first.number, first.party_id, first.amount) == (
            str(bill.bill_id),
            bill.account.account_code,
            bill.total_cost,
        )
        assert first.details == {
            "account": bill.account.account_code,
            "meters": [bill.meters[0].meter_code],
            "billing_period": bill.billing_period,
            "account_period": PERIOD,
            "cost": str(bill.total_cost),
        }

    @pytest.mark.parametrize("page_cap", [None, 10, 7])
    def test_planning_resumes_from_any_cursor(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, page_cap: int | None
    ) -> None:
        state.faults.update(page_cap=page_cap)
        run = opened(provider, {"account_period": PERIOD})
        pages = list(provider.iter_plan(run, cursor=0))
        everything = [p.invoice.invoice_id for page in pages for p in page.items]
        assert len(everything) == len(period.bill_ids)
        assert [page.next_cursor for page in pages][-1] is None
        for page in pages[:-1]:
            assert page.next_cursor == page.cursor + len(page.items)
        for cursor in (pages[1].cursor, 13, len(everything) - 1):
            rest = [p.invoice.invoice_id for p in plan(provider, run, cursor=cursor)]
            assert rest == everything[cursor:], cursor

    def test_bills_made_after_the_run_opened_are_not_planned(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        # Reversals made meanwhile (this run's own, or anyone's) land in the period after its last bill.
        state.reverse_bills(reverse(period.eligible_ids[:3], code="ELSEWHERE-1", note="someone"))
        planned = plan(provider, run)
        assert max(int(p.invoice.invoice_id) for p in planned) == max(period.bill_ids)
        assert sum(p.state is ItemState.PENDING for p in planned) == len(period.eligible_ids) - 3

    def test_accounts_narrow_the_plan(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        codes = list(period.account_codes[:3])
        planned = plan(provider, opened(provider, {"account_period": PERIOD, "account_code": codes}))
        assert planned
        assert {p.invoice.party_id for p in planned} <= set(codes)


class TestReverse:
    def test_a_chunk_is_one_call_under_its_batch_code(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[1]
        outcomes = act(provider, run, chunk)
        code = "RB-7F3A21C0-0002"
        counters = state.counters()
        assert counters["reverse_calls"] == [
            {"code": code, "endpoint": "v202510", "ids": [bill_id(i) for i in chunk], "selected": 20, "updated": 20}
        ]
        assert counters["batches"] == {code: 1}
        batch = state.batch_by_code(code)
        assert batch is not None
        assert batch.note == RUN_ID
        for item in chunk:
            outcome = outcomes[item.id]
            assert (outcome.state, outcome.reason, outcome.settled_by_read) == (
                ItemState.REVERSED,
                f"reversed in batch {code}",
                False,
            )
            reversal = state.bills[int(outcome.result_ref or 0)]
            assert reversal.reversal_of_bill_id == bill_id(item)
            assert reversal.total_cost == -item.invoice.amount

    def test_a_lost_reply_is_settled_by_reading_the_batch(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[0]
        state.faults.update(p_reply_lost=1.0, fault_operations=["bill.reverse"])
        with pytest.raises(ProviderError) as lost:
            act(provider, run, chunk)
        assert lost.value.may_have_applied
        state.faults.update(p_reply_lost=0.0)

        outcomes = act(provider, run, claimed_again(chunk))
        assert {o.state for o in outcomes.values()} == {ItemState.REVERSED}
        assert all(o.settled_by_read and o.result_ref for o in outcomes.values())
        counters = state.counters()
        assert len(counters["reverse_calls"]) == 1
        assert counters["batch_code_attempts"] == {"RB-7F3A21C0-0001": 1}
        assert set(counters["reversals"].values()) == {1}
        assert counters["duplicate_reversals"] == {}

    def test_a_call_refused_before_it_applied_is_sent_again_under_the_same_code(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[0]
        state.faults.update(p_500=1.0, fault_operations=["bill.reverse"])
        with pytest.raises(ProviderError) as failed:
            act(provider, run, chunk)
        assert failed.value.may_have_applied  # a 500 on a write: settle before anything else
        state.faults.update(p_500=0.0)

        outcomes = act(provider, run, claimed_again(chunk))
        assert {o.state for o in outcomes.values()} == {ItemState.REVERSED}
        assert not any(o.settled_by_read for o in outcomes.values())
        counters = state.counters()
        assert counters["requests"]["bill.reverse"] == 2
        assert counters["faults"] == {"500": 1}
        assert counters["batches"] == {"RB-7F3A21C0-0001": 1}
        assert set(counters["reversals"].values()) == {1}

    def test_a_code_in_use_means_the_first_call_landed_late(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[0]
        code = batch_code(RUN_ID, 0)
        late = state.reverse_bills(reverse([bill_id(i) for i in chunk], code=code, note=RUN_ID))
        outcomes = act(provider, run, chunk)
        assert {o.state for o in outcomes.values()} == {ItemState.REVERSED}
        assert all(o.settled_by_read for o in outcomes.values())
        assert {int(o.result_ref or 0) for o in outcomes.values()} == set(late.batch.bill_ids)
        counters = state.counters()
        assert counters["batches"] == {code: 1}
        assert counters["refused_writes"][0]["code"] == code
        assert set(counters["reversals"].values()) == {1}

    def test_updated_below_selected_is_read_back_bill_by_bill(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[0]
        elsewhere, voided = bill_id(chunk[2]), bill_id(chunk[5])
        other = state.reverse_bills(reverse([elsewhere], code="ELSEWHERE-1", note="someone"))
        with state.lock:
            state.bills[voided].void = True
            state.bills[voided].version += 1  # the simulator renders each version of a bill once
        outcomes = act(provider, run, chunk)
        assert state.counters()["reverse_calls"][-1]["updated"] == 18
        assert outcomes[chunk[2].id] == ItemOutcome(
            ItemState.SKIPPED,
            reason=f"already_reversed by bill {other.batch.bill_ids[0]}, outside batch RB-7F3A21C0-0001",
        )
        assert outcomes[chunk[5].id] == ItemOutcome(ItemState.SKIPPED, reason="void")
        assert sum(o.state is ItemState.REVERSED for o in outcomes.values()) == 18

    def test_a_batch_made_by_something_else_is_never_taken_for_ours(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run = opened(provider, {"account_period": PERIOD})
        chunk = claimed(run, plan(provider, run))[0]
        state.reverse_bills(reverse([bill_id(chunk[0])], code=batch_code(RUN_ID, 0), note="another run"))
        with pytest.raises(ProviderRefused, match="belongs to something else"):
            provider.settle(run, claimed_again(chunk))
        with pytest.raises(ProviderRefused, match="belongs to something else"):
            act(provider, run, chunk)


class TestFollow:
    def test_without_corrected_bills_the_run_only_reverses(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        run, view = reversed_run(provider, opened(provider, {"account_period": PERIOD}))
        _, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        assert state.counters()["imports"] == []
        assert provider.summarize(run)["rebill"].startswith("reverse-only")

    def test_the_corrected_bills_are_imported_once_and_followed(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        run, view = rebilling(provider, corrected)
        run, decision = follow(provider, run, view)
        code = "RB-7F3A21C0-I1"
        assert isinstance(decision.action, Watch)
        assert decision.observation is not None
        assert (decision.observation.subject, decision.observation.code) == (f"import {code}", "Queued")
        assert view.step_rows["import/I1"].request["file_name"] == "rebill-7f3a21c0.csv"

        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        assert decision.observation is not None
        assert decision.observation.code == "Completed"
        imports = state.counters()["imports"]
        assert [(i["code"], i["rows"], i["created"]) for i in imports] == [
            (code, len(period.eligible_ids), len(period.eligible_ids))
        ]
        for item in view.items():
            new_bill = state.bills[int(item.rebill_ref or 0)]
            assert new_bill.batch is not None
            assert new_bill.batch.batch_code == code
            assert new_bill.account.account_code == item.invoice.party_id
            assert (
                item.new_amount
                == new_bill.total_cost
                == (item.invoice.amount * Decimal("0.95")).quantize(Decimal("0.01"))
            )
            assert item.reason is not None
            assert item.reason.startswith("reversed in batch RB-7F3A21C0-000")
            assert item.reason.endswith(f"rebilled as bill {new_bill.bill_id} (batch {code})")

    def test_only_rows_of_bills_this_run_reversed_are_imported(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        run = opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})
        chunks = claimed(run, plan(provider, run))
        gone = bill_id(chunks[0][0])
        state.reverse_bills(reverse([gone], code="ELSEWHERE-1", note="someone"))  # after planning, before reversing
        view = View([item for chunk in chunks for item in settled(chunk, act(provider, run, chunk))])
        run = dataclasses.replace(run, state=RunState.REBILLING)
        run, _ = follow(provider, run, view)
        assert len(view.step_rows["import/I1"].request["lines"]) == len(period.eligible_ids) - 1
        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        assert state.counters()["imports"][0]["rows"] == len(period.eligible_ids) - 1
        skipped = next(item for item in view.items() if bill_id(item) == gone)
        assert skipped.state is ItemState.SKIPPED
        assert skipped.rebill_ref is None

    def test_a_reversed_bill_without_a_row_is_reversed_not_rebilled(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        lines = corrected.read_text().splitlines()
        corrected.write_text("\n".join(lines[:-1]) + "\n")  # the last eligible bill has no corrected row
        run, view = rebilling(provider, corrected)
        run, _ = follow(provider, run, view)
        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        last = next(item for item in view.items() if bill_id(item) == period.eligible_ids[-1])
        assert last.rebill_ref is None
        assert (
            last.reason
            == "reversed in batch RB-7F3A21C0-0003; reversed, not rebilled: no corrected row for it in corrected.csv"
        )

    def test_kickouts_are_reported_then_reimported_when_the_operator_asks(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        state.faults.update(p_kickout=0.2)  # a row's first import only
        run, view = rebilling(provider, corrected)
        run, _ = follow(provider, run, view)
        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        first = state.counters()["imports"][0]
        assert first["kicked_out"] > 0
        assert first["created"] + first["kicked_out"] == len(period.eligible_ids)
        assert isinstance(decision.action, Finish)
        assert (decision.action.state, decision.action.code) == (RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR)
        assert f"{first['kicked_out']} corrected bill(s) were kicked out of import RB-7F3A21C0-I1" in (
            decision.action.reason or ""
        )
        assert f"`rebill retry {RUN_ID} --reimport-kickouts`" in (decision.action.reason or "")
        kicked = [item for item in view.items() if item.rebill_ref is None]
        assert len(kicked) == first["kicked_out"]
        assert all(
            "kicked out of import RB-7F3A21C0-I1: The bill could not be imported" in (i.reason or "") for i in kicked
        )

        # Following again without being asked changes nothing; `rebill retry --reimport-kickouts` asks.
        run, decision = follow(provider, run, view)
        assert isinstance(decision.action, Finish)
        assert decision.action.state is RunState.NEEDS_ATTENTION
        run = dataclasses.replace(run, provider_state={**run.provider_state, "reimport_kickouts": True})
        run, decision = follow(provider, run, view)
        assert "reimport_kickouts" not in run.provider_state
        step = view.step_rows["import/I2"]
        assert (step.kind, step.request["batch_code"]) == ("import.kickout", "RB-7F3A21C0-I2")
        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        assert [(i["code"], i["kind"]) for i in state.counters()["imports"]] == [
            ("RB-7F3A21C0-I1", "import"),
            ("RB-7F3A21C0-I2", "kickout"),
        ]
        assert all(item.rebill_ref for item in view.items())
        again = {bill_id(i) for i in kicked}
        for item in view.items():
            code = "RB-7F3A21C0-I2" if bill_id(item) in again else "RB-7F3A21C0-I1"
            assert (item.reason or "").endswith(f"(batch {code})")

    def test_a_lost_import_reply_is_settled_by_reading_batch_and_task(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        run, _, step = first_import(provider, corrected, StepPhase.SENDING)
        state.faults.update(p_reply_lost=1.0, fault_operations=["import.bill"])
        with pytest.raises(ProviderError) as lost:
            provider.send_step(run, step)
        assert lost.value.may_have_applied
        state.faults.update(p_reply_lost=0.0)

        result = provider.settle_step(run, dataclasses.replace(step, phase=StepPhase.UNKNOWN))
        (task,) = state.tasks.values()
        assert (result.settlement, result.ref) == (Settlement.APPLIED, task.guid)
        assert state.counters()["import_attempts"] == {"RB-7F3A21C0-I1": 1}

    def test_an_import_that_did_not_apply_is_sent_again_under_the_same_code(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path, clock: Clock
    ) -> None:
        run, view, step = first_import(provider, corrected, StepPhase.UNKNOWN)
        state.faults.update(p_500=1.0, fault_operations=["import.bill"])
        with pytest.raises(ProviderError):
            provider.send_step(run, step)
        state.faults.update(p_500=0.0)
        assert provider.settle_step(run, step).settlement is Settlement.NOT_APPLIED

        view.step_rows[step.key] = dataclasses.replace(step, phase=StepPhase.RELEASED)
        run, decision = follow(provider, run, view)
        clock.advance(IMPORT_SECONDS)
        run, decision = follow(provider, run, view)
        assert decision.action == Finish(RunState.COMPLETED)
        counters = state.counters()
        assert counters["requests"]["import.bill"] == 2
        assert counters["faults"] == {"500": 1}
        assert counters["batches"]["RB-7F3A21C0-I1"] == 1

    def test_an_import_code_in_use_is_settled_by_reading(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path
    ) -> None:
        run, _, step = first_import(provider, corrected, StepPhase.SENDING)
        first = provider.send_step(run, step)  # lands; its reply is taken as lost, and it is sent once more
        again = provider.send_step(run, step)
        assert again == first
        assert state.counters()["batches"]["RB-7F3A21C0-I1"] == 1
        assert len(state.tasks) == 1


class TestDryRun:
    def test_it_describes_each_chunk_and_the_import_and_writes_nothing(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod, corrected: Path
    ) -> None:
        run = opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)}, dry_run=True)
        planned = plan(provider, run)
        view = View(
            [
                Item(id=n, run_id=RUN_ID, chunk_id=None, invoice=p.invoice, state=p.state, reason=p.reason)
                for n, p in enumerate(planned, start=1)
            ]
        )
        reverse_request, import_request = provider.describe_follow_up(run, view)
        eligible = len(period.eligible_ids)
        assert reverse_request["request"] == "PUT /api/v202510/bill/reverse"
        assert [c["batch_code"] for c in reverse_request["chunks"]] == [batch_code(RUN_ID, n) for n in range(3)]
        assert [c["bills"] for c in reverse_request["chunks"]] == [20, 20, eligible - 40]
        assert reverse_request["chunks"][0]["first_bill_id"] == str(period.eligible_ids[0])
        assert import_request["batch_code"] == "RB-7F3A21C0-I1"
        assert (import_request["rows"], import_request["reversed_not_rebilled"]) == (eligible, 0)
        counters = state.counters()
        assert counters["reverse_calls"] == []
        assert counters["imports"] == []
        assert counters["batches"] == {}
        assert set(counters["requests"]) == {"bill.list"}

    def test_a_reverse_only_dry_run_says_so(self, provider: EnergyCapProvider, period: SeededPeriod) -> None:
        run = opened(provider, {"account_period": PERIOD}, dry_run=True)
        _, nothing = provider.describe_follow_up(run, View([]))
        assert nothing["import"] is None
        assert "reverse-only" in nothing["note"]


class TestOperators:
    def test_check_reads_one_page(
        self, provider: EnergyCapProvider, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        line = provider.check()
        assert line == f"EnergyCAP at {BASE_URL}: API key accepted, {len(state.bills)} bill(s) readable"
        assert API_KEY not in line

    def test_a_rejected_key_names_the_variable_never_the_key(self, state: EnergyCapState, period: SeededPeriod) -> None:
        client = EnergyCapClient(
            base_url=BASE_URL,
            api_key=SecretStr("not-the-key"),
            transport=httpx.MockTransport(EnergyCapApp(state).handle),
            timeout=httpx.Timeout(5, connect=2),
        )
        with pytest.raises(ProviderError, match="REBILL_ENERGYCAP_API_KEY") as refused:
            EnergyCapProvider(client).check()
        assert "not-the-key" not in str(refused.value)

    def test_schedules_are_not_supported_yet(self, provider: EnergyCapProvider) -> None:
        chosen = provider.choose_scheduled({"cycle": "monthly"})
        assert chosen.selector is None
        assert "not supported yet" in (chosen.reason or "")

    def test_the_summary_names_the_batches_and_the_import(
        self, provider: EnergyCapProvider, period: SeededPeriod, corrected: Path
    ) -> None:
        run = opened(provider, {"account_period": PERIOD}, {"rebill_file": str(corrected)})
        summary = provider.summarize(run)
        assert summary["account_period"] == PERIOD
        assert summary["batches"].startswith("RB-7F3A21C0-0001, RB-7F3A21C0-0002")
        assert summary["rebill"] == (
            f"{len(period.eligible_ids)} corrected bill(s) from {corrected}, imported as RB-7F3A21C0-I1"
        )
