"""Seeding: deterministic, the mix a real bill run has, money as Aria rounds it."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import pytest

from simulators.aria.seeding import DEFAULT_BILL_DATE, SeededRun, seed_bill_run
from simulators.aria.state import FIRST_REBILL_NO, AriaState, Invoice, Line, Service, cents


class TestDeterminism:
    def test_same_arguments_give_the_same_run(self) -> None:
        first, second = AriaState(), AriaState()
        a = seed_bill_run(first, invoices=60, seed=9)
        b = seed_bill_run(second, invoices=60, seed=9)
        assert a == b
        assert first.dump_invoices() == second.dump_invoices()

    def test_another_seed_gives_another_run(self) -> None:
        state = AriaState()
        a = seed_bill_run(state, invoices=20, seed=1)
        b = seed_bill_run(state, invoices=20, seed=2)
        assert not set(a.invoice_nos) & set(b.invoice_nos)
        assert not set(a.acct_nos) & set(b.acct_nos)

    def test_seeding_twice_adds_an_independent_run(self) -> None:
        state = AriaState()
        a = seed_bill_run(state, invoices=30, seed=4)
        b = seed_bill_run(state, invoices=30, seed=4)
        assert not set(a.invoice_nos) & set(b.invoice_nos)
        assert not set(a.rebill_invoice_nos) & set(b.rebill_invoice_nos)
        assert len(state.dump_invoices(DEFAULT_BILL_DATE)) == 60 + len(a.rebilled) + len(b.rebilled)


class TestMix:
    def test_every_kind_is_there_and_sorted_into_the_right_list(self, state: AriaState, run: SeededRun) -> None:
        kinds = (run.eligible, run.paid, run.part_paid, run.voided, run.rebilled)
        assert all(kinds)
        assert sorted(n for kind in kinds for n in kind) == list(run.invoice_nos)
        invoices = state.invoices
        assert all(invoices[n].eligible for n in run.eligible)
        assert all(invoices[n].paid_date is not None and invoices[n].total_due == 0 for n in run.paid)
        assert all(
            invoices[n].paid_date is None and 0 < invoices[n].total_due < invoices[n].amount for n in run.part_paid
        )
        assert all(invoices[n].voiding_event_no is not None for n in run.voided)
        assert not any(invoices[n].eligible for kind in kinds[1:] for n in kind)

    def test_already_rebilled_originals_have_their_rebill_invoice(self, state: AriaState, run: SeededRun) -> None:
        for number in run.rebilled:
            original = state.invoices[number]
            assert original.rb_no in run.rebill_invoice_nos
            assert original.credit == original.amount
            rebill = state.invoices[original.rb_no]
            assert (rebill.invoice_type_cd, rebill.orig_invoice_no) == ("R", number)
            assert rebill.bill_date == run.bill_date  # Aria's "Use Original Invoice Date for Rebill"

    def test_rebill_invoices_are_numbered_above_every_original(self, state: AriaState, run: SeededRun) -> None:
        originals = [*run.invoice_nos, *run.older_invoice_nos]
        assert min(run.rebill_invoice_nos) >= FIRST_REBILL_NO > max(originals)

    def test_every_account_has_two_or_more_invoices_of_the_bill_date(self, state: AriaState, run: SeededRun) -> None:
        per_account = Counter(state.invoices[n].account.acct_no for n in run.invoice_nos)
        assert set(per_account) == set(run.acct_nos)
        assert min(per_account.values()) >= 2
        assert len(run.acct_nos) >= 10

    def test_lines_have_three_decimal_rates_and_some_invoices_tax(self, state: AriaState, run: SeededRun) -> None:
        invoices = [state.invoices[n] for n in run.invoice_nos]
        assert all(sum(not line.service.is_tax for line in i.lines) >= 2 for i in invoices)
        line_nos = [[line.line_no for line in i.lines] for i in invoices]
        assert all(numbers == list(range(1, len(numbers) + 1)) for numbers in line_nos)
        rates = [line.rate_per_unit for i in invoices for line in i.lines if not line.service.is_tax]
        assert any(rate.as_tuple().exponent == -3 for rate in rates)
        taxed = [i for i in invoices if i.tax_rate is not None]
        assert 0 < len(taxed) < len(invoices)
        for invoice in taxed:
            tax = [line for line in invoice.lines if line.service.is_tax]
            charges = sum((line.amount for line in invoice.lines if not line.service.is_tax), Decimal(0))
            assert invoice.tax_rate is not None
            assert [line.amount for line in tax] == [cents(charges * invoice.tax_rate)]

    def test_older_bill_date_has_an_invoice_per_account(self, state: AriaState, run: SeededRun) -> None:
        assert run.older_bill_date == date(2025, 9, 1)
        older = [state.invoices[n] for n in run.older_invoice_nos]
        assert {i.account.acct_no for i in older} == set(run.acct_nos)
        assert {i.bill_date for i in older} == {run.older_bill_date}
        assert any(i.eligible for i in older)
        assert any(i.paid_date is not None for i in older)

    def test_a_small_run_still_has_accounts_of_two(self) -> None:
        state = AriaState()
        run = seed_bill_run(state, invoices=5, seed=1)
        per_account = Counter(state.invoices[n].account.acct_no for n in run.invoice_nos)
        assert sorted(per_account.values()) in ([2, 3], [5])

    def test_nothing_to_seed(self) -> None:
        run = seed_bill_run(AriaState(), invoices=0, seed=1)
        assert run.invoice_nos == run.acct_nos == ()

    def test_negative_count_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            seed_bill_run(AriaState(), invoices=-1, seed=1)

    def test_to_dict_is_json_ready(self, run: SeededRun) -> None:
        data = run.to_dict()
        assert data["bill_date"] == "2025-10-01"
        assert data["eligible"] == list(run.eligible)


class TestMoney:
    @pytest.mark.parametrize(
        ("units", "rate", "amount"),
        [("37", "0.125", "4.63"), ("1", "44.1", "44.10"), ("3", "0.0005", "0.00"), ("2.5", "0.023", "0.06")],
    )
    def test_a_line_is_units_times_rate_half_up(self, units: str, rate: str, amount: str) -> None:
        line = Line(1, Service(1, "X", "x", 1), Decimal(units), Decimal(rate))
        assert line.amount == Decimal(amount)
        assert str(line.amount) == amount

    def test_amounts_are_decimals_with_cents(self, state: AriaState, run: SeededRun) -> None:
        invoice: Invoice = state.invoices[run.eligible[0]]
        assert isinstance(invoice.amount, Decimal)
        assert invoice.amount == sum(line.amount for line in invoice.lines)
        assert invoice.amount.as_tuple().exponent == -2
