"""What an Aria run is asked for (selector, options), what is stored of it, and what the provider keeps.

The command line is generated from `AriaSelector` and `AriaOptions` (each field's description is its
help). `open` reads the files they name once: an invoices file's numbers go into the stored
selector (`AriaSelection`), the corrections file's rows into the kept state (`AriaKept`), so workers
and retries act on what was read when the run started, never on a file that changed since.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.adapters.providers.aria.client import MAX_COMMENTS
from orchestrator.adapters.providers.aria.corrections import Correction, Corrections
from orchestrator.domain.errors import RunRefused

__all__ = ["AriaKept", "AriaOptions", "AriaSelection", "AriaSelector", "CorrectionRow", "read_invoices_file"]

_ECHO = 40  # characters of a bad line echoed back in an error
_NUMBER = re.compile(r"[1-9][0-9]{0,18}")


class AriaSelector(BaseModel):
    """Which invoices: one bill date's originals (optionally one account's), or a file of invoice numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bill_date: date | None = Field(None, description="Bill date (yyyy-mm-dd) of the bill run to rebill.")
    account: int | None = Field(None, ge=1, description="Only this account's invoices of the bill date (its acct_no).")
    invoices_file: Path | None = Field(
        None, description="Instead of a bill date: a file of Aria invoice numbers, one a line."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        if (self.bill_date is None) == (self.invoices_file is None):
            raise ValueError("give exactly one of a bill date and an invoices file")
        if self.account is not None and self.bill_date is None:
            raise ValueError("an account narrows a bill date; an invoices file names its invoices itself")
        return self


class AriaSelection(AriaSelector):
    """The selector as stored with the run: an invoices file's numbers as read when the run opened."""

    invoice_nos: tuple[int, ...] | None = None

    @property
    def scope(self) -> str:
        """A bill date's run, or a file's set of invoices (the same numbers, in any order: one scope)."""
        if self.bill_date is not None:
            return f"aria:{self.bill_date.isoformat()}"
        numbers = "\n".join(str(number) for number in sorted(self.invoice_nos or ()))
        return f"aria:file:{hashlib.sha256(numbers.encode()).hexdigest()[:16]}"


class AriaOptions(BaseModel):
    """Aria's own run options (gen_rb_m's parameters and what the corrections may be)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    corrections: Path = Field(
        description="CSV of corrected rates and units: header service,rate_per_unit,units "
        "(service: a service_no or client_service_id; an empty cell keeps the original)."
    )
    reason_code: int = Field(description="gen_rb_m reason_cd: one of the rebill reason codes defined in Aria.")
    comments: str | None = Field(
        None, max_length=MAX_COMMENTS, description="rb_comments of every rebill (default: 'rebill run <run id>')."
    )
    collect: bool = Field(
        False,
        description="do_collect: collect payment for the rebill invoices at once (default: no).",
        json_schema_extra={"cli": "--collect/--no-collect"},
    )
    allow_no_change: bool = Field(
        False,
        description="Run even when the corrections name no line of any selected invoice.",
        json_schema_extra={"cli": "--allow-no-change/--require-change"},
    )


class CorrectionRow(BaseModel):
    """One row of the corrections file as kept with the run (JSON: numbers as exact text)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: str
    rate_per_unit: Decimal | None = None
    units: Decimal | None = None
    line: int


class AriaKept(BaseModel):
    """The provider's state of one run: the corrections as read when it opened."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    corrections_source: str
    corrections: tuple[CorrectionRow, ...]

    @classmethod
    def of(cls, corrections: Corrections) -> AriaKept:
        return cls(
            corrections_source=corrections.source,
            corrections=tuple(
                CorrectionRow(service=row.service, rate_per_unit=row.rate_per_unit, units=row.units, line=row.line)
                for row in corrections.rows
            ),
        )

    def to_corrections(self) -> Corrections:
        return Corrections(
            self.corrections_source,
            tuple(Correction(row.service, row.rate_per_unit, row.units, row.line) for row in self.corrections),
        )


def read_invoices_file(path: Path) -> tuple[int, ...]:
    """The invoice numbers of a file (one a line; blank lines and `#` comments ignored), in file order.

    RunRefused names the file and every line at fault: not a whole number, or a number given twice.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRefused(f"{path}: cannot read the invoices file ({exc})") from None
    numbers: list[int] = []
    first_seen: dict[int, int] = {}
    problems: list[str] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        cell = raw.split("#", 1)[0].strip()
        if not cell:
            continue
        if not _NUMBER.fullmatch(cell):
            shown = cell if len(cell) <= _ECHO else cell[:_ECHO] + "…"
            problems.append(f"{path}:{line_no}: {shown!r} is not an invoice number")
            continue
        number = int(cell)
        if number in first_seen:
            problems.append(f"{path}:{line_no}: invoice {number} is already on line {first_seen[number]}")
            continue
        first_seen[number] = line_no
        numbers.append(number)
    if problems:
        raise RunRefused("; ".join(problems))
    if not numbers:
        raise RunRefused(f"{path}: no invoice number in the file (one a line)")
    return tuple(numbers)
