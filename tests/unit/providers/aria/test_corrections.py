"""The corrections file, and the rb_line_items it makes of an invoice's lines."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.providers.aria.corrections import (
    Correction,
    Corrections,
    CorrectionsError,
    load_corrections,
    parse_corrections,
    rebill_lines,
)
from orchestrator.adapters.providers.aria.wire import InvoiceLine, RebillLineItem
from orchestrator.domain.errors import RunRefused

SOURCE = "fix.csv"


def parse(text: str) -> Corrections:
    return parse_corrections(text, source=SOURCE)


def line(line_no: int, service_no: int, client_service_id: str, units: str, rate: str, **fields: Any) -> InvoiceLine:
    amount = fields.pop("amount", None)
    if amount is None:
        amount = (Decimal(units) * Decimal(rate)).quantize(Decimal("0.01"))
    return InvoiceLine(
        line_no=line_no,
        service_no=service_no,
        client_service_id=client_service_id,
        units=Decimal(units),
        rate_per_unit=Decimal(rate),
        amount=Decimal(amount),
        line_type=fields.pop("line_type", 1),
        **fields,
    )


INVOICE = [
    line(1, 10001, "PLAN-BASE", "1", "44.100"),
    line(2, 10004, "API-CALLS", "37", "0.150", line_type=6),
    line(3, 10002, "SEATS", "10", "12.375"),
    line(4, 400, "TAX-STATE", "1", "7.94", line_type=2),
]


class TestParse:
    def test_rows_with_empty_cells_left_unchanged(self) -> None:
        corrections = parse("service,rate_per_unit,units\n10001,44.10,\nSEATS,,12\n\n API-CALLS , 0.125 , 37 \n")
        assert corrections.rows == (
            Correction("10001", Decimal("44.10"), None, 2),
            Correction("SEATS", None, Decimal(12), 3),
            Correction("API-CALLS", Decimal("0.125"), Decimal(37), 5),
        )

    def test_columns_in_any_order_and_case_and_only_some(self) -> None:
        assert parse("Units,SERVICE\n3,10001\n").rows == (Correction("10001", None, Decimal(3), 2),)

    def test_a_byte_order_mark(self) -> None:
        assert parse("\ufeffservice,rate_per_unit\n10001,1\n").rows[0].service == "10001"

    def test_only_a_header(self) -> None:
        assert parse("service,rate_per_unit,units\n").rows == ()

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "fix.csv: empty corrections file"),
            ("service,rate,units\n", "fix.csv:1: unknown column 'rate'"),
            ("rate_per_unit,units\n", "fix.csv:1: the column 'service' is missing"),
            ("service\n10001\n", "fix.csv:1: give at least one of the columns rate_per_unit, units"),
            ("service,units,units\n", "fix.csv:1: column 'units' appears twice"),
            ("service,rate_per_unit\n10001,abc\n", "fix.csv:2: rate_per_unit 'abc' is not a number"),
            ("service,rate_per_unit\n10001,NaN\n", "fix.csv:2: rate_per_unit 'NaN' is not a number"),
            ("service,rate_per_unit\n10001,1,2\n", "fix.csv:2: 3 cells for 2 columns"),
            ("service,rate_per_unit\n10001,-0.5\n", "fix.csv:2: rate_per_unit -0.5 is negative"),
            ("service,units\n10001,-1\n", "fix.csv:2: units -1 is negative"),
            ("service,rate_per_unit\n,1\n", "fix.csv:2: the service is empty"),
            (
                "service,rate_per_unit\n10001,1\nX,2\n10001,3\n",
                "fix.csv:4: service '10001' is already corrected on line 2",
            ),
        ],
    )
    def test_refusals_name_file_and_line(self, text: str, message: str) -> None:
        with pytest.raises(CorrectionsError) as caught:
            parse(text)
        assert message in str(caught.value)

    def test_every_problem_is_listed_at_once(self) -> None:
        with pytest.raises(CorrectionsError) as caught:
            parse("service,rate_per_unit\n10001,x\n10002,-1\n")
        assert "fix.csv:2:" in str(caught.value)
        assert "fix.csv:3:" in str(caught.value)

    def test_a_bad_file_refuses_the_run(self) -> None:
        assert issubclass(CorrectionsError, RunRefused)

    def test_load_reads_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "corrections.csv"
        path.write_bytes("\ufeffservice,rate_per_unit\r\n10001,44.1\r\n".encode())
        assert load_corrections(path).rows == (Correction("10001", Decimal("44.1"), None, 2),)

    def test_load_names_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(CorrectionsError, match=r"missing\.csv: cannot read"):
            load_corrections(tmp_path / "missing.csv")


class TestRebillLines:
    def test_every_charge_line_in_order_corrected_only_where_it_changes(self) -> None:
        corrections = parse("service,rate_per_unit,units\nAPI-CALLS,0.125,\n10002,12.375,11\nTAX-STATE,1,\n")
        result = rebill_lines(list(reversed(INVOICE)), corrections)
        assert result.items == (
            RebillLineItem(1, service_no=10001),
            RebillLineItem(2, service_no=10004, rate_per_unit=Decimal("0.125")),
            RebillLineItem(3, service_no=10002, units=Decimal(11)),
        )
        # 44.10 + 37 * 0.150 = 5.55 + 10 * 12.375 = 123.75 (123.75 + 5.55 + 44.10 = 173.40)
        assert result.old_charges == Decimal("173.40")
        # 37 * 0.125 = 4.625 -> 4.63 (half-up); 11 * 12.375 = 136.125 -> 136.13
        assert result.new_charges == Decimal("44.10") + Decimal("4.63") + Decimal("136.13")
        assert result.difference == result.new_charges - result.old_charges
        assert result.matched
        assert result.changed

    def test_a_correction_equal_to_the_original_sends_nothing_but_matches(self) -> None:
        result = rebill_lines(INVOICE, parse("service,rate_per_unit\nPLAN-BASE,44.1\n"))
        assert result.items[0] == RebillLineItem(1, service_no=10001)
        assert result.matched
        assert not result.changed
        assert result.new_charges == result.old_charges

    def test_nothing_matched(self) -> None:
        result = rebill_lines(INVOICE, parse("service,rate_per_unit\n99999,1\n"))
        assert not result.matched
        assert not result.changed
        assert [item.line_no for item in result.items] == [1, 2, 3]

    def test_a_tax_line_is_never_sent_nor_counted(self) -> None:
        result = rebill_lines(INVOICE, parse("service,rate_per_unit\n400,0\n"))
        assert 4 not in [item.line_no for item in result.items]
        assert not result.matched

    def test_a_line_without_service_no_goes_by_client_service_id(self) -> None:
        lines = [InvoiceLine(line_no=1, client_service_id="SEATS", units=Decimal(2), rate_per_unit=Decimal(3))]
        result = rebill_lines(lines, parse("service,units\nSEATS,4\n"))
        assert result.items == (RebillLineItem(1, client_service_id="SEATS", units=Decimal(4)),)
        assert (result.old_charges, result.new_charges) == (Decimal("6.00"), Decimal("12.00"))

    def test_numbers_compare_by_value_not_by_spelling(self) -> None:
        assert not rebill_lines(INVOICE, parse("service,rate_per_unit\nSEATS,12.3750\n")).changed

    def test_two_rows_for_one_line_are_refused(self) -> None:
        with pytest.raises(CorrectionsError, match=r"fix\.csv:2 and fix\.csv:3 both correct service 10001"):
            rebill_lines(INVOICE, parse("service,rate_per_unit\n10001,1\nPLAN-BASE,2\n"))
