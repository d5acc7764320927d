"""The corrections file of an Aria rebill run, and what it makes of one invoice's lines (pure).

The file is CSV with the header `service,rate_per_unit,units` (any order; `service` and at least one
of the others). `service` names a line's `service_no` or its `client_service_id`; an empty cell
leaves that value as it was:

    service,rate_per_unit,units
    10001,44.10,
    SEATS,,12

`parse_corrections` refuses the whole file, naming file and line, on an unknown or missing column,
a non-number, a negative rate or unit count, an empty service, or a service named twice.

`rebill_lines` turns an invoice's lines and the corrections into the `rb_line_items` to send: every
non-tax line in ascending `line_no` (a line left out would not be rebilled), carrying a rate or unit
count only where the correction changes it, plus the charges before and after. Money is rounded as
Aria does: a line is `units * rate_per_unit`, half-up to cents. Tax lines are never sent; Aria
recomputes tax, so the rebill's `amount` is the new charges plus the new tax, which only Aria knows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path

from orchestrator.adapters.providers.aria.wire import InvoiceLine, RebillLineItem
from orchestrator.domain.errors import RunRefused

__all__ = [
    "Correction",
    "Corrections",
    "CorrectionsError",
    "RebillLines",
    "cents",
    "load_corrections",
    "parse_corrections",
    "rebill_lines",
]

CENT = Decimal("0.01")
COLUMNS = ("service", "rate_per_unit", "units")


def cents(value: Decimal) -> Decimal:
    """Half-up to two places: Aria's rounding of every amount."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class CorrectionsError(RunRefused):
    """The corrections file is unusable; the message names the file and every line at fault."""


@dataclass(frozen=True, slots=True)
class Correction:
    service: str
    rate_per_unit: Decimal | None
    units: Decimal | None
    line: int  # in the file, for messages

    def names(self, line: InvoiceLine) -> bool:
        """Whether this correction is about `line` (by service_no or client_service_id)."""
        if line.client_service_id is not None and self.service == line.client_service_id:
            return True
        return line.service_no is not None and self.service.isdigit() and int(self.service) == line.service_no


@dataclass(frozen=True, slots=True)
class Corrections:
    source: str
    rows: tuple[Correction, ...]

    def for_line(self, line: InvoiceLine) -> Correction | None:
        """The correction of `line`; CorrectionsError when two rows name it (by number and by id)."""
        found = [row for row in self.rows if row.names(line)]
        if len(found) > 1:
            where = " and ".join(f"{self.source}:{row.line}" for row in found)
            raise CorrectionsError(f"{where} both correct service {line.service_no} ({line.client_service_id})")
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class RebillLines:
    """What to send for one invoice and what it changes (charges exclude tax lines)."""

    items: tuple[RebillLineItem, ...]
    old_charges: Decimal
    new_charges: Decimal
    #: A correction named one of the invoice's charge lines (even with the value it already had).
    matched: bool
    #: Some line's rate or units differ from the original's.
    changed: bool

    @property
    def difference(self) -> Decimal:
        return self.new_charges - self.old_charges


def load_corrections(path: Path) -> Corrections:
    """Read and check a corrections file (UTF-8, a byte-order mark allowed)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorrectionsError(f"{path}: cannot read the corrections file ({exc})") from None
    return parse_corrections(text, source=str(path))


def parse_corrections(text: str, *, source: str) -> Corrections:
    """The typed rows of a corrections CSV; CorrectionsError listing every problem with its line."""
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise CorrectionsError(f"{source}: empty corrections file (expected the header {','.join(COLUMNS)})")
    columns = [cell.strip().lower() for cell in header]
    problems = [
        f"{source}:1: unknown column {name!r} (expected {', '.join(COLUMNS)})"
        for name in columns
        if name not in COLUMNS
    ]
    problems += [
        f"{source}:1: column {name!r} appears twice" for name in sorted(set(columns)) if columns.count(name) > 1
    ]
    if "service" not in columns:
        problems.append(f"{source}:1: the column 'service' is missing")
    if not {"rate_per_unit", "units"} & set(columns):
        problems.append(f"{source}:1: give at least one of the columns rate_per_unit, units")
    if problems:
        raise CorrectionsError("; ".join(problems))
    corrections: list[Correction] = []
    first_seen: dict[str, int] = {}
    for cells in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            problems.append(f"{source}:{line}: {len(cells)} cells for {len(columns)} columns")
            continue
        values = dict(zip(columns, (cell.strip() for cell in cells), strict=False))
        service = values.get("service", "")
        if not service:
            problems.append(f"{source}:{line}: the service is empty")
            continue
        rate = _number(values.get("rate_per_unit", ""), "rate_per_unit", source, line, problems)
        units = _number(values.get("units", ""), "units", source, line, problems)
        if service in first_seen:
            problems.append(f"{source}:{line}: service {service!r} is already corrected on line {first_seen[service]}")
            continue
        first_seen[service] = line
        corrections.append(Correction(service, rate, units, line))
    if problems:
        raise CorrectionsError("; ".join(problems))
    return Corrections(source, tuple(corrections))


def _number(cell: str, column: str, source: str, line: int, problems: list[str]) -> Decimal | None:
    if not cell:
        return None
    try:
        value = Decimal(cell)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        problems.append(f"{source}:{line}: {column} {cell!r} is not a number")
        return None
    if value < 0:
        problems.append(f"{source}:{line}: {column} {cell} is negative")
        return None
    return value


def rebill_lines(lines: Iterable[InvoiceLine], corrections: Corrections) -> RebillLines:
    """The `rb_line_items` of one invoice with the corrections applied (see the module docstring)."""
    charge_lines: Sequence[InvoiceLine] = sorted((line for line in lines if not line.is_tax), key=_line_no)
    items: list[RebillLineItem] = []
    old = new = Decimal("0.00")
    matched = changed = False
    for line in charge_lines:
        correction = corrections.for_line(line)
        rate = units = None
        if correction is not None:
            matched = True
            rate = _changed(correction.rate_per_unit, line.rate_per_unit)
            units = _changed(correction.units, line.units)
            changed = changed or rate is not None or units is not None
        items.append(
            RebillLineItem(
                line_no=line.line_no,
                service_no=line.service_no,
                client_service_id=None if line.service_no is not None else line.client_service_id,
                rate_per_unit=rate,
                units=units,
            )
        )
        old += cents(line.amount) if line.amount is not None else _amount(line, line.units, line.rate_per_unit)
        new += _amount(
            line, units if units is not None else line.units, rate if rate is not None else line.rate_per_unit
        )
    return RebillLines(tuple(items), old, new, matched, changed)


def _line_no(line: InvoiceLine) -> int:
    return line.line_no


def _changed(corrected: Decimal | None, original: Decimal | None) -> Decimal | None:
    """The corrected value when it differs from the original (numerically), else None."""
    return corrected if corrected is not None and corrected != original else None


def _amount(line: InvoiceLine, units: Decimal | None, rate: Decimal | None) -> Decimal:
    """`units * rate` half-up; a line without both keeps the amount Aria gave it."""
    if units is not None and rate is not None:
        return cents(units * rate)
    return cents(line.amount) if line.amount is not None else Decimal("0.00")
