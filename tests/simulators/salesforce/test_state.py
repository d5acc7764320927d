"""The org's rules with no HTTP: seeding, the void and generate walks, recover, tokens, usage, paging.

The clock is moved by hand (`clock.advance`), so every intermediate status of a walk is observed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import partial
from typing import TypedDict, Unpack

import pytest

from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.state import (
    GenerateRequest,
    Invoice,
    OAuthError,
    SalesforceError,
    SalesforceState,
    SeededRun,
    id18,
)
from tests.simulators.salesforce.helpers import CLIENT_ID, CLIENT_SECRET, FakeClock

PREFIX = "/services/data/v62.0"
DAY = date(2025, 12, 1)


class GenerateChanges(TypedDict, total=False):
    """What a test changes in the request `generate` writes."""

    action: str
    correlation_id: str | None


def generate(schedule_ids: list[str], **changes: Unpack[GenerateChanges]) -> GenerateRequest:
    written = GenerateRequest(
        billing_schedule_ids=tuple(schedule_ids),
        action="Posted",
        invoice_date=DAY,
        target_date=DAY,
        correlation_id="run-1/generate/0001",
    )
    return replace(written, **changes)


def schedules_of(invoice: Invoice) -> list[str]:
    return [line.schedule_id for line in invoice.lines]


def refusal(call: Callable[[], object]) -> SalesforceError:
    with pytest.raises(SalesforceError) as refused:
        call()
    return refused.value


def contract_verdict(state: SalesforceState, invoice: Invoice) -> str | None:
    """The contract's eligibility rules, applied to what the state holds (an independent reading)."""
    if invoice.status != "Posted":
        return "not_posted"
    if invoice.net_payments != 0:
        return "paid"
    if invoice.net_credits != 0:
        return "credited"
    if invoice.balance != invoice.total_with_tax:
        return "balance_mismatch"
    for schedule_id in schedules_of(invoice):
        for other in state.invoices_on_schedule(schedule_id):
            if (
                other is not invoice
                and other.status in ("Posted", "Void In Progress")
                and other.posted_date is not None
                and invoice.posted_date is not None
                and other.posted_date > invoice.posted_date
            ):
                return "not_latest_on_schedule"
    return None


@pytest.fixture
def run(state: SalesforceState) -> SeededRun:
    return state.seed_run(invoices=60, seed=11)


def eligible(state: SalesforceState, run: SeededRun, n: int = 0) -> Invoice:
    return state.invoice(run.eligible_ids[n])


def voided(state: SalesforceState, clock: FakeClock, run: SeededRun, n: int = 0) -> Invoice:
    invoice = eligible(state, run, n)
    state.void(invoice.id)
    clock.advance(2)
    assert state.invoice(invoice.id).status == "Voided"
    return invoice


class TestSeeding:
    def test_same_arguments_same_run(self) -> None:
        first, second = SalesforceState(), SalesforceState()
        a, b = first.seed_run(40, 3), second.seed_run(40, 3)
        assert a == b
        assert [first.invoice(i).dump() for i in a.invoice_ids] == [second.invoice(i).dump() for i in b.invoice_ids]

    def test_another_seed_another_run_and_seeding_again_adds_one(self, state: SalesforceState) -> None:
        a = state.seed_run(20, 1)
        b = state.seed_run(20, 2)
        assert a.invoice_batch_run_id != b.invoice_batch_run_id
        assert not set(a.invoice_ids) & set(b.invoice_ids)

    def test_every_skip_reason_is_there_and_most_are_eligible(self, state: SalesforceState, run: SeededRun) -> None:
        reasons = Counter(run.expected.values())
        assert set(reasons) == {None, "paid", "credited", "balance_mismatch", "not_latest_on_schedule", "not_posted"}
        assert reasons[None] > len(run.invoice_ids) * 0.7
        assert len(run.invoice_ids) == 60

    def test_the_verdicts_follow_from_the_data(self, state: SalesforceState, run: SeededRun) -> None:
        for invoice_id, expected in run.expected.items():
            assert contract_verdict(state, state.invoice(invoice_id)) == expected, invoice_id

    def test_shape_of_the_run(self, state: SalesforceState, run: SeededRun) -> None:
        invoices = [state.invoice(i) for i in run.invoice_ids]
        assert {i.batch_run_id for i in invoices} == {run.invoice_batch_run_id}
        assert len({i.billing_account_id for i in invoices}) == len(invoices)
        assert {len(i.lines) for i in invoices} == {1, 2, 3}
        for invoice in invoices:
            assert invoice.total_with_tax == invoice.total_amount + sum(line.tax for line in invoice.lines)
            for amount in (
                invoice.total_amount,
                invoice.total_with_tax,
                invoice.balance,
                *(line.amount for line in invoice.lines),
            ):
                assert isinstance(amount, Decimal)
                assert amount.as_tuple().exponent == -2
            for schedule_id in schedules_of(invoice):
                assert state.schedule(schedule_id).billing_account_id == invoice.billing_account_id
                assert state.schedule(schedule_id).status == "ReadyForInvoicing"

    def test_ids_are_18_characters_with_their_checksum(self, state: SalesforceState, run: SeededRun) -> None:
        invoice = state.invoice(run.invoice_ids[0])
        for value in (invoice.id, invoice.billing_account_id, run.invoice_batch_run_id, *schedules_of(invoice)):
            assert len(value) == 18
            assert id18(value[:15]) == value
        assert id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"  # a well-known Salesforce id

    def test_older_paid_invoices_sit_on_the_same_schedules(self, state: SalesforceState, run: SeededRun) -> None:
        older = [
            other
            for invoice_id in run.invoice_ids
            for other in state.invoices_on_schedule(schedules_of(state.invoice(invoice_id))[0])
            if other.batch_run_id == run.other_run_ids[0]
        ]
        assert older
        run_posted = state.invoice(run.invoice_ids[0]).posted_date
        assert run_posted is not None
        for invoice in older:
            assert invoice.status == "Posted"
            assert invoice.balance == 0
            assert invoice.net_payments == invoice.total_with_tax
            assert invoice.posted_date is not None
            assert invoice.posted_date < run_posted

    def test_voided_ones_were_rebilled_outside_any_run(self, state: SalesforceState, run: SeededRun) -> None:
        for invoice_id in (i for i, reason in run.expected.items() if reason == "not_posted"):
            invoice = state.invoice(invoice_id)
            assert (invoice.status, invoice.balance, invoice.net_credits) == (
                "Voided",
                Decimal("0"),
                invoice.total_with_tax,
            )
            rebills = [
                other
                for other in state.invoices_on_schedule(schedules_of(invoice)[0])
                if other.batch_run_id is None and other.status == "Posted"
            ]
            assert len(rebills) == 1


class TestVoid:
    def test_walks_posted_void_in_progress_voided(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice = eligible(state, run)
        total = invoice.total_with_tax
        billed = {s: state.schedule(s).billed_amount for s in schedules_of(invoice)}
        request_id = state.void(invoice.id)
        assert len(request_id) == 36
        assert state.invoice(invoice.id).status == "Void In Progress"
        clock.advance(1.9)
        assert state.invoice(invoice.id).status == "Void In Progress"
        clock.advance(0.2)
        state.advance()  # every operation applies the due steps first; reading the object itself does not
        assert (invoice.status, invoice.balance, invoice.net_credits) == ("Voided", Decimal("0"), total)
        for line in invoice.lines:
            schedule = state.schedule(line.schedule_id)
            assert schedule.billed_amount == billed[schedule.id] - line.amount
            assert schedule.unbilled == [line]
            assert schedule.status == "ReadyForInvoicing"
        assert state.counters()["voids"] == {invoice.id: 1}

    @pytest.mark.parametrize("reason", ["paid", "credited", "balance_mismatch", "not_latest_on_schedule", "not_posted"])
    def test_refuses_what_is_not_eligible(self, state: SalesforceState, run: SeededRun, reason: str) -> None:
        invoice_id = next(i for i, r in run.expected.items() if r == reason)
        before = state.invoice(invoice_id).dump()
        refused = refusal(lambda: state.void(invoice_id))
        assert (refused.status, refused.error_code) == (400, "INVALID_INPUT")
        assert state.invoice(invoice_id).dump() == before
        assert state.counters()["ineligible_void_attempts"] == 1
        assert state.counters()["duplicate_void_attempts"] == 0

    def test_unknown_invoice_is_not_found(self, state: SalesforceState, run: SeededRun) -> None:
        refused = refusal(lambda: state.void("3tt5g0000000000AAA"))
        assert (refused.status, refused.error_code) == (404, "NOT_FOUND")

    def test_a_second_void_is_refused_and_counted_as_duplicate(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice = eligible(state, run)
        state.void(invoice.id)
        assert refusal(lambda: state.void(invoice.id)).error_code == "INVALID_INPUT"  # Void In Progress
        clock.advance(5)
        assert refusal(lambda: state.void(invoice.id)).error_code == "INVALID_INPUT"  # Voided
        counters = state.counters()
        assert (counters["voids"], counters["duplicate_void_attempts"]) == ({invoice.id: 1}, 2)

    def test_a_payment_after_planning_makes_it_refused(self, state: SalesforceState, run: SeededRun) -> None:
        invoice = eligible(state, run)
        state.apply_payment(invoice.id, Decimal("1.00"))
        assert "balance" in refusal(lambda: state.void(invoice.id)).message.lower()

    def test_once_the_later_invoice_is_voided_the_earlier_one_is_latest(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice_id = next(i for i, r in run.expected.items() if r == "not_latest_on_schedule")
        schedule_id = schedules_of(state.invoice(invoice_id))[0]
        later = next(i for i in state.invoices_on_schedule(schedule_id) if i.batch_run_id == run.other_run_ids[1])
        state.void(later.id)
        assert refusal(lambda: state.void(invoice_id)).error_code == "INVALID_INPUT"  # later one Void In Progress
        clock.advance(2)
        state.void(invoice_id)
        assert state.invoice(invoice_id).status == "Void In Progress"


class TestGenerate:
    def test_voided_schedules_make_one_invoice_per_account(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        first, second = voided(state, clock, run, 0), voided(state, clock, run, 1)
        ids = schedules_of(first) + schedules_of(second)
        state.generate(generate(ids))
        assert {state.schedule(s).status for s in ids} == {"Processing"}
        clock.advance(2.9)
        assert {state.schedule(s).status for s in ids} == {"Processing"}
        clock.advance(0.2)
        assert {state.schedule(s).status for s in ids} == {"ReadyForInvoicing"}
        for old in (first, second):
            [new] = [i for i in state.invoices_on_schedule(schedules_of(old)[0]) if i.seq > old.seq]
            assert new.status == "Posted"
            assert new.batch_run_id is None
            assert new.billing_account_id == old.billing_account_id
            assert sorted(schedules_of(new)) == sorted(schedules_of(old))
            assert (new.total_amount, new.total_with_tax, new.balance) == (
                old.total_amount,
                old.total_with_tax,
                old.total_with_tax,
            )
            assert new.invoice_date == DAY
            assert new.posted_date is not None
        counters = state.counters()
        assert counters["invoices_per_regenerated_schedule"] == dict.fromkeys(ids, 1)
        assert counters["generate_calls"][0]["correlationId"] == "run-1/generate/0001"
        assert counters["generate_calls"][0]["processing"] == ids

    def test_rebills_are_not_in_the_run(self, state: SalesforceState, clock: FakeClock, run: SeededRun) -> None:
        invoice = voided(state, clock, run)
        state.generate(generate(schedules_of(invoice)))
        clock.advance(3)
        page = state.query(f"SELECT Id FROM Invoice WHERE InvoiceBatchRunId = '{run.invoice_batch_run_id}'", PREFIX)
        assert page.total_size == 60

    def test_nothing_unbilled_is_skipped_and_a_second_generate_is_a_duplicate(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        done = voided(state, clock, run, 0)
        in_progress = eligible(state, run, 1)
        state.void(in_progress.id)
        untouched = eligible(state, run, 2)
        state.generate(generate(schedules_of(done)))
        state.generate(generate(schedules_of(done) + schedules_of(in_progress) + schedules_of(untouched)))  # Processing
        clock.advance(3)
        state.generate(generate(schedules_of(done)))  # regenerated already
        counters = state.counters()
        assert counters["invoices_per_regenerated_schedule"] == dict.fromkeys(schedules_of(done), 1)
        assert counters["duplicate_generates"] == 2 * len(schedules_of(done))
        assert counters["generate_calls"][1]["processing"] == []
        assert state.schedule(schedules_of(untouched)[0]).status == "ReadyForInvoicing"

    def test_draft_action(self, state: SalesforceState, clock: FakeClock, run: SeededRun) -> None:
        invoice = voided(state, clock, run)
        state.generate(generate(schedules_of(invoice), action="Draft"))
        clock.advance(3)
        [new] = [i for i in state.invoices_on_schedule(schedules_of(invoice)[0]) if i.seq > invoice.seq]
        assert (new.status, new.posted_date) == ("Draft", None)

    @pytest.mark.parametrize(
        ("ids", "fields"),
        [
            ([], {}),
            (["dup", "dup"], {}),
            (["unknown"], {}),
            (None, {"action": "Pending"}),
            (None, {"correlation_id": "x" * 256}),
        ],
    )
    def test_whole_call_refusals_apply_nothing(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun, ids: list[str] | None, fields: GenerateChanges
    ) -> None:
        invoice = voided(state, clock, run)
        named = schedules_of(invoice)
        if ids == ["dup", "dup"]:
            named = [named[0], named[0]]
        elif ids == ["unknown"]:
            named = [*named, "44b5g0000000000AAA"]
        elif ids == []:
            named = []
        refused = refusal(lambda: state.generate(generate(named, **fields)))
        assert (refused.status, refused.error_code) == (400, "INVALID_INPUT")
        assert {state.schedule(s).status for s in schedules_of(invoice)} == {"ReadyForInvoicing"}
        assert state.counters()["generate_calls"] == []

    def test_more_than_200_schedules_are_refused(self, state: SalesforceState) -> None:
        ids = list(state.seed_run(150, 2).billing_schedule_ids[:201])
        assert len(ids) == 201
        assert refusal(lambda: state.generate(generate(ids))).error_code == "INVALID_INPUT"

    def test_listed_schedules_end_in_error_with_their_invoice(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice = voided(state, clock, run)
        state.faults.update(error_schedules=[schedules_of(invoice)[0]])
        state.generate(generate(schedules_of(invoice)))
        clock.advance(3)
        [new] = [i for i in state.invoices_on_schedule(schedules_of(invoice)[0]) if i.seq > invoice.seq]
        assert new.status == "Error"
        assert {state.schedule(s).status for s in schedules_of(invoice)} == {"Error"}
        assert state.counters()["faults"] == {"schedule_error": 1}


class TestRecover:
    @pytest.fixture
    def in_error(self, state: SalesforceState, clock: FakeClock, run: SeededRun) -> Invoice:
        invoice = next(state.invoice(i) for i in run.eligible_ids if len(state.invoice(i).lines) >= 2)
        state.void(invoice.id)
        clock.advance(2)
        state.faults.update(error_schedules=schedules_of(invoice))
        state.generate(generate(schedules_of(invoice)))
        clock.advance(3)
        state.faults.update(error_schedules=[])
        [new] = [i for i in state.invoices_on_schedule(schedules_of(invoice)[0]) if i.seq > invoice.seq]
        assert new.status == "Error"
        return new

    def test_finishes_the_invoice_and_all_its_schedules(self, state: SalesforceState, in_error: Invoice) -> None:
        first, *others = schedules_of(in_error)
        result = state.recover([first])
        assert result == {
            "invoiceId": in_error.id,
            "invoiceStatus": "Posted",
            "success": True,
            "invoiceErrors": [],
            "billingSchedules": [
                {"billingScheduleId": s, "billingScheduleStatus": "ReadyForInvoicing"} for s in schedules_of(in_error)
            ],
        }
        assert in_error.status == "Posted"
        assert refusal(lambda: state.recover([others[0]])).error_code == "INVALID_INPUT"  # nothing left in error
        assert state.counters()["recoveries"] == [
            {"billingScheduleId": first, "invoiceId": in_error.id, "success": True}
        ]

    def test_a_failing_recovery_leaves_it_in_error(self, state: SalesforceState, in_error: Invoice) -> None:
        state.faults.update(p_recover_error=1.0)
        result = state.recover([schedules_of(in_error)[0]])
        assert (result["success"], result["invoiceStatus"]) == (False, "Error")
        assert result["invoiceErrors"][0]["errorCode"]
        assert state.schedule(schedules_of(in_error)[0]).status == "Error"

    def test_a_processing_schedule_is_finished_now_and_only_once(
        self, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice = voided(state, clock, run)
        state.generate(generate(schedules_of(invoice)))
        result = state.recover([schedules_of(invoice)[0]])
        assert result["invoiceStatus"] == "Posted"
        clock.advance(3)
        assert state.counters()["invoices_per_regenerated_schedule"] == dict.fromkeys(schedules_of(invoice), 1)

    @pytest.mark.parametrize("how", ["idle", "two", "none", "unknown"])
    def test_refusals(self, state: SalesforceState, run: SeededRun, how: str) -> None:
        schedule_ids = list(run.billing_schedule_ids[:2])
        ids = {"idle": schedule_ids[:1], "two": schedule_ids, "none": [], "unknown": ["44b5g0000000000AAA"]}[how]
        refused = refusal(lambda: state.recover(ids))
        assert (refused.status, refused.error_code) == (400, "INVALID_INPUT")


class TestTokens:
    def test_client_credentials(self, state: SalesforceState) -> None:
        token, issued_at = state.issue_token(CLIENT_ID, CLIENT_SECRET)
        assert state.token_valid(token)
        assert not state.token_valid(token + "x")
        assert issued_at > 1_700_000_000_000  # epoch milliseconds

    @pytest.mark.parametrize(
        ("client_id", "secret", "error"),
        [("other", CLIENT_SECRET, "invalid_client_id"), (CLIENT_ID, "wrong", "invalid_client")],
    )
    def test_bad_credentials(self, state: SalesforceState, client_id: str, secret: str, error: str) -> None:
        with pytest.raises(OAuthError) as refused:
            state.issue_token(client_id, secret)
        assert refused.value.error == error

    def test_a_session_lives_until_its_ttl_or_until_expired(self, state: SalesforceState, clock: FakeClock) -> None:
        forever, _ = state.issue_token(CLIENT_ID, CLIENT_SECRET)
        state.faults.update(token_ttl_seconds=60)
        short, _ = state.issue_token(CLIENT_ID, CLIENT_SECRET)
        clock.advance(61)
        assert state.token_valid(forever)
        assert not state.token_valid(short)
        assert state.expire_tokens() == 2
        assert not state.token_valid(forever)


class TestUsage:
    def test_counts_until_the_allocation_then_refuses_without_counting(self, clock: FakeClock) -> None:
        state = SalesforceState(faults=SalesforceFaults(daily_allocation=3, usage_window_seconds=100), clock=clock)
        assert [state.count_request().used for _ in range(3)] == [1, 2, 3]
        refused = refusal(state.count_request)
        assert (refused.status, refused.error_code, refused.message) == (
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
        assert state.usage().header() == "api-usage=3/3"
        clock.advance(101)  # the rolling window forgets them
        assert state.count_request().used == 1
        assert state.counters()["faults"] == {"403_total_requests": 1}

    def test_set_usage(self, state: SalesforceState) -> None:
        state.set_usage(99_999)
        assert state.count_request().header() == "api-usage=100000/100000"
        assert refusal(state.count_request).status == 403


class TestQuery:
    def test_pages_follow_the_page_size_and_locators_until_done(self, state: SalesforceState, run: SeededRun) -> None:
        state.faults.update(page_size=25)
        page = state.query(f"SELECT Id FROM Invoice WHERE InvoiceBatchRunId = '{run.invoice_batch_run_id}'", PREFIX)
        seen = [r["Id"] for r in page.records]
        sizes = [len(page.records)]
        while page.next_locator is not None:
            page = state.query_more(page.next_locator)
            seen += [r["Id"] for r in page.records]
            sizes.append(len(page.records))
        assert sizes == [25, 25, 10]
        assert sorted(seen) == sorted(run.invoice_ids)
        assert page.done
        assert page.total_size == 60

    def test_a_locator_is_a_snapshot(self, state: SalesforceState, clock: FakeClock, run: SeededRun) -> None:
        state.faults.update(page_size=10)
        text = f"SELECT Id, Status FROM Invoice WHERE InvoiceBatchRunId = '{run.invoice_batch_run_id}' ORDER BY Id"
        first = state.query(text, PREFIX)
        on_second_page = next(i for i in sorted(run.invoice_ids)[10:20] if run.expected[i] is None)
        state.void(on_second_page)
        clock.advance(2)
        second = state.query_more(first.next_locator or "")
        assert next(r for r in second.records if r["Id"] == on_second_page)["Status"] == "Posted"
        state.faults.update(page_size=200)
        again = state.query(text, PREFIX)
        assert next(r for r in again.records if r["Id"] == on_second_page)["Status"] == "Voided"

    def test_an_idle_locator_expires(self, state: SalesforceState, clock: FakeClock, run: SeededRun) -> None:
        state.faults.update(page_size=10)
        page = state.query("SELECT Id FROM Invoice", PREFIX)
        clock.advance(899)
        page = state.query_more(page.next_locator or "")  # using it keeps it alive
        clock.advance(899)
        page = state.query_more(page.next_locator or "")
        clock.advance(901)
        refused = refusal(lambda: state.query_more(page.next_locator or ""))
        assert (refused.status, refused.error_code) == (400, "INVALID_QUERY_LOCATOR")

    def test_expire_locators_and_bad_locators(self, state: SalesforceState, run: SeededRun) -> None:
        state.faults.update(page_size=10)
        page = state.query("SELECT Id FROM Invoice", PREFIX)
        locator = page.next_locator or ""
        cursor = locator.rpartition("-")[0]
        for bad in (f"{cursor}-0", f"{cursor}-99999", f"{cursor}-x", "01g5g0000000000AAA-10", "nonsense"):
            assert refusal(partial(state.query_more, bad)).error_code == "INVALID_QUERY_LOCATOR"
        assert state.query_more(locator).records
        assert state.expire_locators() == 1
        assert refusal(lambda: state.query_more(locator)).error_code == "INVALID_QUERY_LOCATOR"

    def test_count_and_limit(self, state: SalesforceState, run: SeededRun) -> None:
        state.faults.update(page_size=10)
        counted = state.query(
            f"SELECT COUNT() FROM Invoice WHERE InvoiceBatchRunId = '{run.invoice_batch_run_id}'", PREFIX
        )
        assert (counted.total_size, counted.records, counted.done) == (60, [], True)
        limited = state.query("SELECT Id FROM Invoice ORDER BY Id LIMIT 15", PREFIX)
        assert limited.total_size == 15
        assert state.query_more(limited.next_locator or "").done

    def test_refusals_become_the_orgs_errors(self, state: SalesforceState) -> None:
        refused = refusal(lambda: state.query("SELECT Id FROM Account", PREFIX))
        assert (refused.status, refused.error_code) == (400, "INVALID_TYPE")
