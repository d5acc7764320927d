"""The import file as the server reads it: the header, and the rules a row is kicked out for."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from simulators.energycap.import_csv import ImportFileError, RowFault, check_row, read_rows

GOOD = {
    "accountcode": "AC-1",
    "metercode": "MT-1",
    "billingperiod": "202510",
    "begindate": "2025-10-01",
    "enddate": "20251031",
    "totalcost": "100.50",
}


class TestReadRows:
    def test_names_are_case_blind_extra_columns_kept_blank_lines_skipped(self) -> None:
        text = (
            "\ufeffACCOUNTCODE,meterCode,BillingPeriod,beginDate,endDate,totalCost,Vendor\r\n"
            "A,M,202510,x,y,1,V\r\n,,,\r\n"
        )
        assert read_rows(text.encode()) == [
            {
                "accountcode": "A",
                "metercode": "M",
                "billingperiod": "202510",
                "begindate": "x",
                "enddate": "y",
                "totalcost": "1",
                "vendor": "V",
            }
        ]

    def test_a_missing_required_column_fails_the_file(self) -> None:
        with pytest.raises(ImportFileError, match="Required column\\(s\\) missing: meterCode, totalCost"):
            read_rows(b"accountCode,billingPeriod,beginDate,endDate\nA,202510,2025-10-01,2025-10-31\n")

    @pytest.mark.parametrize(("data", "why"), [(b"", "empty"), (b"\xff\xfe\x00a", "not UTF-8")])
    def test_unreadable_files(self, data: bytes, why: str) -> None:
        with pytest.raises(ImportFileError, match=why):
            read_rows(data)

    def test_a_header_alone_has_no_rows(self) -> None:
        assert read_rows(b"accountCode,meterCode,billingPeriod,beginDate,endDate,totalCost\n") == []


class TestCheckRow:
    def test_a_good_row(self) -> None:
        row = check_row({**GOOD, "linecaption1": "Energy", "linecost1": "60.50", "linecost2": "40", "linecaption3": ""})
        assert row.billing_period == 202510
        assert (row.begin_date, row.end_date) == (date(2025, 10, 1), date(2025, 10, 31))
        assert row.total_cost == Decimal("100.50")
        assert row.lines == (("Energy", Decimal("60.50")), ("", Decimal("40")))

    @pytest.mark.parametrize(
        ("changes", "why"),
        [
            ({"billingperiod": "202513"}, "billingPeriod '202513' is not a period"),
            ({"billingperiod": "2025-10"}, "not a period"),
            ({"begindate": "2025-02-30"}, "beginDate '2025-02-30' is not a date"),
            ({"enddate": "31/10/2025"}, "endDate '31/10/2025' is not a date"),
            ({"enddate": "2025-10-01"}, "is not after beginDate"),
            ({"totalcost": "abc"}, "totalCost 'abc' is not a number"),
            ({"totalcost": "NaN"}, "is not a number"),
            ({"totalcost": ""}, "is not a number"),
            ({"linecost1": "60", "linecost2": "40"}, "add up to 100, not to totalCost 100.50"),
            ({"linecost1": "x"}, "lineCost1 'x' is not a number"),
        ],
    )
    def test_kickout_rules(self, changes: dict[str, str], why: str) -> None:
        with pytest.raises(RowFault, match=why):
            check_row({**GOOD, **changes})
