"""The bill import file (contract, decided subset of the "Advanced" format), read the way the server reads it.

A header row (names case-blind, extra columns ignored), then one bill per row:

    accountCode, meterCode, billingPeriod (yyyymm), beginDate, endDate (yyyy-mm-dd or yyyymmdd),
    totalCost, and optionally lineCaption1, lineCost1 ... lineCaptionN, lineCostN

A file without every required column fails the whole task (`ImportFileError`); a row that breaks a
rule is kicked out with a message (`RowFault`), the others are imported. Which account and meter
exist is the state's business: this module only checks what a row says by itself.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

REQUIRED_COLUMNS = ("accountcode", "metercode", "billingperiod", "begindate", "enddate", "totalcost")
_DISPLAY = {
    "accountcode": "accountCode",
    "metercode": "meterCode",
    "billingperiod": "billingPeriod",
    "begindate": "beginDate",
    "enddate": "endDate",
    "totalcost": "totalCost",
}
_LINE_COST = re.compile(r"linecost(\d+)")
_DASHED_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_PERIOD = re.compile(r"(\d{4})(\d{2})")

#: One data row as read: lower-case column name -> the cell's text (stripped).
RawRow = dict[str, str]


class ImportFileError(Exception):
    """The file cannot be imported at all (the task ends Failed, nothing is imported)."""


class RowFault(Exception):
    """One row breaks a rule: it is kicked out with this message."""


@dataclass(frozen=True, slots=True)
class BillRow:
    """A row that passed every check of its own."""

    account_code: str
    meter_code: str
    billing_period: int
    begin_date: date
    end_date: date
    total_cost: Decimal
    lines: tuple[tuple[str, Decimal], ...]


def read_rows(data: bytes) -> list[RawRow]:
    """The data rows of an import file; ImportFileError when it is not UTF-8 text or lacks a required column."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError("The import file is not UTF-8 text.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ImportFileError("The import file is empty: a header row is required.")
    columns = [name.strip().lower() for name in header]
    missing = [_DISPLAY[name] for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ImportFileError(f"Required column(s) missing: {', '.join(missing)}.")
    rows: list[RawRow] = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        row: RawRow = {}
        for name, cell in zip(columns, cells, strict=False):
            row.setdefault(name, cell.strip())
        rows.append(row)
    return rows


def check_row(row: RawRow) -> BillRow:
    """The row as a bill, or RowFault naming the first rule it breaks (account and meter aside)."""
    period_text = row.get("billingperiod", "")
    period = _PERIOD.fullmatch(period_text)
    if period is None or not 1 <= int(period.group(2)) <= 12:
        raise RowFault(f"billingPeriod '{period_text}' is not a period yyyymm.")
    begin = _date(row, "begindate")
    end = _date(row, "enddate")
    if end <= begin:
        raise RowFault(f"endDate {end.isoformat()} is not after beginDate {begin.isoformat()}.")
    total = _number(row, "totalcost")
    lines = _lines(row)
    if lines:
        line_sum = sum((cost for _, cost in lines), Decimal(0))
        if line_sum != total:
            raise RowFault(f"The line costs add up to {line_sum}, not to totalCost {total}.")
    return BillRow(
        account_code=row.get("accountcode", ""),
        meter_code=row.get("metercode", ""),
        billing_period=int(period_text),
        begin_date=begin,
        end_date=end,
        total_cost=total,
        lines=lines,
    )


def _date(row: RawRow, column: str) -> date:
    text = row.get(column, "")
    match = _DASHED_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise RowFault(f"{_DISPLAY[column]} '{text}' is not a date (yyyy-mm-dd or yyyymmdd).") from None


def _number(row: RawRow, column: str, display: str | None = None) -> Decimal:
    text = row.get(column, "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise RowFault(f"{display or _DISPLAY[column]} '{text}' is not a number.")
    return value


def _lines(row: RawRow) -> tuple[tuple[str, Decimal], ...]:
    numbered = sorted(
        (int(match.group(1)), column)
        for column in row
        if (match := _LINE_COST.fullmatch(column)) is not None and row[column]
    )
    return tuple(
        (row.get(f"linecaption{number}", ""), _number(row, column, f"lineCost{number}")) for number, column in numbered
    )
