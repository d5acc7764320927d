"""gen_rb_m's rules, the object query and the history, straight on the state (no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import TypedDict, Unpack

import pytest

from simulators.aria.seeding import SeededRun
from simulators.aria.state import (
    FIRST_REBILL_NO,
    AccountRef,
    AriaError,
    AriaState,
    Condition,
    ErrorCode,
    HistoryRequest,
    Invoice,
    InvoiceQuery,
    QueryKey,
    RebillLine,
    RebillRequest,
    cents,
)
from tests.simulators.aria.conftest import AUTH_KEY, CLIENT_NO, TODAY


def charge_lines(invoice: Invoice) -> list[RebillLine]:
    return [RebillLine(line.line_no, line.service.service_no) for line in invoice.lines if not line.service.is_tax]


class RebillChanges(TypedDict, total=False):
    """What a test changes in the request `rebill_of` writes."""

    account: AccountRef
    orig_invoice_no: int
    reason_cd: int
    lines: tuple[RebillLine, ...]
    do_write: bool


def rebill_of(
    invoice: Invoice, lines: list[RebillLine] | None = None, /, **changes: Unpack[RebillChanges]
) -> RebillRequest:
    request = RebillRequest(
        account=AccountRef(invoice.account.acct_no),
        orig_invoice_no=invoice.invoice_no,
        reason_cd=2,
        lines=tuple(charge_lines(invoice) if lines is None else lines),
        comments="Rate correction, run R-42",
        alt_caller_id="rebill",
        qualifiers=(("run_id", "R-42"),),
    )
    return replace(request, **changes)


def refused(code: ErrorCode, call: Callable[..., object], *args: object) -> AriaError:
    with pytest.raises(AriaError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value.message
    return caught.value


@pytest.fixture
def open_invoice(state: AriaState, run: SeededRun) -> Invoice:
    """An eligible invoice with a tax line."""
    return next(state.invoices[n] for n in run.eligible if state.invoices[n].tax_rate is not None)


class TestAuthentication:
    def test_matching_credentials_pass(self, state: AriaState) -> None:
        state.authenticate(CLIENT_NO, AUTH_KEY)

    @pytest.mark.parametrize(
        ("client_no", "auth_key"),
        [(CLIENT_NO, "wrong"), (CLIENT_NO + 1, AUTH_KEY), (None, AUTH_KEY), (CLIENT_NO, None)],
    )
    def test_anything_else_is_1004(self, state: AriaState, client_no: int | None, auth_key: str | None) -> None:
        refused(ErrorCode.AUTHENTICATION, state.authenticate, client_no, auth_key)


class TestRebill:
    def test_writes_a_credit_memo_and_a_rebill_invoice_from_the_corrected_lines(
        self, state: AriaState, open_invoice: Invoice
    ) -> None:
        lines = charge_lines(open_invoice)
        first = open_invoice.lines[0]
        lines[0] = replace(lines[0], rate_per_unit=Decimal("0.125"), units=Decimal(37))
        old_amount = open_invoice.amount
        result = state.gen_rb_m(rebill_of(open_invoice, lines))
        assert result.invoice_no is not None
        assert result.invoice_no >= FIRST_REBILL_NO
        rebill = state.invoices[result.invoice_no]
        assert (rebill.invoice_type_cd, rebill.orig_invoice_no, rebill.bill_date) == (
            "R",
            open_invoice.invoice_no,
            open_invoice.bill_date,
        )
        assert rebill.lines[0].service == first.service
        assert rebill.lines[0].amount == Decimal("4.63")
        assert [(line.units, line.rate_per_unit) for line in rebill.lines[1:-1]] == [
            (line.units, line.rate_per_unit) for line in open_invoice.lines[1:] if not line.service.is_tax
        ]
        charges = sum((line.amount for line in rebill.lines if not line.service.is_tax), Decimal(0))
        assert rebill.lines[-1].service.is_tax
        assert open_invoice.tax_rate is not None
        assert rebill.lines[-1].amount == cents(charges * open_invoice.tax_rate)
        assert rebill.amount == result.preview.amount == charges + rebill.lines[-1].amount
        assert (rebill.created_by, rebill.qualifiers, rebill.created_date) == ("rebill", (("run_id", "R-42"),), TODAY)
        assert (open_invoice.rb_no, open_invoice.credit, open_invoice.total_due) == (
            rebill.invoice_no,
            old_amount,
            Decimal("0"),
        )
        assert open_invoice.rebilled
        assert not open_invoice.eligible
        counters = state.counters()
        assert counters["rebills"] == {str(open_invoice.invoice_no): 1}
        assert (counters["gen_rb_m_calls"], counters["duplicate_attempts"], counters["ineligible_attempts"]) == (
            1,
            0,
            0,
        )

    def test_a_line_left_out_is_not_rebilled_and_marked_excluded(self, state: AriaState, open_invoice: Invoice) -> None:
        kept = charge_lines(open_invoice)[:1]
        result = state.gen_rb_m(rebill_of(open_invoice, kept))
        assert result.invoice_no is not None
        rebill = state.invoices[result.invoice_no]
        assert [line.service for line in rebill.lines if not line.service.is_tax] == [open_invoice.lines[0].service]
        excluded = [line.line_no for line in open_invoice.lines if line.rb_excluded]
        assert excluded == [line.line_no for line in open_invoice.lines[1:] if not line.service.is_tax]

    def test_lines_named_by_client_service_id(self, state: AriaState, open_invoice: Invoice) -> None:
        lines = [
            RebillLine(line.line_no, client_service_id=line.service.client_service_id)
            for line in open_invoice.lines
            if not line.service.is_tax
        ]
        assert state.gen_rb_m(rebill_of(open_invoice, lines)).invoice_no is not None

    def test_a_second_rebill_is_refused_with_3097_and_counted(self, state: AriaState, open_invoice: Invoice) -> None:
        first = state.gen_rb_m(rebill_of(open_invoice))
        error = refused(ErrorCode.ALREADY_REBILLED, state.gen_rb_m, rebill_of(open_invoice))
        assert str(first.invoice_no) in error.message
        counters = state.counters()
        assert counters["rebills"] == {str(open_invoice.invoice_no): 1}
        assert (counters["duplicate_attempts"], counters["gen_rb_m_calls"]) == (1, 2)

    def test_a_voided_invoice_is_refused_with_2003_and_counted(self, state: AriaState, run: SeededRun) -> None:
        voided = state.invoices[run.voided[0]]
        refused(ErrorCode.VOIDED, state.gen_rb_m, rebill_of(voided))
        assert voided.rb_no is None
        assert (state.counters()["ineligible_attempts"], state.counters()["rebills_total"]) == (1, 0)

    def test_a_paid_invoice_is_rebilled_but_counted_as_ineligible(self, state: AriaState, run: SeededRun) -> None:
        for number in (run.paid[0], run.part_paid[0]):
            assert state.gen_rb_m(rebill_of(state.invoices[number])).invoice_no is not None
        assert (state.counters()["ineligible_attempts"], state.counters()["rebills_total"]) == (2, 2)

    def test_a_rebill_invoice_counts_as_ineligible(self, state: AriaState, run: SeededRun) -> None:
        state.gen_rb_m(rebill_of(state.invoices[run.rebill_invoice_nos[0]]))
        assert state.counters()["ineligible_attempts"] == 1

    def test_a_dry_run_answers_the_same_and_changes_nothing(self, state: AriaState, open_invoice: Invoice) -> None:
        lines = charge_lines(open_invoice)
        lines[0] = replace(lines[0], rate_per_unit=Decimal("1.005"))
        before = state.dump_invoices()
        dry = state.gen_rb_m(rebill_of(open_invoice, lines, do_write=False))
        assert dry.invoice_no is None
        assert state.dump_invoices() == before
        written = state.gen_rb_m(rebill_of(open_invoice, lines))
        assert written.preview.amount == dry.preview.amount
        assert written.invoice_no == max(n for n in state.invoices if n != written.invoice_no) + 1  # no number used
        counters = state.counters()
        assert (counters["dry_run_calls"], counters["gen_rb_m_calls"], counters["rebills_total"]) == (1, 2, 1)

    def test_a_dry_run_of_a_rebilled_invoice_is_refused_but_not_counted_as_duplicate(
        self, state: AriaState, run: SeededRun
    ) -> None:
        refused(ErrorCode.ALREADY_REBILLED, state.gen_rb_m, rebill_of(state.invoices[run.rebilled[0]], do_write=False))
        assert state.counters()["duplicate_attempts"] == 0

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"reason_cd": 99}, ErrorCode.INVALID_REASON),
            ({"orig_invoice_no": 1}, ErrorCode.NO_INVOICE),
            ({"account": AccountRef(1)}, ErrorCode.NO_ACCOUNT),
            ({"account": AccountRef()}, ErrorCode.MISSING_PARAMETER),
            ({"lines": (RebillLine(99, 10001),)}, ErrorCode.INVALID_INPUT),
        ],
    )
    def test_refusals(self, state: AriaState, open_invoice: Invoice, change: RebillChanges, code: ErrorCode) -> None:
        refused(code, state.gen_rb_m, rebill_of(open_invoice, **change))
        assert open_invoice.rb_no is None

    def test_an_invoice_of_another_account_is_3004(
        self, state: AriaState, run: SeededRun, open_invoice: Invoice
    ) -> None:
        other = next(state.invoices[n] for n in run.eligible if state.invoices[n].account != open_invoice.account)
        refused(
            ErrorCode.NO_INVOICE, state.gen_rb_m, rebill_of(open_invoice, account=AccountRef(other.account.acct_no))
        )

    def test_lines_out_of_order_are_1016(self, state: AriaState, open_invoice: Invoice) -> None:
        refused(
            ErrorCode.INVALID_INPUT, state.gen_rb_m, rebill_of(open_invoice, list(reversed(charge_lines(open_invoice))))
        )

    def test_a_tax_line_is_1016(self, state: AriaState, open_invoice: Invoice) -> None:
        tax = next(line for line in open_invoice.lines if line.service.is_tax)
        lines = [*charge_lines(open_invoice), RebillLine(tax.line_no, tax.service.service_no)]
        error = refused(ErrorCode.INVALID_INPUT, state.gen_rb_m, rebill_of(open_invoice, lines))
        assert "tax" in error.message

    def test_a_wrong_service_is_1016(self, state: AriaState, open_invoice: Invoice) -> None:
        lines = charge_lines(open_invoice)
        service_no = lines[0].service_no
        assert service_no is not None
        lines[0] = replace(lines[0], service_no=service_no + 1)
        refused(ErrorCode.INVALID_INPUT, state.gen_rb_m, rebill_of(open_invoice, lines))


class TestBillingGroup:
    @pytest.fixture
    def two(self, state: AriaState, run: SeededRun) -> tuple[Invoice, Invoice]:
        account = state.invoices[run.eligible[0]].account
        first, second = [state.invoices[n] for n in run.eligible if state.invoices[n].account == account][:2]
        return first, second

    def test_a_write_arriving_on_a_held_group_is_3108(self, state: AriaState, two: tuple[Invoice, Invoice]) -> None:
        first, second = two
        holder = state.arrive(AccountRef(first.account.acct_no))
        later = state.arrive(AccountRef(second.account.acct_no))
        assert holder is not None
        assert later is not None
        assert (holder.busy, later.busy) == (False, True)
        state.leave(later)  # a busy arrival holds nothing: the group stays with the first
        refused(ErrorCode.BILLING_GROUP_BUSY, state.gen_rb_m, rebill_of(second), later)
        assert second.rb_no is None
        assert state.gen_rb_m(rebill_of(first), holder).invoice_no is not None
        state.leave(holder)
        again = state.arrive(AccountRef(second.account.acct_no))
        assert again is not None
        assert not again.busy
        assert state.gen_rb_m(rebill_of(second), again).invoice_no is not None
        state.leave(again)
        counters = state.counters()
        assert (counters["busy_refusals"], counters["rebills_total"]) == (1, 2)

    def test_without_an_arrival_any_write_in_progress_makes_it_busy(
        self, state: AriaState, two: tuple[Invoice, Invoice]
    ) -> None:
        first, second = two
        arrival = state.arrive(AccountRef(first.account.acct_no))
        assert arrival is not None
        refused(ErrorCode.BILLING_GROUP_BUSY, state.gen_rb_m, rebill_of(second))
        state.leave(arrival)
        assert state.gen_rb_m(rebill_of(second)).invoice_no is not None

    def test_other_groups_and_dry_runs_are_not_held_up(
        self, state: AriaState, run: SeededRun, two: tuple[Invoice, Invoice]
    ) -> None:
        first, second = two
        other = next(state.invoices[n] for n in run.eligible if state.invoices[n].account != first.account)
        arrival = state.arrive(AccountRef(first.account.acct_no))
        assert arrival is not None
        assert state.gen_rb_m(rebill_of(other)).invoice_no is not None
        assert state.gen_rb_m(rebill_of(second, do_write=False)).invoice_no is None
        state.leave(arrival)

    def test_an_unknown_account_arrives_nowhere(self, state: AriaState) -> None:
        assert state.arrive(AccountRef(1)) is None


class TestQuery:
    RUN = (Condition("bill_date", date(2025, 10, 1)), Condition("invoice_type_cd", "R", negated=True))

    def test_a_bill_run_without_rebill_invoices_in_number_order(self, state: AriaState, run: SeededRun) -> None:
        page, total = state.query_invoices(InvoiceQuery(self.RUN), 0, 1000)
        assert total == len(run.invoice_nos)
        assert [i.invoice_no for i in page] == list(run.invoice_nos)

    def test_rebill_invoices_share_the_bill_date(self, state: AriaState, run: SeededRun) -> None:
        _, total = state.query_invoices(InvoiceQuery(self.RUN[:1]), 0, 1000)
        assert total == len(run.invoice_nos) + len(run.rebill_invoice_nos)

    def test_pages_by_offset(self, state: AriaState, run: SeededRun) -> None:
        seen: list[int] = []
        offset = 0
        while True:
            page, total = state.query_invoices(InvoiceQuery(self.RUN), offset, 7)
            if not page:
                break
            seen += [i.invoice_no for i in page]
            offset += len(page)
        assert seen == list(run.invoice_nos)
        assert total == len(seen)

    def test_descending_and_count_only(self, state: AriaState, run: SeededRun) -> None:
        page, _ = state.query_invoices(InvoiceQuery(self.RUN, descending=True), 0, 3)
        assert [i.invoice_no for i in page] == list(reversed(run.invoice_nos))[:3]
        assert state.query_invoices(InvoiceQuery(self.RUN), 0, None) == ([], len(run.invoice_nos))

    @pytest.mark.parametrize("key", ["acct_no", "invoice_no", "client_acct_id"])
    def test_each_key_selects_like_a_full_scan(self, state: AriaState, run: SeededRun, key: QueryKey) -> None:
        invoice = state.invoices[run.eligible[3]]
        value = {"acct_no": invoice.account.acct_no, "invoice_no": invoice.invoice_no}.get(
            key, invoice.account.client_acct_id
        )
        for negated in (False, True):
            condition = Condition(key, value, negated)
            page, total = state.query_invoices(InvoiceQuery((condition,)), 0, 10_000)
            expected = [
                i.invoice_no for i in sorted(state.invoices.values(), key=lambda i: i.invoice_no) if condition(i)
            ]
            assert [i.invoice_no for i in page] == expected
            assert total == len(expected)

    def test_an_older_bill_date(self, state: AriaState, run: SeededRun) -> None:
        page, _ = state.query_invoices(InvoiceQuery((Condition("bill_date", run.older_bill_date),)), 0, 1000)
        assert [i.invoice_no for i in page] == list(run.older_invoice_nos)


class TestHistory:
    def test_an_accounts_invoices_without_voided_ones(self, state: AriaState, run: SeededRun) -> None:
        voided = state.invoices[run.voided[0]]
        account = AccountRef(voided.account.acct_no)
        rows = state.history(HistoryRequest(account))
        assert voided not in rows
        assert all(row.account == voided.account for row in rows)
        assert voided in state.history(HistoryRequest(account, include_voided=True))

    def test_shows_a_rebill_both_ways(self, state: AriaState, open_invoice: Invoice) -> None:
        result = state.gen_rb_m(rebill_of(open_invoice))
        rows = state.history(HistoryRequest(AccountRef(client_acct_id=open_invoice.account.client_acct_id)))
        by_no = {row.invoice_no: row for row in rows}
        assert by_no[open_invoice.invoice_no].rb_no == result.invoice_no
        assert result.invoice_no is not None
        assert by_no[result.invoice_no].orig_invoice_no == open_invoice.invoice_no
        only_rebilled = state.history(HistoryRequest(AccountRef(open_invoice.account.acct_no), rb_option=2))
        assert [row.invoice_no for row in only_rebilled] == [open_invoice.invoice_no]
        originals = state.history(HistoryRequest(AccountRef(open_invoice.account.acct_no), rb_option=1))
        assert result.invoice_no not in [row.invoice_no for row in originals]

    def test_bill_date_range(self, state: AriaState, run: SeededRun) -> None:
        acct = AccountRef(run.acct_nos[0])
        rows = state.history(
            HistoryRequest(acct, start_bill_date=run.older_bill_date, end_bill_date=run.older_bill_date)
        )
        assert {row.bill_date for row in rows} == {run.older_bill_date}

    def test_unknown_account_is_1009(self, state: AriaState) -> None:
        refused(ErrorCode.NO_ACCOUNT, state.history, HistoryRequest(AccountRef(1)))


class TestDetails:
    def test_on_the_wrong_account_is_3004(self, state: AriaState, run: SeededRun) -> None:
        invoice = state.invoices[run.eligible[0]]
        other = next(a for a in run.acct_nos if a != invoice.account.acct_no)
        assert state.invoice(invoice.invoice_no, AccountRef(invoice.account.acct_no)) is invoice
        refused(ErrorCode.NO_INVOICE, state.invoice, invoice.invoice_no, AccountRef(other))
        refused(ErrorCode.NO_INVOICE, state.invoice, 1)


class TestCounters:
    def test_traffic_error_codes_faults_and_reset(self, state: AriaState) -> None:
        state.traffic.started("gen_rb_m")
        state.traffic.started("gen_rb_m")
        state.traffic.finished(200)
        state.answered(0)
        state.faults.update(p_busy=1.0)
        state.faults.rebill_fault()
        counters = state.counters()
        assert (counters["peak_concurrency"], counters["in_flight"]) == (2, 1)
        assert counters["requests"] == {"gen_rb_m": 2}
        assert counters["error_codes"] == {"0": 1}
        assert counters["faults_injected"] == {"busy": 1}
        state.reset_counters()
        counters = state.counters()
        assert (counters["peak_concurrency"], counters["requests"], counters["faults_injected"]) == (1, {}, {})
