"""What Aria sends back, and the typed pieces of what we send, parsed at the boundary (pydantic v2).

Tolerance rules (reference/aria-api.md):

- A number may arrive as a JSON number or a numeric string (`"3100135"`, `"93.99"`); an empty string
  or null reads as absent. Money and rates are `Decimal` and never pass through `float`: bodies are
  decoded with `parse_float=Decimal`, and a float reaching a money field is refused.
- Flags may be `1`/`0`, `"1"`/`"0"`, `true`/`false` or `"True"`/`"False"` in any case.
- Dates are `yyyy-mm-dd`, also with a time after them; an empty string is none.
- An array may come as null (none) and unknown fields are ignored; every model is frozen.

Only the Aria package imports this module; the domain never sees these types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

__all__ = [
    "TAX_LINE_TYPE",
    "AriaReply",
    "HistoryRow",
    "InvoiceDetails",
    "InvoiceHeader",
    "InvoiceHistory",
    "InvoiceLine",
    "InvoicePage",
    "RebillInvoiceItem",
    "RebillLineItem",
    "RebillReply",
    "TaxDetail",
    "WireModel",
]

#: `line_type` of a tax line: never sent in `rb_line_items` (Aria recomputes tax).
TAX_LINE_TYPE = 2
REBILL_INVOICE_TYPE = "R"


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _long(value: Any) -> Any:
    if _absent(value):
        return None
    if isinstance(value, bool):
        raise ValueError("a flag is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.0*)?\s*", value):
        return int(Decimal(value.strip()))
    raise ValueError(f"not a whole number: {value!r}")


def _decimal(value: Any) -> Any:
    if _absent(value):
        return None
    if isinstance(value, float):
        raise ValueError("money must not travel as a binary float; decode bodies with parse_float=Decimal")
    if isinstance(value, bool):
        raise ValueError("a flag is not a number")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
        if number.is_finite():
            return number
    raise ValueError(f"not a number: {value!r}")


def _flag(value: Any) -> Any:
    if _absent(value):
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y"):
        return True
    if text in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError(f"not a flag: {value!r}")


def _day(value: Any) -> Any:
    if _absent(value):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        match = re.match(r"\s*(\d{4}-\d{2}-\d{2})(?:[ T].*)?$", value)
        if match:
            return date.fromisoformat(match.group(1))
    raise ValueError(f"not a yyyy-mm-dd date: {value!r}")


def _text(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a flag is not text")
    return str(value) if isinstance(value, int | Decimal) else value


Long = Annotated[int, BeforeValidator(_long)]
OptionalLong = Annotated[int | None, BeforeValidator(_long)]
Money = Annotated[Decimal, BeforeValidator(_decimal)]
OptionalMoney = Annotated[Decimal | None, BeforeValidator(_decimal)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Day = Annotated[date | None, BeforeValidator(_day)]
Text = Annotated[str | None, BeforeValidator(_text)]


class WireModel(BaseModel):
    """Base of every Aria reply model: frozen, extra fields ignored, null arrays read as empty."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class AriaReply(WireModel):
    """Every reply's envelope: `error_code` 0 is success whatever the HTTP status."""

    error_code: Long
    error_msg: Text = None


def _list(value: Any) -> Any:
    return [] if value is None or value == "" else value


# --- get_invoice_information_m ---------------------------------------------------------------------------


class InvoiceHeader(WireModel):
    """One invoice of an object query (`invoice_details_m[]`)."""

    invoice_no: Long
    acct_no: Long
    client_acct_id: Text = None
    billing_group_no: OptionalLong = None
    bill_date: Day = None
    amount: Money
    total_due: OptionalMoney = None
    paid_date: Day = None
    voiding_event_no: OptionalLong = None
    invoice_type_cd: Text = None

    @property
    def voided(self) -> bool:
        return self.voiding_event_no is not None

    @property
    def is_rebill(self) -> bool:
        return (self.invoice_type_cd or "").strip().upper() == REBILL_INVOICE_TYPE


class InvoicePage(AriaReply):
    starting_record: OptionalLong = None
    total_records: OptionalLong = None
    invoice_details_m: list[InvoiceHeader] = Field(default_factory=list)

    _null_list = field_validator("invoice_details_m", mode="before")(_list)

    @property
    def next_offset(self) -> int:
        """Where the next page starts: this page's offset plus the records it returned (not the limit asked)."""
        return (self.starting_record or 0) + len(self.invoice_details_m)


# --- get_invoice_details_m -------------------------------------------------------------------------------


class InvoiceLine(WireModel):
    line_no: Long
    service_no: OptionalLong = None
    client_service_id: Text = None
    units: OptionalMoney = None
    rate_per_unit: OptionalMoney = None
    amount: OptionalMoney = None
    line_type: OptionalLong = None
    rb_excluded: Flag = False
    rb_line_comments: Text = None

    @property
    def is_tax(self) -> bool:
        return self.line_type == TAX_LINE_TYPE


class TaxDetail(WireModel):
    tax_detail_line: OptionalLong = None
    seq_num: OptionalLong = None
    debit: OptionalMoney = None
    tax_rate: OptionalMoney = None


class InvoiceDetails(AriaReply):
    invoice_line_details: list[InvoiceLine] = Field(default_factory=list)
    invoice_type_cd: Text = None
    rb_flag: Flag = False
    rb_status: Flag = False
    orig_invoice_no: OptionalLong = None
    tax_details: list[TaxDetail] = Field(default_factory=list)

    _null_lists = field_validator("invoice_line_details", "tax_details", mode="before")(_list)


# --- get_invoice_history_m -------------------------------------------------------------------------------


class HistoryRow(WireModel):
    invoice_no: Long
    outacct_no: OptionalLong = None
    bill_date: Day = None
    paid_date: Day = None
    amount: OptionalMoney = None
    credit: OptionalMoney = None
    is_voided_ind: Flag = False
    invoice_type_cd: Text = None
    orig_invoice_no: OptionalLong = None
    rb_no: OptionalLong = None
    rb_reason_cd: OptionalLong = None
    rb_comments: Text = None
    rb_flag: Flag = False
    rb_status: Flag = False


class InvoiceHistory(AriaReply):
    invoice_hist: list[HistoryRow] = Field(default_factory=list)

    _null_list = field_validator("invoice_hist", mode="before")(_list)

    def rebilled(self, orig_invoice_no: int) -> bool:
        """Whether the history shows `orig_invoice_no` rebilled: its row has `rb_no` or a true-ish
        `rb_status`, or another row names it in `orig_invoice_no` (the contract's three signs)."""
        return any(
            (row.invoice_no == orig_invoice_no and (row.rb_no is not None or row.rb_status))
            or row.orig_invoice_no == orig_invoice_no
            for row in self.invoice_hist
        )

    def rebill_invoice_no(self, orig_invoice_no: int) -> int | None:
        """The rebill invoice of `orig_invoice_no`, when the history names it."""
        for row in self.invoice_hist:
            if row.invoice_no == orig_invoice_no and row.rb_no is not None:
                return row.rb_no
        return next((row.invoice_no for row in self.invoice_hist if row.orig_invoice_no == orig_invoice_no), None)


# --- gen_rb_m --------------------------------------------------------------------------------------------


class RebillInvoiceItem(WireModel):
    invoice_line_no: OptionalLong = None
    service_no: OptionalLong = None
    client_service_id: Text = None
    units: OptionalMoney = None
    rate_per_unit: OptionalMoney = None
    line_amount: OptionalMoney = None
    line_type: OptionalLong = None


class RebillReply(AriaReply):
    """gen_rb_m's reply: `invoice_no` is the new rebill invoice (None on a dry run)."""

    invoice_no: OptionalLong = None
    amount: OptionalMoney = None
    reason_code: OptionalLong = None
    created_by: Text = None
    created_date: Day = None
    invoice_items: list[RebillInvoiceItem] = Field(default_factory=list)
    tax_details: list[TaxDetail] = Field(default_factory=list)

    _null_lists = field_validator("invoice_items", "tax_details", mode="before")(_list)


# --- what we send ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RebillLineItem:
    """One `rb_line_items` entry: a line of the original, by `line_no` and its service; `rate_per_unit`
    and `units` only when corrected (absent: Aria keeps the original's). Never an amount: Aria computes it."""

    line_no: int
    service_no: int | None = None
    client_service_id: str | None = None
    rate_per_unit: Decimal | None = None
    units: Decimal | None = None

    def __post_init__(self) -> None:
        if self.service_no is None and not self.client_service_id:
            raise ValueError(f"line {self.line_no}: a rebill line needs its service_no or client_service_id")
        for name, value in (("rate_per_unit", self.rate_per_unit), ("units", self.units)):
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value < 0):
                raise ValueError(f"line {self.line_no}: {name} must be a non-negative Decimal, got {value!r}")

    def to_wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {"line_no": self.line_no}
        if self.service_no is not None:
            item["service_no"] = self.service_no
        else:
            item["client_service_id"] = self.client_service_id
        if self.rate_per_unit is not None:
            item["rb_rate_per_unit"] = self.rate_per_unit
        if self.units is not None:
            item["rb_units"] = self.units
        return item
