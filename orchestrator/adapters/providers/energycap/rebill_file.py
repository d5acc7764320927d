"""The corrected-bills file a user hands to an EnergyCAP run, read and checked before anything is sent.

The format is the import's (reference/energycap-api.md, decided subset of the "Advanced" format):
a header row, names case-blind, extra columns ignored, one bill per row.

| column                          | required | value                                           |
|---------------------------------|----------|-------------------------------------------------|
| accountCode, meterCode          | yes      | text                                            |
| billingPeriod                   | yes      | yyyymm                                          |
| beginDate, endDate              | yes      | yyyy-mm-dd or yyyymmdd, endDate after beginDate |
| totalCost                       | yes      | a number, at most 2 decimals                    |
| lineCaptionN, lineCostN (N ≥ 1) | no       | a line's costs add up to totalCost              |

Every problem is collected (up to 20 are shown) and raised as one `RebillFileError` naming the file
and each line; a file that passes imports without a kickout for its format (accounts and meters
are the datasource's business). `import_csv` writes rows back as the file the import sends, so a
kickout's `row` is the index of the row in what was sent.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from orchestrator.domain.errors import RunRefused

__all__ = [
    "BillLine",
    "CorrectedBill",
    "RebillFile",
    "RebillFileError",
    "import_csv",
    "parse_rebill_csv",
    "read_rebill_file",
]

REQUIRED_COLUMNS = ("accountCode", "meterCode", "billingPeriod", "beginDate", "endDate", "totalCost")
MAX_SHOWN_PROBLEMS = 20

_LINE_COLUMN = re.compile(r"line(caption|cost)([1-9]\d*)")
_DATE_FORMATS = (re.compile(r"(\d{4})-(\d{2})-(\d{2})"), re.compile(r"(\d{4})(\d{2})(\d{2})"))
_PERIOD = re.compile(r"(\d{4})(\d{2})")


@dataclass(frozen=True, slots=True)
class BillLine:
    caption: str
    cost: Decimal


@dataclass(frozen=True, slots=True)
class CorrectedBill:
    """One row of the file: the bill to import in place of a reversed one."""

    line: int  # in the file, the header being line 1
    account_code: str
    meter_code: str
    billing_period: int
    begin_date: date
    end_date: date
    total_cost: Decimal
    lines: tuple[BillLine, ...] = ()

    @property
    def match_key(self) -> tuple[str, str, int]:
        """Account, meter (both case-blind) and billing period: what ties the row to a reversed bill."""
        return self.account_code.lower(), self.meter_code.lower(), self.billing_period


@dataclass(frozen=True, slots=True)
class RebillFile:
    path: Path
    rows: tuple[CorrectedBill, ...]


class RebillFileError(RunRefused):
    """The file cannot be used; `problems` holds (line, what is wrong) for each problem found."""

    def __init__(self, name: str, problems: Sequence[tuple[int, str]]) -> None:
        shown = [f"{name} line {line}: {what}" for line, what in problems[:MAX_SHOWN_PROBLEMS]]
        if len(problems) > MAX_SHOWN_PROBLEMS:
            shown.append(f"… and {len(problems) - MAX_SHOWN_PROBLEMS} more problem(s) in {name}")
        super().__init__("\n".join(shown))
        self.name = name
        self.problems = tuple(problems)


def read_rebill_file(path: Path) -> RebillFile:
    """The checked rows of a corrected-bills file; RebillFileError naming the file and every bad line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RebillFileError(str(path), [(0, f"cannot be read ({exc.strerror or exc})")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RebillFileError(str(path), [(1 + raw[: exc.start].count(b"\n"), "is not UTF-8 text")]) from None
    return RebillFile(path, parse_rebill_csv(text, str(path)))


def parse_rebill_csv(text: str, name: str) -> tuple[CorrectedBill, ...]:
    """The checked rows of corrected-bills CSV text; `name` is what errors call the file."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise RebillFileError(name, [(1, "the file is empty: a header row is required")])
        columns = _columns(header, name)
        problems: list[tuple[int, str]] = []
        rows: list[CorrectedBill] = []
        seen: dict[tuple[str, str, int], int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                problems.append((line, f"{len(cells)} cells for {len(header)} columns"))
                continue
            values = {column: cells[index].strip() if index < len(cells) else "" for column, index in columns.items()}
            row_problems: list[str] = []
            row = _row(values, line, row_problems)
            if row is not None:
                first = seen.setdefault(row.match_key, line)
                if first != line:
                    row_problems.append(
                        f"a second bill for account {row.account_code}, meter {row.meter_code}, "
                        f"period {row.billing_period} (first on line {first})"
                    )
            problems += [(line, what) for what in row_problems]
            if row is not None and not row_problems:
                rows.append(row)
    except csv.Error as exc:
        raise RebillFileError(name, [(reader.line_num, f"not readable as CSV ({exc})")]) from None
    if problems:
        raise RebillFileError(name, problems)
    if not rows:
        raise RebillFileError(name, [(1, "no bills: the file has a header and no data rows")])
    return tuple(rows)


def import_csv(rows: Sequence[CorrectedBill]) -> bytes:
    """The rows as the UTF-8 CSV the import sends (row N of it is `rows[N - 1]`)."""
    width = max((len(row.lines) for row in rows), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    line_columns = (f"line{kind}{n}" for n in range(1, width + 1) for kind in ("Caption", "Cost"))
    writer.writerow([*REQUIRED_COLUMNS, *line_columns])
    for row in rows:
        cells = [
            row.account_code,
            row.meter_code,
            str(row.billing_period),
            row.begin_date.isoformat(),
            row.end_date.isoformat(),
            str(row.total_cost),
        ]
        for bill_line in row.lines:
            cells += [bill_line.caption, str(bill_line.cost)]
        writer.writerow(cells + [""] * (2 * (width - len(row.lines))))
    return buffer.getvalue().encode()


# --- helpers ---------------------------------------------------------------------------------------------


def _columns(header: list[str], name: str) -> dict[str, int]:
    """Lower-case column name -> its index; RebillFileError on a missing or repeated column."""
    columns: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    for index, cell in enumerate(header):
        key = cell.strip().lower()
        if not key:
            continue
        if key in columns:
            problems.append((1, f"column {cell.strip()!r} appears twice"))
        columns.setdefault(key, index)
    missing = [column for column in REQUIRED_COLUMNS if column.lower() not in columns]
    if missing:
        problems.append((1, f"required column(s) missing: {', '.join(missing)}"))
    if problems:
        raise RebillFileError(name, problems)
    return columns


def _row(values: dict[str, str], line: int, problems: list[str]) -> CorrectedBill | None:
    account_code, meter_code = values["accountcode"], values["metercode"]
    for column, value in (("accountCode", account_code), ("meterCode", meter_code)):
        if not value:
            problems.append(f"{column} is empty")
    period = _period(values["billingperiod"], problems)
    begin = _date("beginDate", values["begindate"], problems)
    end = _date("endDate", values["enddate"], problems)
    if begin is not None and end is not None and end <= begin:
        problems.append(f"endDate {end.isoformat()} is not after beginDate {begin.isoformat()}")
    total = _money("totalCost", values["totalcost"], problems)
    known = len(problems)
    lines = _lines(values, problems)
    if total is not None and lines and len(problems) == known:
        line_sum = sum((bill_line.cost for bill_line in lines), Decimal(0))
        if line_sum != total:
            problems.append(f"the line costs add up to {line_sum}, not to totalCost {total}")
    if problems or period is None or begin is None or end is None or total is None:
        return None
    return CorrectedBill(line, account_code, meter_code, period, begin, end, total, lines)


def _period(text: str, problems: list[str]) -> int | None:
    match = _PERIOD.fullmatch(text)
    if match is None or not 1900 <= int(match.group(1)) <= 2099 or not 1 <= int(match.group(2)) <= 12:
        problems.append(f"billingPeriod {text!r} is not a period yyyymm")
        return None
    return int(text)


def _date(column: str, text: str, problems: list[str]) -> date | None:
    for pattern in _DATE_FORMATS:
        match = pattern.fullmatch(text)
        if match is not None:
            try:
                return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                break
    problems.append(f"{column} {text!r} is not a date (yyyy-mm-dd or yyyymmdd)")
    return None


def _money(column: str, text: str, problems: list[str]) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        problems.append(f"{column} {text!r} is not a number")
        return None
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        problems.append(f"{column} {text!r} has more than 2 decimals")
        return None
    return value


def _lines(values: dict[str, str], problems: list[str]) -> tuple[BillLine, ...]:
    numbers = sorted({int(match.group(2)) for key in values if (match := _LINE_COLUMN.fullmatch(key))})
    lines: list[BillLine] = []
    for number in numbers:
        caption = values.get(f"linecaption{number}", "")
        cost_text = values.get(f"linecost{number}", "")
        if not cost_text:
            if caption:
                problems.append(f"lineCaption{number} {caption!r} has no lineCost{number}")
            continue
        cost = _money(f"lineCost{number}", cost_text, problems)
        if cost is not None:
            lines.append(BillLine(caption, cost))
    return tuple(lines)
