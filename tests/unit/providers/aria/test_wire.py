"""Tolerant reading of Aria's replies: numbers or numeric strings, Decimal money, flags, nulls."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from orchestrator.adapters.providers.aria.wire import (
    AriaReply,
    InvoiceDetails,
    InvoiceHistory,
    InvoicePage,
    RebillLineItem,
    RebillReply,
)


def decoded(payload: dict[str, Any]) -> Any:
    """What the client hands the models: JSON text (floats written as Python does) with exact decimals."""
    return json.loads(json.dumps(payload), parse_float=Decimal)


HEADER = {
    "invoice_no": 41000007,
    "acct_no": 3100135,
    "client_acct_id": "ACCT-3100135",
    "amount": Decimal("93.99"),
    "total_due": Decimal("93.99"),
    "paid_date": None,
    "bill_date": "2025-10-01",
    "voiding_event_no": None,
    "invoice_type_cd": "F",
    "billing_group_no": 6600135,
}


class TestInvoicePage:
    def test_the_contracts_example(self) -> None:
        text = """{"error_code": 0, "error_msg": "OK", "starting_record": 0, "total_records": 1512,
           "invoice_details_m": [{"invoice_no": 41000007, "acct_no": 3100135, "client_acct_id": "ACCT-3100135",
             "amount": 93.99, "total_due": 93.99, "paid_date": null, "bill_date": "2025-10-01",
             "voiding_event_no": null, "invoice_type_cd": "F", "billing_group_no": 6600135}]}"""
        page = InvoicePage.model_validate(json.loads(text, parse_float=Decimal))
        header = page.invoice_details_m[0]
        assert (page.total_records, header.invoice_no, header.amount) == (1512, 41000007, Decimal("93.99"))
        assert header.bill_date == date(2025, 10, 1)
        assert not header.voided
        assert not header.is_rebill

    def test_numbers_as_strings_and_empty_strings_as_nothing(self) -> None:
        strings = {**{k: str(v) for k, v in HEADER.items() if v is not None}, "paid_date": "", "voiding_event_no": ""}
        page = InvoicePage.model_validate({"error_code": "0", "total_records": "1", "invoice_details_m": [strings]})
        header = page.invoice_details_m[0]
        assert (page.error_code, header.invoice_no, header.acct_no, header.amount) == (
            0,
            41000007,
            3100135,
            Decimal("93.99"),
        )
        assert (header.paid_date, header.voiding_event_no) == (None, None)

    def test_voided_and_rebill_invoices_are_recognised(self) -> None:
        page = InvoicePage.model_validate(
            {"error_code": 0, "invoice_details_m": [{**HEADER, "voiding_event_no": 900001, "invoice_type_cd": "r"}]}
        )
        assert page.invoice_details_m[0].voided
        assert page.invoice_details_m[0].is_rebill

    def test_a_null_list_and_unknown_fields(self) -> None:
        page = InvoicePage.model_validate({"error_code": 0, "invoice_details_m": None, "new_field": {"x": 1}})
        assert page.invoice_details_m == []

    def test_a_paid_date_with_a_time(self) -> None:
        page = InvoicePage.model_validate(
            {"error_code": 0, "invoice_details_m": [{**HEADER, "paid_date": "2025-10-09 13:01:02"}]}
        )
        assert page.invoice_details_m[0].paid_date == date(2025, 10, 9)

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("amount", 93.99),
            ("amount", "ninety"),
            ("invoice_no", 41.5),
            ("invoice_no", True),
            ("bill_date", "10/01/2025"),
        ],
    )
    def test_what_is_not_tolerated(self, field: str, value: Any) -> None:
        with pytest.raises(pydantic.ValidationError):
            InvoicePage.model_validate({"error_code": 0, "invoice_details_m": [{**HEADER, field: value}]})


class TestInvoiceDetails:
    def test_lines_with_three_decimal_rates_and_a_tax_line(self) -> None:
        details = InvoiceDetails.model_validate(
            decoded(
                {
                    "error_code": 0,
                    "rb_status": "False",
                    "rb_flag": "0",
                    "invoice_line_details": [
                        {
                            "line_no": 1,
                            "service_no": 10004,
                            "client_service_id": "API-CALLS",
                            "units": 37,
                            "rate_per_unit": 0.125,
                            "amount": 4.63,
                            "line_type": 6,
                            "rb_excluded": 0,
                        },
                        {
                            "line_no": "2",
                            "service_no": "400",
                            "units": "1",
                            "rate_per_unit": "0.38",
                            "amount": "0.38",
                            "line_type": "2",
                        },
                    ],
                    "tax_details": None,
                }
            )
        )
        usage, tax = details.invoice_line_details
        assert (usage.rate_per_unit, usage.units, usage.amount) == (Decimal("0.125"), Decimal(37), Decimal("4.63"))
        assert not usage.is_tax
        assert tax.is_tax
        assert (tax.line_no, tax.service_no) == (2, 400)
        assert (details.rb_status, details.rb_flag, details.tax_details) == (False, False, [])

    @pytest.mark.parametrize(
        ("raw", "flag"),
        [
            ("True", True),
            ("true", True),
            (1, True),
            ("1", True),
            ("False", False),
            (0, False),
            (None, False),
            ("", False),
        ],
    )
    def test_rb_status_reads_any_truthy_spelling(self, raw: Any, flag: bool) -> None:
        assert InvoiceDetails.model_validate({"error_code": 0, "rb_status": raw}).rb_status is flag


class TestInvoiceHistory:
    ORIGINAL = {"invoice_no": 41000007, "rb_no": None, "rb_status": "False", "invoice_type_cd": "F"}

    def history(self, *rows: dict[str, Any]) -> InvoiceHistory:
        return InvoiceHistory.model_validate({"error_code": 0, "invoice_hist": list(rows)})

    def test_not_rebilled(self) -> None:
        history = self.history(self.ORIGINAL, {"invoice_no": 41000008})
        assert not history.rebilled(41000007)
        assert history.rebill_invoice_no(41000007) is None

    def test_rebilled_by_rb_no(self) -> None:
        history = self.history({**self.ORIGINAL, "rb_no": "52000010", "rb_status": "True", "credit": Decimal("93.99")})
        assert history.rebilled(41000007)
        assert history.rebill_invoice_no(41000007) == 52000010

    def test_rebilled_by_rb_status_alone(self) -> None:
        history = self.history({**self.ORIGINAL, "rb_status": "true"})
        assert history.rebilled(41000007)
        assert history.rebill_invoice_no(41000007) is None

    def test_rebilled_by_a_row_naming_it(self) -> None:
        history = self.history(
            self.ORIGINAL, {"invoice_no": 52000010, "invoice_type_cd": "R", "rb_flag": 1, "orig_invoice_no": 41000007}
        )
        assert history.rebilled(41000007)
        assert history.rebill_invoice_no(41000007) == 52000010
        assert not history.rebilled(52000010)

    def test_a_null_list(self) -> None:
        assert not InvoiceHistory.model_validate({"error_code": 0, "invoice_hist": None}).rebilled(1)


class TestRebillReply:
    def test_the_contracts_example(self) -> None:
        reply = RebillReply.model_validate(
            decoded(
                {
                    "error_code": 0,
                    "error_msg": "OK",
                    "invoice_no": 52000010,
                    "amount": 91.09,
                    "reason_code": 2,
                    "created_by": "rebill",
                    "created_date": "2025-11-03",
                    "invoice_items": [
                        {
                            "invoice_line_no": 1,
                            "service_no": 10001,
                            "units": 1.0,
                            "rate_per_unit": 44.1,
                            "line_amount": 44.1,
                            "line_type": 1,
                        }
                    ],
                    "tax_details": [],
                    "third_party_errors": [],
                }
            )
        )
        assert (reply.invoice_no, reply.amount, reply.created_date) == (52000010, Decimal("91.09"), date(2025, 11, 3))
        assert reply.invoice_items[0].line_amount == Decimal("44.1")

    def test_a_dry_run_has_no_invoice_number(self) -> None:
        assert RebillReply.model_validate({"error_code": 0, "invoice_no": None, "amount": "10.00"}).invoice_no is None


def test_an_error_reply_needs_only_the_code() -> None:
    reply = AriaReply.model_validate({"error_code": "3097", "error_msg": None})
    assert reply.error_code == 3097


class TestRebillLineItem:
    def test_only_what_is_corrected_is_sent(self) -> None:
        assert RebillLineItem(2, service_no=10003).to_wire() == {"line_no": 2, "service_no": 10003}
        assert RebillLineItem(1, service_no=10001, rate_per_unit=Decimal("44.1")).to_wire() == {
            "line_no": 1,
            "service_no": 10001,
            "rb_rate_per_unit": Decimal("44.1"),
        }
        assert RebillLineItem(3, client_service_id="SEATS", units=Decimal(12)).to_wire() == {
            "line_no": 3,
            "client_service_id": "SEATS",
            "rb_units": Decimal(12),
        }

    @pytest.mark.parametrize(
        "fields",
        [
            {},
            {"service_no": 1, "rate_per_unit": Decimal(-1)},
            {"service_no": 1, "units": 2.5},
            {"service_no": 1, "rate_per_unit": Decimal("NaN")},
        ],
    )
    def test_refuses_what_aria_would(self, fields: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="line 1"):
            RebillLineItem(1, **fields)
