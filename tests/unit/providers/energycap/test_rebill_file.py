"""The corrected-bills file: checked before the run, every problem named by file and line."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.adapters.providers.energycap.rebill_file import (
    BillLine,
    CorrectedBill,
    RebillFileError,
    import_csv,
    parse_rebill_csv,
    read_rebill_file,
)
from orchestrator.domain.errors import RunRefused

HEADER = "accountCode,meterCode,billingPeriod,beginDate,endDate,totalCost"
GOOD = "AC-1,MT-1,202510,2025-10-01,2025-10-31,100.50"


def parse(*lines: str, header: str = HEADER) -> tuple[CorrectedBill, ...]:
    return parse_rebill_csv("\n".join([header, *lines]) + "\n", "corrected.csv")


def problems(*lines: str, header: str = HEADER) -> list[tuple[int, str]]:
    with pytest.raises(RebillFileError) as raised:
        parse(*lines, header=header)
    return list(raised.value.problems)


class TestGoodFiles:
    def test_typed_rows_with_their_lines(self) -> None:
        header = f"{HEADER},lineCaption1,lineCost1,lineCaption2,lineCost2,vendor"
        rows = parse(
            f"{GOOD},Energy,60.50,Delivery,40,ACME", "ac-2,mt-9,202509,20250901,20250930,-5,,,,,", header=header
        )
        assert rows[0] == CorrectedBill(
            line=2,
            account_code="AC-1",
            meter_code="MT-1",
            billing_period=202510,
            begin_date=date(2025, 10, 1),
            end_date=date(2025, 10, 31),
            total_cost=Decimal("100.50"),
            lines=(BillLine("Energy", Decimal("60.50")), BillLine("Delivery", Decimal(40))),
        )
        assert rows[1].line == 3
        assert rows[1].total_cost == Decimal(-5)
        assert rows[1].lines == ()
        assert rows[1].match_key == ("ac-2", "mt-9", 202509)

    def test_header_names_are_case_blind_and_blank_lines_skipped(self) -> None:
        rows = parse_rebill_csv(
            "\ufeffACCOUNTCODE,MeterCode,billingperiod,BEGINDATE,endDate,TotalCost\r\n\r\n" + GOOD + "\r\n,,,,,\r\n",
            "f.csv",
        )
        assert [row.line for row in rows] == [3]

    def test_read_from_disk(self, tmp_path: Path) -> None:
        path = tmp_path / "corrected.csv"
        path.write_text(f"{HEADER}\n{GOOD}\n", encoding="utf-8")
        rebill = read_rebill_file(path)
        assert rebill.path == path
        assert [row.account_code for row in rebill.rows] == ["AC-1"]


class TestProblems:
    @pytest.mark.parametrize(
        ("row", "expected"),
        [
            (",MT-1,202510,2025-10-01,2025-10-31,1", "accountCode is empty"),
            ("AC-1,,202510,2025-10-01,2025-10-31,1", "meterCode is empty"),
            ("AC-1,MT-1,202513,2025-10-01,2025-10-31,1", "billingPeriod '202513' is not a period yyyymm"),
            ("AC-1,MT-1,2025-10,2025-10-01,2025-10-31,1", "not a period yyyymm"),
            ("AC-1,MT-1,180010,2025-10-01,2025-10-31,1", "not a period yyyymm"),
            ("AC-1,MT-1,202510,2025-02-30,2025-10-31,1", "beginDate '2025-02-30' is not a date"),
            ("AC-1,MT-1,202510,2025-10-01,10/31/2025,1", "endDate '10/31/2025' is not a date"),
            ("AC-1,MT-1,202510,2025-10-31,2025-10-31,1", "endDate 2025-10-31 is not after beginDate 2025-10-31"),
            ("AC-1,MT-1,202510,2025-10-01,2025-10-31,ten", "totalCost 'ten' is not a number"),
            ("AC-1,MT-1,202510,2025-10-01,2025-10-31,Infinity", "is not a number"),
            ("AC-1,MT-1,202510,2025-10-01,2025-10-31,1.005", "totalCost '1.005' has more than 2 decimals"),
            ("AC-1,MT-1,202510,2025-10-01,2025-10-31", "totalCost '' is not a number"),
            ("AC-1,MT-1,202510,2025-10-01,2025-10-31,1,extra", "7 cells for 6 columns"),
        ],
    )
    def test_each_rule(self, row: str, expected: str) -> None:
        [(line, what)] = problems(GOOD, row)
        assert line == 3
        assert expected in what

    @pytest.mark.parametrize(
        ("cells", "expected"),
        [
            ("Energy,60,Delivery,30", "the line costs add up to 90, not to totalCost 100.50"),
            ("Energy,x,Delivery,40", "lineCost1 'x' is not a number"),
            ("Energy,,Delivery,100.50", "lineCaption1 'Energy' has no lineCost1"),
        ],
    )
    def test_lines(self, cells: str, expected: str) -> None:
        header = f"{HEADER},lineCaption1,lineCost1,lineCaption2,lineCost2"
        assert problems(f"{GOOD},{cells}", header=header) == [(2, expected)]

    def test_every_problem_is_collected_and_named_by_file_and_line(self) -> None:
        with pytest.raises(RebillFileError) as raised:
            parse(GOOD, "AC-2,MT-2,202513,x,2025-10-31,1", GOOD)
        error = raised.value
        assert isinstance(error, RunRefused)
        assert error.problems == (
            (3, "billingPeriod '202513' is not a period yyyymm"),
            (3, "beginDate 'x' is not a date (yyyy-mm-dd or yyyymmdd)"),
            (4, "a second bill for account AC-1, meter MT-1, period 202510 (first on line 2)"),
        )
        assert str(error).splitlines()[0] == "corrected.csv line 3: billingPeriod '202513' is not a period yyyymm"

    def test_a_second_bill_for_the_same_meter_and_period_in_any_case(self) -> None:
        assert problems(GOOD, "ac-1,mt-1,202510,2025-10-01,2025-10-31,5") == [
            (3, "a second bill for account ac-1, meter mt-1, period 202510 (first on line 2)")
        ]

    def test_a_multi_line_cell_counts_its_lines(self) -> None:
        header = f"{HEADER},lineCaption1,lineCost1"
        assert problems(f'{GOOD},"two\nlines",1', GOOD.replace("MT-1", "MT-2"), header=header) == [
            (3, "the line costs add up to 1, not to totalCost 100.50")
        ]

    def test_only_twenty_are_shown(self) -> None:
        with pytest.raises(RebillFileError) as raised:
            parse(*[f"AC-{n},MT,202513,2025-10-01,2025-10-31,1" for n in range(25)])
        assert len(raised.value.problems) == 25
        assert str(raised.value).splitlines()[-1] == "… and 5 more problem(s) in corrected.csv"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("", [(1, "the file is empty: a header row is required")]),
            (HEADER + "\n", [(1, "no bills: the file has a header and no data rows")]),
            (
                "accountCode,billingPeriod,beginDate,endDate\n",
                [(1, "required column(s) missing: meterCode, totalCost")],
            ),
            (HEADER + ",TOTALCOST\n" + GOOD + ",1\n", [(1, "column 'TOTALCOST' appears twice")]),
        ],
    )
    def test_the_file_as_a_whole(self, text: str, expected: list[tuple[int, str]]) -> None:
        with pytest.raises(RebillFileError) as raised:
            parse_rebill_csv(text, "f.csv")
        assert list(raised.value.problems) == expected

    def test_unreadable_files(self, tmp_path: Path) -> None:
        with pytest.raises(RebillFileError, match="line 0: cannot be read"):
            read_rebill_file(tmp_path / "missing.csv")
        latin = tmp_path / "latin.csv"
        latin.write_bytes(f"{HEADER}\n".encode() + "AC-1,Mètre,202510,2025-10-01,2025-10-31,1\n".encode("latin-1"))
        with pytest.raises(RebillFileError, match=r"latin\.csv line 2: is not UTF-8 text"):
            read_rebill_file(latin)


class TestImportCsv:
    def test_round_trips_and_row_n_is_the_nth_bill(self) -> None:
        header = f"{HEADER},lineCaption1,lineCost1,lineCaption2,lineCost2"
        rows = parse(f"{GOOD},Energy,60.50,Delivery,40", "AC-2,M 2,202509,20250901,20250930,7,,,,", header=header)
        data = import_csv(rows)
        assert data.decode().splitlines() == [
            f"{HEADER},lineCaption1,lineCost1,lineCaption2,lineCost2",
            "AC-1,MT-1,202510,2025-10-01,2025-10-31,100.50,Energy,60.50,Delivery,40",
            "AC-2,M 2,202509,2025-09-01,2025-09-30,7,,,,",
        ]
        again = parse_rebill_csv(data.decode(), "again.csv")
        assert [(r.match_key, r.total_cost, r.lines) for r in again] == [
            (r.match_key, r.total_cost, r.lines) for r in rows
        ]

    def test_no_lines_no_line_columns(self) -> None:
        assert import_csv(parse(GOOD)).decode().splitlines()[0] == HEADER
