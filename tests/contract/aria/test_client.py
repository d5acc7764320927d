"""AriaClient against the Aria simulator over loopback HTTP: the contract both follow (reference/aria-api.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.adapters.providers.aria.corrections import cents, parse_corrections, rebill_lines
from orchestrator.adapters.providers.aria.errors import (
    AriaAuthError,
    AriaBusyError,
    AriaCode,
    AriaNotFoundError,
    AriaRefusedError,
    AriaUnexpectedError,
    error_code_of,
)
from orchestrator.adapters.providers.aria.queries import bill_run, one_invoice
from orchestrator.adapters.providers.aria.wire import InvoiceDetails, RebillLineItem, RebillReply
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from simulators.aria import AriaState, SeededRun
from tests.contract.aria.conftest import AUTH_KEY


def send_rebill(
    client: AriaClient, invoice_no: int, acct_no: int, details: InvoiceDetails | None = None, **options: Any
) -> RebillReply:
    """gen_rb_m with every non-tax line unchanged (or as `options["line_items"]`)."""
    if details is None:
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
    items = [RebillLineItem(x.line_no, service_no=x.service_no) for x in details.invoice_line_details if not x.is_tax]
    arguments: dict[str, Any] = {
        "acct_no": acct_no,
        "orig_invoice_no": invoice_no,
        "reason_cd": 2,
        "line_items": items,
        "alt_caller_id": "rebill",
        "do_collect": False,
        "comments": "contract test",
        "qualifiers": {"run_id": "R-contract"},
    }
    return client.gen_rb_m(**{**arguments, **options})


def acct(state: AriaState, invoice_no: int) -> int:
    return state.invoices[invoice_no].account.acct_no


def raises(error: type[ProviderError], call: Callable[..., Any], *args: Any, **kwargs: Any) -> ProviderError:
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    return caught.value


class TestSelection:
    def test_pages_a_bill_run_under_the_servers_cap(
        self, client: AriaClient, state: AriaState, run: SeededRun, calls: list[ApiCall]
    ) -> None:
        state.faults.update(page_cap=7)
        pages = list(client.iter_invoice_pages(bill_run(run.bill_date), page_size=50))
        numbers = [h.invoice_no for page in pages for h in page.invoice_details_m]
        assert numbers == list(run.invoice_nos)  # every original once, in order, no R invoice
        assert all(len(page.invoice_details_m) <= 7 for page in pages)
        assert len(calls) == len(pages) == -(-len(run.invoice_nos) // 7)
        assert {page.total_records for page in pages} == {len(run.invoice_nos)}

    def test_headers_carry_the_eligibility_data(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        by_no = {
            h.invoice_no: h
            for page in client.iter_invoice_pages(bill_run(run.bill_date))
            for h in page.invoice_details_m
        }
        assert all(by_no[n].voided for n in run.voided)
        assert all(by_no[n].paid_date is not None and by_no[n].total_due == 0 for n in run.paid)
        part_paid = [by_no[n] for n in run.part_paid]
        assert all(h.total_due is not None and h.total_due < h.amount for h in part_paid)
        assert all(by_no[n].total_due == 0 for n in run.rebilled)
        eligible = by_no[run.eligible[0]]
        assert (eligible.total_due, eligible.paid_date, eligible.voided) == (eligible.amount, None, False)
        assert isinstance(eligible.amount, Decimal)

    def test_one_account_and_one_invoice(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        acct_no = run.acct_nos[0]
        mine = [
            h.invoice_no
            for p in client.iter_invoice_pages(bill_run(run.bill_date, acct_no=acct_no))
            for h in p.invoice_details_m
        ]
        assert mine == [n for n in run.invoice_nos if acct(state, n) == acct_no]
        page = client.get_invoice_information(one_invoice(run.rebill_invoice_nos[0]), limit=10)
        assert [h.is_rebill for h in page.invoice_details_m] == [True]


class TestRebill:
    def test_corrected_lines_make_the_amount_the_corrections_expect(
        self, client: AriaClient, state: AriaState, run: SeededRun
    ) -> None:
        invoice_no = next(n for n in run.eligible if state.invoices[n].tax_rate is not None)
        details = client.get_invoice_details(invoice_no, acct_no=acct(state, invoice_no))
        first = details.invoice_line_details[0]
        corrections = parse_corrections(
            f"service,rate_per_unit,units\n{first.client_service_id},0.125,37\n", source="fix.csv"
        )
        lines = rebill_lines(details.invoice_line_details, corrections)
        assert lines.changed
        reply = send_rebill(client, invoice_no, acct(state, invoice_no), line_items=list(lines.items))
        charges = sum(
            (item.line_amount or Decimal(0) for item in reply.invoice_items if item.line_type != 2), Decimal(0)
        )
        assert charges == lines.new_charges
        assert reply.invoice_items[0].line_amount == Decimal("4.63")  # 37 x 0.125, half-up
        tax = reply.invoice_items[-1]
        assert tax.line_type == 2
        tax_rate = details.tax_details[0].tax_rate
        assert tax_rate is not None
        assert tax.line_amount == cents(lines.new_charges * tax_rate)
        assert reply.amount == charges + tax.line_amount
        assert reply.invoice_no == state.invoices[invoice_no].rb_no

    def test_once_then_3097_settled_by_reading(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        first = send_rebill(client, invoice_no, acct_no)
        error = raises(AriaRefusedError, send_rebill, client, invoice_no, acct_no)
        assert error_code_of(error) == AriaCode.ALREADY_REBILLED
        history = client.get_invoice_history(acct_no)
        assert history.rebilled(invoice_no)
        assert history.rebill_invoice_no(invoice_no) == first.invoice_no
        assert state.counters()["rebills"] == {str(invoice_no): 1}

    def test_a_dry_run_writes_nothing(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        before = state.dump_invoices()
        dry = send_rebill(client, invoice_no, acct_no, do_write=False)
        assert dry.invoice_no is None
        assert dry.amount == state.invoices[invoice_no].amount
        assert state.dump_invoices() == before
        assert not client.get_invoice_history(acct_no).rebilled(invoice_no)
        counters = state.counters()
        assert (counters["dry_run_calls"], counters["rebills_total"]) == (1, 0)

    def test_already_rebilled_originals_read_as_such(
        self, client: AriaClient, state: AriaState, run: SeededRun
    ) -> None:
        invoice_no, acct_no = run.rebilled[0], acct(state, run.rebilled[0])
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
        assert details.rb_status
        history = client.get_invoice_history(acct_no)
        assert history.rebill_invoice_no(invoice_no) == state.invoices[invoice_no].rb_no
        rebill_row = next(row for row in history.invoice_hist if row.orig_invoice_no == invoice_no)
        assert (rebill_row.invoice_type_cd, rebill_row.rb_flag) == ("R", True)


class TestErrorCodes:
    """Every code the simulator answers that a typed client can provoke."""

    def test_1004_is_an_auth_error_without_the_key(
        self, make_client: Callable[..., AriaClient], run: SeededRun, calls: list[ApiCall]
    ) -> None:
        client = make_client(auth_key=SecretStr("wrong-key"))
        error = raises(AriaAuthError, client.get_invoice_history, run.acct_nos[0])
        assert error_code_of(error) == AriaCode.AUTHENTICATION
        assert "wrong-key" not in str(error)
        assert all("wrong-key" not in (call.error or "") and AUTH_KEY not in (call.error or "") for call in calls)

    def test_1009_3004(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        assert error_code_of(raises(AriaNotFoundError, client.get_invoice_history, 1)) == AriaCode.NO_ACCOUNT
        other = next(a for a in run.acct_nos if a != acct(state, run.eligible[0]))
        error = raises(AriaNotFoundError, client.get_invoice_details, run.eligible[0], acct_no=other)
        assert error_code_of(error) == AriaCode.NO_INVOICE

    def test_1016_for_a_wrong_service(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        wrong = [RebillLineItem(1, service_no=99999)]
        error = raises(AriaRefusedError, send_rebill, client, invoice_no, acct_no, line_items=wrong)
        assert error_code_of(error) == AriaCode.INVALID_INPUT
        assert not error.may_have_applied

    def test_2003_for_a_voided_invoice(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        error = raises(AriaRefusedError, send_rebill, client, run.voided[0], acct(state, run.voided[0]))
        assert error_code_of(error) == AriaCode.VOIDED
        assert state.counters()["ineligible_attempts"] == 1

    def test_3024_for_an_unknown_reason(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        error = raises(
            AriaRefusedError, send_rebill, client, run.eligible[0], acct(state, run.eligible[0]), reason_cd=77
        )
        assert error_code_of(error) == AriaCode.INVALID_REASON

    def test_1001_on_a_write_is_settled_by_reading(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
        state.faults.update(p_unexpected=1.0, unexpected_applies=True)
        error = raises(AriaUnexpectedError, send_rebill, client, invoice_no, acct_no, details)
        assert error.may_have_applied
        state.faults.update(p_unexpected=0.0)
        assert client.get_invoice_history(acct_no).rebilled(invoice_no)


class TestUnknownOutcomes:
    def test_a_lost_reply_is_settled_by_reading_history(
        self, client: AriaClient, state: AriaState, run: SeededRun, calls: list[ApiCall]
    ) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
        state.faults.update(p_reply_lost=1.0, fault_operations=["gen_rb_m"])
        error = raises(ProviderUnavailable, send_rebill, client, invoice_no, acct_no, details)
        assert (error.status_code, error.may_have_applied) == (502, True)
        history = client.get_invoice_history(acct_no)
        assert history.rebilled(invoice_no)
        assert history.rebill_invoice_no(invoice_no) == state.invoices[invoice_no].rb_no
        assert [c.outcome for c in calls if c.operation == "gen_rb_m"] == [CallOutcome.TRANSIENT]

    def test_a_500_was_not_applied_and_the_same_request_may_go_again(
        self, client: AriaClient, state: AriaState, run: SeededRun
    ) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
        state.faults.update(p_500=1.0, fault_operations=["gen_rb_m"])
        error = raises(ProviderUnavailable, send_rebill, client, invoice_no, acct_no, details)
        assert error.may_have_applied  # the client cannot know: it reads before sending again
        assert "500 Internal Server Error" in str(error)
        assert not client.get_invoice_history(acct_no).rebilled(invoice_no)
        state.faults.update(p_500=0.0)
        assert send_rebill(client, invoice_no, acct_no, details).invoice_no is not None
        assert state.counters()["rebills"] == {str(invoice_no): 1}

    def test_a_timeout_after_sending_is_settled_by_reading(
        self, make_client: Callable[..., AriaClient], state: AriaState, run: SeededRun
    ) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        impatient, patient = make_client(timeout=0.3), make_client()
        details = patient.get_invoice_details(invoice_no, acct_no=acct_no)
        state.faults.update(latency_ms=800)
        error = raises(ProviderTimeout, send_rebill, impatient, invoice_no, acct_no, details)
        assert error.may_have_applied
        deadline = time.monotonic() + 5
        while not patient.get_invoice_history(acct_no).rebilled(invoice_no):  # Aria finishes without us
            assert time.monotonic() < deadline, "the rebill never showed in the history"
            time.sleep(0.05)
        assert state.counters()["rebills"] == {str(invoice_no): 1}


class TestBusy:
    def test_3108_is_transient_and_nothing_applied(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        invoice_no, acct_no = run.eligible[0], acct(state, run.eligible[0])
        details = client.get_invoice_details(invoice_no, acct_no=acct_no)
        state.faults.update(p_busy=1.0)
        error = raises(AriaBusyError, send_rebill, client, invoice_no, acct_no, details)
        assert (error_code_of(error), error.may_have_applied) == (AriaCode.BILLING_GROUP_BUSY, False)
        assert not client.get_invoice_history(acct_no).rebilled(invoice_no)
        state.faults.update(p_busy=0.0)
        assert send_rebill(client, invoice_no, acct_no, details).invoice_no is not None

    def test_two_writes_at_once_on_one_account(self, client: AriaClient, state: AriaState, run: SeededRun) -> None:
        account = state.invoices[run.eligible[0]].account
        pair = [n for n in run.eligible if state.invoices[n].account == account][:2]
        details = {n: client.get_invoice_details(n, acct_no=account.acct_no) for n in pair}
        state.faults.update(latency_ms=300)
        barrier = threading.Barrier(2)
        outcomes: dict[int, object] = {}

        def send(invoice_no: int) -> None:
            barrier.wait()
            try:
                outcomes[invoice_no] = send_rebill(client, invoice_no, account.acct_no, details[invoice_no])
            except ProviderError as error:
                outcomes[invoice_no] = error

        threads = [threading.Thread(target=send, args=(n,)) for n in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        busy = [n for n, outcome in outcomes.items() if isinstance(outcome, AriaBusyError)]
        done = [n for n, outcome in outcomes.items() if isinstance(outcome, RebillReply)]
        assert (len(busy), len(done)) == (1, 1)
        history = client.get_invoice_history(account.acct_no)
        assert history.rebilled(done[0])
        assert not history.rebilled(busy[0])
