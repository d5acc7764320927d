"""Business rules of Invoice/_execute, straight on the state (no HTTP)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypedDict, Unpack

import pytest

from simulators.imis.commands import InvoiceAction, LineAdjustment
from simulators.imis.errors import NotFound, Refused
from simulators.imis.examples import EXAMPLE_LEGACY_INVOICE_ID
from simulators.imis.seeding import SeededBilling
from simulators.imis.state import ImisState

WHEN = datetime(2026, 4, 23)


class ActionChanges(TypedDict, total=False):
    """What a test sets in the action `act` writes."""

    reason: str | None
    lines: tuple[LineAdjustment, ...]
    original_shipping: Decimal | None
    new_shipping: Decimal | None
    original_handling: Decimal | None
    new_handling: Decimal | None
    refund_amount: Decimal | None
    payment_method_id: str | None
    scheduled_payment_id: str | None
    reverse_all: bool | None
    new_bill_to_id: str | None


def act(invoice_id: str, **changes: Unpack[ActionChanges]) -> InvoiceAction:
    return InvoiceAction(invoice_id=invoice_id, adjustment_date=WHEN, **changes)


@pytest.fixture
def examples(state: ImisState) -> SeededBilling:
    return state.seed_examples()


class TestReversal:
    def test_cash_reversal_zeroes_the_balance_and_marks_the_invoice(
        self, state: ImisState, examples: SeededBilling
    ) -> None:
        state.reverse_invoice("ProcessCashReversal", act("8158"))
        invoice = state.invoice("8158")
        assert invoice.reversed
        assert invoice.balance == 0
        assert invoice.amount == Decimal("370.00")
        assert state.counters()["reversals"] == {"8158": 1}

    def test_second_reversal_is_refused_and_counted(self, state: ImisState, examples: SeededBilling) -> None:
        state.reverse_invoice("ProcessCashReversal", act("8158"))
        with pytest.raises(Refused, match="already been reversed"):
            state.reverse_invoice("ProcessCashReversal", act("8158"))
        counters = state.counters()
        assert counters["reversals"] == {"8158": 1}
        assert counters["refused_second_reversals"] == 1
        assert counters["refused_reversals"] == 1

    @pytest.mark.parametrize(
        ("invoice_id", "reason"),
        [("8160", "payments"), ("8161", "payments"), ("8162", "pending"), ("8166", "payments")],
    )
    def test_any_payment_refuses_the_reversal(
        self, state: ImisState, examples: SeededBilling, invoice_id: str, reason: str
    ) -> None:
        with pytest.raises(Refused, match=reason):
            state.reverse_invoice("ProcessCashReversal", act(invoice_id))
        assert not state.invoice(invoice_id).reversed
        counters = state.counters()
        assert (counters["refused_reversals"], counters["refused_second_reversals"]) == (1, 0)

    def test_a_payment_made_after_planning_refuses_the_reversal(
        self, state: ImisState, examples: SeededBilling
    ) -> None:
        assert state.can_cash_invoice_be_reversed("8159")
        state.apply_payment("8159", Decimal("10.00"))
        assert not state.can_cash_invoice_be_reversed("8159")
        with pytest.raises(Refused, match="payments"):
            state.reverse_invoice("ProcessCashReversal", act("8159"))

    def test_pending_payment_refuses_too(self, state: ImisState, examples: SeededBilling) -> None:
        state.apply_payment("8159", Decimal("250.00"), pending=True)
        assert state.invoice("8159").pending_payment_amount == Decimal("250.00")
        with pytest.raises(Refused, match="pending"):
            state.reverse_invoice("ProcessCashReversal", act("8159"))

    def test_cash_operation_on_accrual_invoice_is_refused_and_the_reverse(
        self, state: ImisState, examples: SeededBilling
    ) -> None:
        with pytest.raises(Refused, match="ProcessAccrualReversal"):
            state.reverse_invoice("ProcessCashReversal", act("2317"))
        with pytest.raises(Refused, match="ProcessCashReversal"):
            state.reverse_invoice("ProcessAccrualReversal", act("8158"))
        assert state.counters()["refused_reversals"] == 2
        state.reverse_invoice("ProcessAccrualReversal", act("2317"))
        assert state.invoice("2317").reversed

    def test_legacy_id_reverses_like_any_other(self, state: ImisState, examples: SeededBilling) -> None:
        state.reverse_invoice("ProcessCashReversal", act(EXAMPLE_LEGACY_INVOICE_ID))
        assert state.invoice(EXAMPLE_LEGACY_INVOICE_ID).balance == 0

    def test_unknown_invoice_is_refused(self, state: ImisState, examples: SeededBilling) -> None:
        with pytest.raises(Refused, match="not found"):
            state.reverse_invoice("ProcessCashReversal", act("nope"))
        assert state.counters()["refused_reversals"] == 1

    def test_reversed_invoice_takes_no_payment(self, state: ImisState, examples: SeededBilling) -> None:
        state.reverse_invoice("ProcessCashReversal", act("8158"))
        with pytest.raises(Refused):
            state.apply_payment("8158", Decimal("1.00"))


class TestCanOperations:
    def test_can_cash_invoice_be_reversed_follows_state(self, state: ImisState, examples: SeededBilling) -> None:
        assert state.can_cash_invoice_be_reversed("8158")
        assert not state.can_cash_invoice_be_reversed("8160")  # paid
        assert not state.can_cash_invoice_be_reversed("8161")  # part-paid
        assert not state.can_cash_invoice_be_reversed("8162")  # pending payment
        assert not state.can_cash_invoice_be_reversed("2317")  # accrual
        assert not state.can_cash_invoice_be_reversed("8200")  # fundraising
        state.reverse_invoice("ProcessCashReversal", act("8158"))
        assert not state.can_cash_invoice_be_reversed("8158")

    def test_can_invoice_be_reversed_takes_the_reference_number(
        self, state: ImisState, examples: SeededBilling
    ) -> None:
        assert state.can_invoice_be_reversed(2317)
        assert not state.can_invoice_be_reversed(8158)  # cash
        state.apply_payment("2317", Decimal("5.00"))
        assert not state.can_invoice_be_reversed(2317)
        with pytest.raises(NotFound):
            state.can_invoice_be_reversed(99)

    def test_adjust_and_refund_checks(self, state: ImisState, examples: SeededBilling) -> None:
        assert state.can_dues_invoice_be_adjusted(2317)
        assert not state.can_order_invoice_be_adjusted(2317)
        assert not state.can_invoice_be_refunded(2317)
        state.apply_payment("2317", Decimal("150.00"))  # overpaid: balance -30
        assert state.can_invoice_be_refunded(2317)
        assert not state.can_invoice_be_refunded(8158)  # cash


class TestOtherOperations:
    def test_write_off(self, state: ImisState, examples: SeededBilling) -> None:
        state.apply_payment("8159", Decimal("50.00"))
        state.write_off(act("8159", reason="Unable to collect"))
        invoice = state.invoice("8159")
        assert (invoice.balance, invoice.written_off, invoice.reversed) == (Decimal("0"), True, False)
        with pytest.raises(Refused, match="no balance"):
            state.write_off(act("8159"))

    def test_refund_needs_a_payment(self, state: ImisState, examples: SeededBilling) -> None:
        refund = act("8158", refund_amount=Decimal("95.00"), payment_method_id="CHECK")
        with pytest.raises(Refused, match="cannot be refunded"):
            state.record_refund(refund)
        state.apply_payment("8158", Decimal("370.00"))
        state.record_refund(refund)
        invoice = state.invoice("8158")
        assert (invoice.payment_amount, invoice.refunded_amount, invoice.balance) == (
            Decimal("275.00"),
            Decimal("95.00"),
            Decimal("95.00"),
        )

    def test_cash_adjustment_changes_a_price_or_removes_a_line(self, state: ImisState, examples: SeededBilling) -> None:
        change = LineAdjustment("JOUR", original_unit_price=Decimal("95.00"), new_unit_price=Decimal("75.00"))
        state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(change,)))
        assert state.invoice("8158").amount == Decimal("350.00")
        state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(LineAdjustment("INSIDMAG", is_removed=True),)))
        invoice = state.invoice("8158")
        assert invoice.amount == invoice.balance == Decimal("325.00")
        assert [line.product_code for line in invoice.lines] == ["DUES", "JOUR"]

    def test_adjustment_price_is_signed(self, state: ImisState, examples: SeededBilling) -> None:
        cut = LineAdjustment("DUES", adjustment_price=Decimal("-20.00"), original_unit_price=Decimal("1.00"))
        state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(cut,)))
        assert state.invoice("8158").amount == Decimal("350.00")

    def test_adjustment_refusals(self, state: ImisState, examples: SeededBilling) -> None:
        wrong_price = LineAdjustment("JOUR", original_unit_price=Decimal("90.00"), new_unit_price=Decimal("75.00"))
        with pytest.raises(Refused, match="does not match"):
            state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(wrong_price,)))
        with pytest.raises(Refused, match="no line"):
            state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(LineAdjustment("NOPE", is_removed=True),)))
        with pytest.raises(Refused, match="ProcessCashAdjustment"):
            state.adjust_invoice(
                "ProcessAccrualAdjustment", act("8158", lines=(LineAdjustment("DUES", is_removed=True),))
            )
        with pytest.raises(Refused, match="not a commerce order"):
            state.adjust_invoice(
                "ProcessOrderAdjustment", act("8158", lines=(LineAdjustment("DUES", is_removed=True),))
            )
        assert state.invoice("8158").amount == Decimal("370.00")
        state.reverse_invoice("ProcessCashReversal", act("8158"))
        with pytest.raises(Refused, match="reversed"):
            state.adjust_invoice("ProcessCashAdjustment", act("8158", lines=(LineAdjustment("JOUR", is_removed=True),)))

    def test_order_reversal_and_adjustment(self, state: ImisState) -> None:
        state.seed_examples(invoice_8158="order")
        line = LineAdjustment(
            "BOOK001",
            original_quantity=2,
            new_quantity=2,
            original_unit_price=Decimal("49.95"),
            new_unit_price=Decimal("39.95"),
        )
        state.adjust_invoice(
            "ProcessOrderAdjustment",
            act(
                "8158",
                lines=(line,),
                original_shipping=Decimal("15.00"),
                new_shipping=Decimal("10.00"),
                original_handling=Decimal("5.00"),
                new_handling=Decimal("5.00"),
            ),
        )
        assert state.invoice("8158").amount == Decimal("94.90")
        assert state.can_order_invoice_be_adjusted(8158)
        state.reverse_invoice("ProcessOrderReversal", act("8158"))
        assert state.invoice("8158").balance == 0
        assert not state.can_order_invoice_be_adjusted(8158)

    def test_fundraising_reversal_of_one_scheduled_payment_then_all(
        self, state: ImisState, examples: SeededBilling
    ) -> None:
        state.reverse_invoice("ProcessFundraisingReversal", act("8200", scheduled_payment_id="2", reverse_all=False))
        pledge = state.invoice("8200")
        assert (pledge.balance, pledge.reversed) == (Decimal("450.00"), False)
        with pytest.raises(Refused, match="already reversed"):
            state.reverse_invoice(
                "ProcessFundraisingReversal", act("8200", scheduled_payment_id="2", reverse_all=False)
            )
        with pytest.raises(Refused):  # no longer open in full
            state.reverse_invoice("ProcessFundraisingReversal", act("8200", reverse_all=True))
        for scheduled in ("1", "3", "4"):
            state.reverse_invoice("ProcessFundraisingReversal", act("8200", scheduled_payment_id=scheduled))
        assert (pledge.balance, pledge.reversed) == (Decimal("0"), True)
        with pytest.raises(Refused, match="not a fundraising"):
            state.reverse_invoice("ProcessFundraisingReversal", act("8158"))

    def test_fundraising_adjustment_and_bill_to_change(self, state: ImisState, examples: SeededBilling) -> None:
        state.adjust_fundraising(act("8200", reason="Adjusted pledge amount"))
        assert state.invoice("8200").events[-1]["operation"] == "ProcessFundraisingAdjustment"
        state.update_event_bill_to(act("8300", new_bill_to_id="23500"))
        assert state.invoice("8300").bill_to == "23500"
        with pytest.raises(Refused, match="not found"):
            state.update_event_bill_to(act("8300", new_bill_to_id="99999"))
        with pytest.raises(Refused, match="not an event"):
            state.update_event_bill_to(act("8158", new_bill_to_id="23500"))
