"""What an EnergyCAP run is asked for, what it stores, and what the provider keeps between its steps.

The command line is generated from `EnergyCapSelector`, `EnergyCapOptions` and `EnergyCapRetry`
(field descriptions are the help). What a run stores is resolved when it opens, so a retry never
needs the user's files again: `EnergyCapSelection` pins the selection (the bill ids read from the
file, or the period up to its last bill at the start), and `EnergyCapKept` holds the corrected
bills as validated and matched.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.adapters.providers.energycap.filters import Field as FilterField, Op, where
from orchestrator.adapters.providers.energycap.rebill_file import RebillFileError

#: What a bill-ids file may hold at most (a period run is the way to reverse more).
MAX_FILE_IDS = 100_000


class EnergyCapSelector(BaseModel):
    """Which bills: an account period (optionally some of its accounts), or a file of bill ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_period: int | None = Field(
        None, description="The account period (yyyymm, e.g. 202510) whose bills are reversed."
    )
    account_code: list[str] | None = Field(
        None, description="Only these accounts' bills of the period (repeat the option; at most 100)."
    )
    bill_ids_file: Path | None = Field(
        None, description="Reverse the bills of this file instead: one bill id per line (a `billId` header may lead)."
    )

    @field_validator("account_period")
    @classmethod
    def _period(cls, value: int | None) -> int | None:
        if value is not None:
            where(FilterField.ACCOUNT_PERIOD, Op.EQUALS, value)  # ValueError outside yyyymm
        return value

    @field_validator("account_code")
    @classmethod
    def _codes(cls, value: list[str] | None) -> list[str] | None:
        if not value:
            return None
        codes = list(dict.fromkeys(code.strip() for code in value))
        where(FilterField.ACCOUNT_CODE, Op.ONE_OF, *codes)  # ValueError: empty, too many, unquotable
        return codes

    @model_validator(mode="after")
    def _one_way_to_select(self) -> EnergyCapSelector:
        if (self.account_period is None) == (self.bill_ids_file is None):
            raise ValueError(
                "choose the bills by an account period (--account-period) or by a file of bill ids "
                "(--bill-ids-file), one of the two"
            )
        if self.account_code and self.account_period is None:
            raise ValueError("--account-code narrows an account period; it cannot narrow a bill-ids file")
        return self


class EnergyCapSelection(BaseModel):
    """The selection as a run stores it: the bills of a period (and accounts) up to the last bill there
    when the run opened, or the bill ids the file held (ascending)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    account_period: int | None = None
    account_codes: tuple[str, ...] = ()
    up_to_bill_id: int | None = None
    bill_ids: tuple[int, ...] = ()
    bill_ids_file: str | None = None


class EnergyCapOptions(BaseModel):
    """EnergyCAP's own run options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rebill_file: Path | None = Field(
        None,
        description="The corrected bills (CSV) imported once every bill is reversed; checked before the run "
        "starts. Without it the run only reverses.",
    )
    allow_unmatched: bool = Field(
        False,
        description="Start even when rows of --rebill-file match no eligible bill of the selection; those rows "
        "are left out of the import.",
    )


class EnergyCapRetry(BaseModel):
    """What `rebill retry` may ask of an EnergyCAP run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reimport_kickouts: bool = Field(
        False, description="Re-import the corrected bills EnergyCAP kicked out (once their cause is fixed)."
    )


class KeptRebillFile(BaseModel):
    """The corrected bills as validated when the run opened: the rows matched to an eligible bill, as
    the import sends them, with each row's line in the user's file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    csv: str
    lines: tuple[int, ...]
    unmatched: tuple[int, ...] = ()  # lines matching no eligible bill, left out (--allow-unmatched)


class EnergyCapKept(BaseModel):
    """The provider's state of one run."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    rebill: KeptRebillFile | None = None
    #: Set by `rebill retry --reimport-kickouts`; the re-import it asks for clears it.
    reimport_kickouts: bool = False


def read_bill_ids(path: Path) -> dict[int, int]:
    """The bill ids of a file (id -> its line), one per line; blank lines, `#` comments and a leading
    `billId` header are skipped, a repeated id counts once. RebillFileError names the file and each bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RebillFileError(str(path), [(0, f"cannot be read as UTF-8 text ({exc})")]) from None
    ids: dict[int, int] = {}
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        value = raw.split("#", 1)[0].strip().strip(",")
        if not value or (not ids and not problems and value.lower() == "billid"):
            continue
        if not value.isdigit() or int(value) < 1:
            problems.append((number, f"{value[:40]!r} is not a bill id (a whole number above 0)"))
            continue
        ids.setdefault(int(value), number)
    if problems:
        raise RebillFileError(str(path), problems)
    if not ids:
        raise RebillFileError(str(path), [(1, "no bill ids: the file is empty")])
    if len(ids) > MAX_FILE_IDS:
        raise RebillFileError(
            str(path), [(0, f"{len(ids)} bill ids; at most {MAX_FILE_IDS} (select a period instead)")]
        )
    return ids
