"""AriaProvider, the port's methods against the Aria simulator in-process (`httpx.MockTransport` over
`AriaApp.handle`): no ledger, no worker. The simulator's state and counters say what was written."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.aria import AriaBusyError, AriaClient, AriaProvider
from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderThrottled, RunRefused, TransientProviderError
from orchestrator.domain.run import Item, ItemOutcome, ItemState, PlannedItem, Run, RunOptions, RunState
from orchestrator.services.context import CallRecorder
from orchestrator.services.ports import BillingProvider, Finish, Opening
from simulators.aria import AriaApp, AriaState, SeededRun, seed_bill_run
from tests.support.aria import REASON_CODE, corrected_amount, write_corrections

CLIENT_NO = 7_000_555
AUTH_KEY = "aria-provider-test-key"
BILL_DATE = date(2025, 10, 1)
REASON = REASON_CODE


@dataclass
class Wire:
    """The simulator's handler, keeping each request body (what the provider sent, as Aria reads it)."""

    app: AriaApp
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content, parse_float=Decimal))
        return self.app.handle(request)

    def sent(self, rest_call: str) -> list[dict[str, Any]]:
        return [body for body in self.bodies if body["rest_call"] == rest_call]


@pytest.fixture
def state() -> AriaState:
    return AriaState(CLIENT_NO, AUTH_KEY, today=date(2025, 11, 3))


@pytest.fixture
def seeded(state: AriaState) -> SeededRun:
    """40 originals of the bill date (open, paid, part-paid, voided, rebilled), and the month before's."""
    return seed_bill_run(state, invoices=40, seed=3, bill_date=BILL_DATE)


@pytest.fixture
def wire(state: AriaState) -> Wire:
    return Wire(AriaApp(state))


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def make_provider(wire: Wire, calls: list[ApiCall]) -> Callable[..., AriaProvider]:
    def make(
        page_size: int = 500,
        *,
        reads_at_once: int = 1,
        handler: Callable[[httpx.Request], httpx.Response] = wire,
        observer: Callable[[ApiCall], None] = calls.append,
    ) -> AriaProvider:
        client = AriaClient(
            base_url="https://aria.test",
            client_no=CLIENT_NO,
            auth_key=SecretStr(AUTH_KEY),
            transport=httpx.MockTransport(handler),
            timeout=httpx.Timeout(5, connect=2),
            observer=observer,
        )
        return AriaProvider(client, page_size=page_size, reads_at_once=reads_at_once)

    return make


@pytest.fixture
def provider(make_provider: Callable[..., AriaProvider], seeded: SeededRun) -> AriaProvider:
    return make_provider()


@pytest.fixture
def corrections(tmp_path: Path) -> Path:
    return write_corrections(tmp_path)


@dataclass
class Overlapping:
    """The wire, holding each `rest_call` request a moment, counting how many were in at once."""

    wire: Wire
    rest_call: str
    peak: int = 0
    _inside: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["rest_call"] != self.rest_call:
            return self.wire(request)
        with self._lock:
            self._inside += 1
            self.peak = max(self.peak, self._inside)
        try:
            time.sleep(0.01)
            return self.wire(request)
        finally:
            with self._lock:
                self._inside -= 1


def options(corrections: Path, **more: Any) -> dict[str, Any]:
    return {"corrections": str(corrections), "reason_code": REASON, **more}


def as_run(opening: Opening, *, dry_run: bool = False, run_id: str = "3f9e0c1a-run") -> Run:
    """The run as the ledger would hand it back: what `open` made, through JSON."""
    now = datetime(2025, 11, 3, tzinfo=UTC)

    def stored(value: Any) -> Any:
        return json.loads(json.dumps(value))

    return Run(
        id=run_id,
        provider="aria",
        selection=opening.selection,
        state=RunState.PLANNING,
        options=RunOptions(dry_run=dry_run),
        created_at=now,
        updated_at=now,
        provider_options=stored(opening.options),
        provider_state=stored(opening.state),
    )


def plan(provider: AriaProvider, run: Run, *, cursor: int = 0) -> list[PlannedItem]:
    return [item for page in provider.iter_plan(run, cursor=cursor) for item in page.items]


def claimed(planned: PlannedItem, *, item_id: int = 1, claims: int = 1) -> Item:
    return Item(
        id=item_id,
        run_id="3f9e0c1a-run",
        chunk_id=1,
        invoice=planned.invoice,
        state=ItemState.IN_FLIGHT,
        attempts=claims,
        claims_total=claims,
    )


def work(provider: AriaProvider, run: Run, item: Item) -> ItemOutcome:
    """One claimed item as the core works it: settle when claimed before, prepare, then apply or preview."""
    if item.claimed_before:
        settled = provider.settle(run, [item])
        if item.id in settled:
            return settled[item.id]
    prepared = provider.prepare(run, [item])
    if item.id in prepared.decided:
        return prepared.decided[item.id]
    act = provider.preview if run.options.dry_run else provider.apply
    return act(run, prepared)[item.id]


def test_the_provider_implements_the_port() -> None:
    for name, member in inspect.getmembers(BillingProvider, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(AriaProvider, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
    assert PLATFORMS["aria"].selector.model_fields.keys() == {"bill_date", "account", "invoices_file"}


class TestOpen:
    def test_a_bill_date_is_the_whole_scope(self, provider: AriaProvider, corrections: Path) -> None:
        opening = provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions())
        selection = opening.selection
        assert (selection.scope, selection.guard_key, selection.whole) == ("aria:2025-10-01", "aria:2025-10-01", True)
        assert selection.label == "bill date 2025-10-01"
        assert selection.selector == {"bill_date": "2025-10-01"}
        assert opening.options == {
            "corrections": str(corrections),
            "reason_code": REASON,
            "comments": None,
            "collect": False,
            "allow_no_change": False,
        }

    def test_the_corrections_are_kept_as_read(self, provider: AriaProvider, corrections: Path) -> None:
        opening = provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions())
        corrections.write_text("service,rate_per_unit\nSEATS,99\n")  # a later edit changes nothing
        kept = as_run(opening).provider_state
        assert kept["corrections_source"] == str(corrections)
        assert [(row["service"], row["rate_per_unit"], row["units"]) for row in kept["corrections"]] == [
            ("PLAN-BASE", "49.995", None),
            ("10002", "11.125", None),
            ("SMS", "0.0125", None),
        ]

    def test_one_account_is_a_part_with_its_own_guard(
        self, provider: AriaProvider, seeded: SeededRun, corrections: Path
    ) -> None:
        account = seeded.acct_nos[0]
        selection = provider.open(
            {"bill_date": "2025-10-01", "account": account}, options(corrections, allow_no_change=True), RunOptions()
        ).selection
        assert selection.scope == "aria:2025-10-01"
        assert selection.guard_key == f"aria:2025-10-01:account:{account}"
        assert selection.whole is False

    def test_an_invoices_file_is_read_once_and_its_numbers_stored(
        self, provider: AriaProvider, seeded: SeededRun, corrections: Path, tmp_path: Path
    ) -> None:
        numbers = list(seeded.eligible[:3])
        listed = tmp_path / "invoices.txt"
        listed.write_text("# to rebill\n" + "\n".join(map(str, numbers)) + "\n\n")
        reordered = tmp_path / "again.txt"
        reordered.write_text("\n".join(map(str, reversed(numbers))))
        opening = provider.open({"invoices_file": str(listed)}, options(corrections), RunOptions())
        assert opening.selection.selector == {"invoices_file": str(listed), "invoice_nos": numbers}
        assert opening.selection.scope.startswith("aria:file:")
        assert opening.selection.label == f"invoices file {listed} (3 invoices)"
        same = provider.open({"invoices_file": str(reordered)}, options(corrections), RunOptions())
        assert same.selection.scope == opening.selection.scope  # the same invoices: one scope

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("41000001\nabc\n41000002\n-3\n", ["invoices.txt:2: 'abc' is not", "invoices.txt:4: '-3' is not"]),
            ("41000001\n41000001\n", ["invoices.txt:2: invoice 41000001 is already on line 1"]),
            ("\n# nothing\n", ["invoices.txt: no invoice number in the file"]),
        ],
    )
    def test_a_bad_invoices_file_is_refused_naming_file_and_line(
        self, provider: AriaProvider, corrections: Path, tmp_path: Path, text: str, expected: list[str]
    ) -> None:
        listed = tmp_path / "invoices.txt"
        listed.write_text(text)
        with pytest.raises(RunRefused) as refused:
            provider.open({"invoices_file": str(listed)}, options(corrections), RunOptions())
        for part in expected:
            assert part in str(refused.value)

    def test_a_bad_corrections_file_is_refused_naming_file_and_line(
        self, provider: AriaProvider, tmp_path: Path, wire: Wire
    ) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text("service,rate_per_unit,units\nSEATS,-1,\nSEATS,2,\nPLAN-BASE,x,\n")
        with pytest.raises(RunRefused) as refused:
            provider.open({"bill_date": "2025-10-01"}, options(bad), RunOptions())
        assert f"{bad}:2: rate_per_unit -1 is negative" in str(refused.value)
        assert f"{bad}:3: service 'SEATS' is already corrected on line 2" in str(refused.value)
        assert f"{bad}:4: rate_per_unit 'x' is not a number" in str(refused.value)
        assert wire.bodies == []  # refused before anything was asked of Aria

    @pytest.mark.parametrize(
        ("selector", "expected"),
        [
            ({}, "exactly one of a bill date and an invoices file"),
            ({"bill_date": "2025-10-01", "invoices_file": "x.txt"}, "exactly one of a bill date and an invoices file"),
            ({"invoices_file": "x.txt", "account": 3}, "an account narrows a bill date"),
            ({"bill_date": "2025-13-01"}, "bill_date:"),
        ],
    )
    def test_a_selection_names_one_thing(
        self, provider: AriaProvider, corrections: Path, selector: dict[str, Any], expected: str
    ) -> None:
        with pytest.raises(RunRefused, match="bad Aria selection") as refused:
            provider.open(selector, options(corrections), RunOptions())
        assert expected in str(refused.value)

    def test_a_reason_code_is_required(self, provider: AriaProvider, corrections: Path) -> None:
        with pytest.raises(RunRefused, match="reason_code: Field required"):
            provider.open({"bill_date": "2025-10-01"}, {"corrections": str(corrections)}, RunOptions())

    def test_corrections_that_change_nothing_are_refused_unless_allowed(
        self, provider: AriaProvider, state: AriaState, tmp_path: Path
    ) -> None:
        unknown = tmp_path / "unknown.csv"
        unknown.write_text("service,rate_per_unit\nNOT-SOLD,1.00\n99999,2.00\n")
        with pytest.raises(RunRefused, match="name no line of any invoice of bill date 2025-10-01"):
            provider.open({"bill_date": "2025-10-01"}, options(unknown), RunOptions())
        opening = provider.open({"bill_date": "2025-10-01"}, options(unknown, allow_no_change=True), RunOptions())
        assert opening.options["allow_no_change"] is True
        assert state.counters()["gen_rb_m_calls"] == 0

    def test_reading_stops_at_the_first_invoice_the_corrections_name(
        self, provider: AriaProvider, state: AriaState, corrections: Path
    ) -> None:
        provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions())
        counters = state.counters()
        # The first invoice of this seed has a line the corrections name: nothing more is read.
        assert counters["requests"]["get_invoice_details_m"] == 1
        assert counters["dry_run_calls"] == 1  # Aria asked once whether it takes the rebill as asked
        assert counters["rebills_total"] == 0

    def test_a_reason_code_aria_refuses_stops_the_run_before_it_starts(
        self, provider: AriaProvider, state: AriaState, corrections: Path
    ) -> None:
        with pytest.raises(RunRefused, match=r"Aria error 3024 \(invalid reason code 77\)"):
            provider.open(
                {"bill_date": "2025-10-01"}, {"corrections": str(corrections), "reason_code": 77}, RunOptions()
            )
        assert state.counters()["rebills_total"] == 0

    def test_a_busy_answer_to_the_check_leaves_it_to_each_rebill(
        self, provider: AriaProvider, state: AriaState, corrections: Path
    ) -> None:
        state.faults.update(p_busy=1.0)
        opening = provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions())
        assert opening.selection.scope == "aria:2025-10-01"
        assert state.counters()["faults_injected"] == {"busy": 1}

    def test_an_empty_selection_is_refused(self, provider: AriaProvider, corrections: Path) -> None:
        with pytest.raises(RunRefused, match="bill date 2024-01-01 has no invoice on Aria client 7000555"):
            provider.open({"bill_date": "2024-01-01"}, options(corrections), RunOptions())


class TestPlan:
    def test_every_invoice_of_the_bill_date_with_its_verdict(
        self, provider: AriaProvider, seeded: SeededRun, corrections: Path
    ) -> None:
        run = as_run(provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions()))
        planned = {int(item.invoice.invoice_id): item for item in plan(provider, run)}
        assert sorted(planned) == sorted(seeded.invoice_nos)  # no R invoice, nothing of the older bill date
        verdicts = {number: planned[number].reason for number in planned}
        expected: dict[int, str | None] = dict.fromkeys(seeded.eligible)
        expected |= dict.fromkeys(seeded.voided, "voided")
        expected |= dict.fromkeys(seeded.rebilled, "already_rebilled")
        expected |= dict.fromkeys((*seeded.paid, *seeded.part_paid), "paid")
        assert verdicts == expected
        assert all(planned[number].state is ItemState.PENDING for number in seeded.eligible)

    def test_an_accounts_invoices_share_a_group(
        self, provider: AriaProvider, seeded: SeededRun, state: AriaState, corrections: Path
    ) -> None:
        run = as_run(provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions()))
        for item in plan(provider, run):
            if item.state is ItemState.PENDING:
                acct_no = state.invoices[int(item.invoice.invoice_id)].account.acct_no
                assert item.group == str(acct_no) == item.invoice.party_id

    def test_pages_follow_the_records_returned_when_aria_caps_the_limit(
        self, make_provider: Callable[..., AriaProvider], seeded: SeededRun, state: AriaState, corrections: Path
    ) -> None:
        provider = make_provider(page_size=50)
        run = as_run(provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions()))
        state.faults.update(page_cap=7)
        state.reset_counters()
        pages = list(provider.iter_plan(run, cursor=0))
        assert [page.cursor for page in pages] == list(range(0, 40, 7))
        assert [page.next_cursor for page in pages] == [*range(7, 40, 7), None]
        numbers = [int(item.invoice.invoice_id) for page in pages for item in page.items]
        assert numbers == sorted(seeded.invoice_nos)
        assert state.counters()["requests"]["get_invoice_information_m"] == 6

    def test_histories_are_read_together_each_call_on_the_runs_record_and_the_verdicts_the_same(
        self, make_provider: Callable[..., AriaProvider], wire: Wire, state: AriaState, corrections: Path
    ) -> None:
        seed_bill_run(state, invoices=120, seed=5, bill_date=date(2025, 12, 1))
        selector = {"bill_date": "2025-12-01"}
        one_by_one = make_provider()
        run = as_run(one_by_one.open(selector, options(corrections), RunOptions()))
        expected = [(item.invoice.invoice_id, item.reason) for item in plan(one_by_one, run)]

        reading = Overlapping(wire, "get_invoice_history_m")
        recorder = CallRecorder()
        together = make_provider(reads_at_once=4, handler=reading, observer=recorder.record)
        state.reset_counters()
        with recorder.collect() as recorded:
            assert [(item.invoice.invoice_id, item.reason) for item in plan(together, run)] == expected

        reads = state.counters()["requests"]["get_invoice_history_m"]
        assert reads > 4
        assert 1 < reading.peak <= 4  # never more than `reads_at_once` at once
        assert sum(call.operation == "get_invoice_history_m" for call in recorded) == reads  # each on the record

    def test_a_failed_history_read_stops_the_reads_not_yet_begun(
        self, make_provider: Callable[..., AriaProvider], state: AriaState, corrections: Path
    ) -> None:
        seed_bill_run(state, invoices=120, seed=5, bill_date=date(2025, 12, 1))
        provider = make_provider(reads_at_once=2)
        run = as_run(provider.open({"bill_date": "2025-12-01"}, options(corrections), RunOptions()))
        state.faults.update(p_500=1.0, fault_operations=["get_invoice_history_m"])
        state.reset_counters()
        with pytest.raises(TransientProviderError):
            plan(provider, run)
        assert state.counters()["requests"]["get_invoice_history_m"] <= 3  # the first failure, and what had begun

    def test_planning_resumes_from_its_cursor(
        self, provider: AriaProvider, seeded: SeededRun, corrections: Path
    ) -> None:
        run = as_run(provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions()))
        rest = plan(provider, run, cursor=25)
        assert [int(item.invoice.invoice_id) for item in rest] == sorted(seeded.invoice_nos)[25:]

    def test_one_account(self, provider: AriaProvider, seeded: SeededRun, state: AriaState, corrections: Path) -> None:
        account = state.invoices[seeded.eligible[0]].account.acct_no
        run = as_run(provider.open({"bill_date": "2025-10-01", "account": account}, options(corrections), RunOptions()))
        numbers = [int(item.invoice.invoice_id) for item in plan(provider, run)]
        assert numbers == [n for n in sorted(seeded.invoice_nos) if state.invoices[n].account.acct_no == account]

    def test_an_invoices_file_plans_what_it_names(
        self, provider: AriaProvider, seeded: SeededRun, corrections: Path, tmp_path: Path
    ) -> None:
        named = [
            seeded.eligible[0],
            seeded.rebill_invoice_nos[0],
            49_999_999,
            seeded.voided[0],
            seeded.older_invoice_nos[0],
        ]
        listed = tmp_path / "invoices.txt"
        listed.write_text("\n".join(map(str, named)))
        run = as_run(provider.open({"invoices_file": str(listed)}, options(corrections), RunOptions()))
        pages = list(provider.iter_plan(run, cursor=0))
        assert [(page.cursor, page.next_cursor) for page in pages] == [(0, None)]
        verdicts = [(int(item.invoice.invoice_id), item.state, item.reason) for item in pages[0].items]
        assert verdicts[:4] == [
            (seeded.eligible[0], ItemState.PENDING, None),
            (seeded.rebill_invoice_nos[0], ItemState.SKIPPED, "rebill_invoice"),
            (49_999_999, ItemState.SKIPPED, "not_found"),
            (seeded.voided[0], ItemState.SKIPPED, "voided"),
        ]
        assert verdicts[4][0] == seeded.older_invoice_nos[0]  # another bill date: eligible or paid, as it is


@pytest.fixture
def run(provider: AriaProvider, corrections: Path) -> Run:
    return as_run(provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions()))


@pytest.fixture
def eligible(provider: AriaProvider, run: Run) -> list[PlannedItem]:
    return [item for item in plan(provider, run) if item.state is ItemState.PENDING]


@pytest.fixture
def fresh_counters(state: AriaState, run: Run, eligible: list[PlannedItem]) -> None:
    """Count only what acting does (opening and planning read, and asked one preview)."""
    state.reset_counters()


@pytest.mark.usefixtures("fresh_counters")
class TestAct:
    def test_an_invoice_is_rebilled_once_with_the_corrected_amounts(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState, wire: Wire
    ) -> None:
        planned = eligible[0]
        original = state.invoices[int(planned.invoice.invoice_id)]
        old_amount = original.amount
        outcome = work(provider, run, claimed(planned))

        assert outcome.state is ItemState.REVERSED
        assert outcome.rebill_ref is not None
        rebill = state.invoices[int(outcome.rebill_ref)]
        assert rebill.orig_invoice_no == original.invoice_no
        assert outcome.new_amount == rebill.amount == corrected_amount(original)
        assert planned.invoice.amount == old_amount  # the old amount, for the difference
        assert state.counters()["rebills"] == {str(original.invoice_no): 1}
        sent = wire.sent("gen_rb_m")[-1]
        assert sent["do_write"] == "true"
        assert sent["do_collect"] == 0
        assert sent["alt_caller_id"] == "rebill"
        assert sent["reason_cd"] == REASON
        assert sent["rb_comments"] == f"rebill run {run.id}"
        assert sent["optional_transaction_qualifiers"] == [{"qualifier_name": "run_id", "qualifier_value": run.id}]
        charge_lines = [line for line in original.lines if not line.service.is_tax]
        assert [item["line_no"] for item in sent["rb_line_items"]] == [line.line_no for line in charge_lines]
        assert all("rb_amount" not in item for item in sent["rb_line_items"])

    def test_collect_and_comments_are_sent_as_asked(
        self, provider: AriaProvider, eligible: list[PlannedItem], corrections: Path, wire: Wire
    ) -> None:
        opening = provider.open(
            {"bill_date": "2025-10-01"}, options(corrections, collect=True, comments="Rate fix Q4"), RunOptions()
        )
        work(provider, as_run(opening), claimed(eligible[0]))
        sent = wire.sent("gen_rb_m")[-1]
        assert (sent["do_collect"], sent["rb_comments"]) == (1, "Rate fix Q4")

    def test_a_lost_reply_is_settled_by_the_history_never_resent(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        planned = eligible[0]
        state.faults.update(p_reply_lost=1.0, fault_operations=["gen_rb_m"])
        with pytest.raises(TransientProviderError) as lost:
            work(provider, run, claimed(planned))
        assert lost.value.may_have_applied
        state.faults.update(p_reply_lost=0.0)

        outcome = work(provider, run, claimed(planned, claims=2))  # the core's next claim
        original = state.invoices[int(planned.invoice.invoice_id)]
        assert outcome.state is ItemState.REVERSED
        assert outcome.settled_by_read
        assert outcome.rebill_ref is not None
        assert outcome.rebill_ref == str(original.rb_no)
        assert outcome.new_amount == state.invoices[int(outcome.rebill_ref)].amount == corrected_amount(original)
        counters = state.counters()
        assert (counters["gen_rb_m_calls"], counters["rebills"]) == (1, {str(original.invoice_no): 1})

    def test_an_unknown_outcome_that_did_not_apply_is_sent_again(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        planned = eligible[0]
        state.faults.update(p_unexpected=1.0, unexpected_applies=False)
        with pytest.raises(TransientProviderError) as unknown:
            work(provider, run, claimed(planned))
        assert unknown.value.may_have_applied  # 1001 on gen_rb_m
        state.faults.update(p_unexpected=0.0)
        outcome = work(provider, run, claimed(planned, claims=2))
        assert outcome.state is ItemState.REVERSED
        assert not outcome.settled_by_read
        assert state.counters()["rebills"] == {planned.invoice.invoice_id: 1}

    def test_a_second_rebill_refused_3097_is_settled_by_reading(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        planned = eligible[0]
        prepared = provider.prepare(run, [claimed(planned)])
        meanwhile = state.rebill_now(int(planned.invoice.invoice_id), reason_cd=1, comments="by hand", rates=[])
        outcome = provider.apply(run, prepared)[1]
        assert outcome.state is ItemState.REVERSED
        assert outcome.settled_by_read
        assert outcome.rebill_ref == str(meanwhile.invoice_no)
        assert state.counters()["duplicate_attempts"] == 1

    def test_a_voided_invoice_is_skipped_on_2003(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        planned = eligible[0]
        prepared = provider.prepare(run, [claimed(planned)])
        state.void(int(planned.invoice.invoice_id))
        assert provider.apply(run, prepared)[1] == ItemOutcome(ItemState.SKIPPED, reason="voided")

    def test_a_busy_billing_group_is_transient_and_writes_nothing(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        state.faults.update(p_busy=1.0)
        with pytest.raises(AriaBusyError) as busy:
            work(provider, run, claimed(eligible[0]))
        assert isinstance(busy.value, ProviderThrottled)  # the core backs off and retries it
        assert not busy.value.may_have_applied
        assert state.counters()["rebills_total"] == 0

    @pytest.mark.parametrize("change", ["pay", "rebill"])
    def test_what_changed_since_planning_is_skipped(
        self, provider: AriaProvider, run: Run, eligible: list[PlannedItem], state: AriaState, change: str
    ) -> None:
        number = int(eligible[0].invoice.invoice_id)
        if change == "pay":
            state.pay(number, Decimal("1.00"))
        else:
            state.rebill_now(number, reason_cd=1, comments="by hand", rates=[])
        state.reset_counters()
        outcome = work(provider, run, claimed(eligible[0]))
        assert outcome == ItemOutcome(ItemState.SKIPPED, reason="paid" if change == "pay" else "already_rebilled")
        assert state.counters()["gen_rb_m_calls"] == 0

    def test_a_dry_run_previews_every_eligible_invoice_and_writes_nothing(
        self, provider: AriaProvider, corrections: Path, eligible: list[PlannedItem], state: AriaState
    ) -> None:
        dry = as_run(
            provider.open({"bill_date": "2025-10-01"}, options(corrections), RunOptions(dry_run=True)), dry_run=True
        )
        before = state.dump_invoices()
        state.reset_counters()
        for index, planned in enumerate(eligible):
            outcome = work(
                provider, dry, claimed(planned, item_id=index, claims=2)
            )  # claimed before: nothing to settle
            assert outcome.state is ItemState.PREVIEWED
            assert outcome.new_amount == corrected_amount(state.invoices[int(planned.invoice.invoice_id)])
        counters = state.counters()
        assert counters["dry_run_calls"] == counters["gen_rb_m_calls"] == len(eligible)
        assert counters["rebills_total"] == 0
        assert "get_invoice_history_m" not in counters["requests"]
        assert state.dump_invoices() == before


class TestFollowAndOperators:
    def test_nothing_follows_the_invoices(self, provider: AriaProvider, run: Run) -> None:
        decision = provider.follow(run, view=None)  # type: ignore[arg-type]  # never read: nothing follows
        assert decision.action == Finish(RunState.COMPLETED)
        assert provider.describe_follow_up(run, view=None) == []  # type: ignore[arg-type]  # likewise

    def test_scheduling_is_not_supported_yet(self, provider: AriaProvider) -> None:
        chosen = provider.choose_scheduled({"cycle": "monthly"})
        assert chosen.selector is None
        assert chosen.reason is not None
        assert "cannot be scheduled yet" in chosen.reason

    def test_check_signs_in_and_reads_one_record(
        self, provider: AriaProvider, state: AriaState, wire: Wire, calls: list[ApiCall]
    ) -> None:
        line = provider.check()
        assert line.startswith(f"Aria client {CLIENT_NO} at https://aria.test: signed in")
        assert AUTH_KEY not in line
        assert AUTH_KEY not in repr(provider)
        assert wire.bodies[-1]["limit"] == 1
        assert all(AUTH_KEY not in repr(call) for call in calls)

    def test_summary(self, provider: AriaProvider, run: Run, corrections: Path) -> None:
        summary = provider.summarize(run)
        assert summary["bill_date"] == "2025-10-01"
        assert summary["corrections"] == f"{corrections} (3 rows)"
        assert summary["comments"] == f"rebill run {run.id}"


def test_the_auth_key_stays_out_of_what_is_stored(provider: AriaProvider, run: Run) -> None:
    stored = json.dumps([dict(run.selection.selector), dict(run.provider_options), dict(run.provider_state)])
    assert AUTH_KEY not in stored
