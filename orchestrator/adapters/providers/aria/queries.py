"""Object-query strings for `get_invoice_information_m`, limited to the contract's decided subset.

Only `key = value` / `key != value` conditions joined by `AND` on `bill_date`, `acct_no`,
`invoice_no`, `client_acct_id` and `invoice_type_cd`, ordered by `invoice_no`: anything else is
refused here, before a request is built, rather than by Aria (1016) halfway through a run.

    bill_run(date(2025, 10, 1)).text
    -> "bill_date = 2025-10-01 AND invoice_type_cd != R ORDER BY invoice_no ASC"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

__all__ = ["InvoiceQuery", "QueryKey", "bill_run", "one_invoice"]

QueryKey = Literal["bill_date", "acct_no", "invoice_no", "client_acct_id", "invoice_type_cd"]

_KEY_TYPES: dict[str, type] = {
    "bill_date": date,
    "acct_no": int,
    "invoice_no": int,
    "client_acct_id": str,
    "invoice_type_cd": str,
}
#: What a text value may hold: no spaces, quotes or operators that would change the query.
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:@/-]{1,100}")


@dataclass(frozen=True, slots=True)
class Condition:
    key: QueryKey
    value: date | int | str
    negated: bool = False

    @property
    def text(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, date) else str(self.value)
        return f"{self.key} {'!=' if self.negated else '='} {value}"


@dataclass(frozen=True, slots=True)
class InvoiceQuery:
    """An immutable query; `where` / `where_not` return a new one with the condition added."""

    conditions: tuple[Condition, ...] = ()
    descending: bool = False

    def where(self, key: QueryKey, value: date | int | str) -> InvoiceQuery:
        return self._with(Condition(key, _checked(key, value)))

    def where_not(self, key: QueryKey, value: date | int | str) -> InvoiceQuery:
        return self._with(Condition(key, _checked(key, value), negated=True))

    def _with(self, condition: Condition) -> InvoiceQuery:
        return InvoiceQuery((*self.conditions, condition), self.descending)

    @property
    def text(self) -> str:
        """The `query_string` to send."""
        order = f"ORDER BY invoice_no {'DESC' if self.descending else 'ASC'}"
        where = " AND ".join(condition.text for condition in self.conditions)
        return f"{where} {order}" if where else order


def _checked(key: str, value: date | int | str) -> date | int | str:
    expected = _KEY_TYPES.get(key)
    if expected is None:
        raise ValueError(f"{key!r} is not a supported object-query key (one of {', '.join(_KEY_TYPES)})")
    if isinstance(value, bool | datetime) or not isinstance(value, expected):
        raise ValueError(f"{key} takes a {expected.__name__}, not {type(value).__name__}")
    if isinstance(value, str) and not _SAFE_TEXT.fullmatch(value):
        raise ValueError(f"{key} value {value!r} holds characters an object query cannot carry")
    return value


def bill_run(bill_date: date, *, acct_no: int | None = None) -> InvoiceQuery:
    """The originals of one bill date (optionally one account's): rebill invoices (`R`) left out."""
    query = InvoiceQuery().where("bill_date", bill_date)
    if acct_no is not None:
        query = query.where("acct_no", acct_no)
    return query.where_not("invoice_type_cd", "R")


def one_invoice(invoice_no: int) -> InvoiceQuery:
    """One invoice's header (a run from a file of invoice numbers)."""
    return InvoiceQuery().where("invoice_no", invoice_no)
