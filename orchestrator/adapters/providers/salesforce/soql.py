"""SOQL of the contract's subset, built from typed parts: nothing outside it can be written, nothing injected.

    query = (
        select(INVOICE, "Id", "Status", "Balance")
        .where(eq("InvoiceBatchRunId", run_id), eq("Status", "Posted"))
        .order_by_id()
    )
    query.soql
    # SELECT Id, Status, Balance FROM Invoice WHERE InvoiceBatchRunId = '…' AND Status = 'Posted' ORDER BY Id ASC

The subset (`../shared/reference/salesforce-billing-api.md`): `SELECT` fields or `COUNT()` from Invoice,
InvoiceLine or BillingSchedule; `WHERE` conditions joined by `AND` only: `=`, `!=` (with `null` too),
`IN` (1 to 200 values), `>` and `<` (currency fields, numbers); `ORDER BY Id`; `LIMIT`.

Everything is checked when the query is built (a `ValueError` names what is wrong): fields must be
the object's own, in canonical case (the record models in `wire.py` are the one list of them);
id and text fields take strings, currency fields numbers (`Decimal` or `int`, never `float`);
date fields cannot be filtered. Strings are always quoted and escaped (`\\` and `'`, and control
characters), so a value can never end its literal and add SOQL of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, Literal, TypeVar

from orchestrator.adapters.providers.salesforce.wire import (
    BillingScheduleRecord,
    FieldKind,
    InvoiceLineRecord,
    InvoiceRecord,
    Record,
)

__all__ = [
    "BILLING_SCHEDULE",
    "INVOICE",
    "INVOICE_LINE",
    "MAX_IN_VALUES",
    "Condition",
    "Query",
    "SObject",
    "count",
    "eq",
    "gt",
    "in_batches",
    "is_in",
    "lt",
    "ne",
    "quote",
    "select",
    "select_in",
]

#: The most values one `IN (…)` may hold.
MAX_IN_VALUES = 200

R = TypeVar("R", bound=Record)
Value = str | Decimal | int | None
Operator = Literal["=", "!=", "IN", ">", "<"]


@dataclass(frozen=True, slots=True)
class SObject(Generic[R]):
    """An object the subset can query, and the record model its rows are read with."""

    name: str
    record: type[R]

    def kind(self, field: str) -> FieldKind:
        kind = self.record.field_kinds().get(field)
        if kind is None:
            known = ", ".join(sorted(self.record.field_kinds()))
            raise ValueError(f"{self.name} has no field {field!r} (fields, in canonical case: {known})")
        return kind


INVOICE = SObject("Invoice", InvoiceRecord)
INVOICE_LINE = SObject("InvoiceLine", InvoiceLineRecord)
BILLING_SCHEDULE = SObject("BillingSchedule", BillingScheduleRecord)


@dataclass(frozen=True, slots=True)
class Condition:
    """One `WHERE` condition; build it with `eq`, `ne`, `is_in`, `gt` or `lt`."""

    field: str
    op: Operator
    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        for value in self.values:
            _check_value(self.field, value)
        if self.op not in ("=", "!=") and None in self.values:
            raise ValueError(f"{self.field}: null can only be compared with = or !=")
        if not 1 <= len(self.values) <= (MAX_IN_VALUES if self.op == "IN" else 1):
            raise ValueError(f"{self.field} {self.op}: takes 1 to {MAX_IN_VALUES} values, got {len(self.values)}")

    def check(self, sobject: SObject[R]) -> None:
        kind = sobject.kind(self.field)
        if kind in (FieldKind.DATE, FieldKind.DATETIME):
            raise ValueError(f"{sobject.name}.{self.field} is a date: dates can be selected, not filtered")
        if self.op in (">", "<") and kind is not FieldKind.CURRENCY:
            raise ValueError(f"{sobject.name}.{self.field}: {self.op} compares currency fields only")
        wanted: type | tuple[type, ...] = (Decimal, int) if kind is FieldKind.CURRENCY else str
        for value in self.values:
            if value is not None and not isinstance(value, wanted):
                what = "numbers" if kind is FieldKind.CURRENCY else "strings"
                raise ValueError(f"{sobject.name}.{self.field} takes {what}, got {type(value).__name__}")

    def render(self) -> str:
        if self.op == "IN":
            return f"{self.field} IN ({', '.join(_literal(v) for v in self.values)})"
        return f"{self.field} {self.op} {_literal(self.values[0])}"


def eq(field: str, value: Value) -> Condition:
    """`field = value`; `= null` matches empty fields. Text compares case-insensitively, ids exactly."""
    return Condition(field, "=", (value,))


def ne(field: str, value: Value) -> Condition:
    """`field != value`; matches empty fields too (`!= null`: only the non-empty ones)."""
    return Condition(field, "!=", (value,))


def is_in(field: str, values: Iterable[str | Decimal | int]) -> Condition:
    """`field IN (…)` with 1 to 200 values (`in_batches` cuts longer lists)."""
    return Condition(field, "IN", tuple(values))


def gt(field: str, number: Decimal | int) -> Condition:
    return Condition(field, ">", (number,))


def lt(field: str, number: Decimal | int) -> Condition:
    return Condition(field, "<", (number,))


@dataclass(frozen=True, slots=True)
class Query(Generic[R]):
    """A checked query of the subset; `soql` is its text. Immutable: `where`, `order_by_id` and
    `limit` return new queries."""

    sobject: SObject[R]
    fields: tuple[str, ...]  # empty: SELECT COUNT()
    conditions: tuple[Condition, ...] = ()
    descending: bool | None = None  # None: no ORDER BY
    max_rows: int | None = None

    def __post_init__(self) -> None:
        for field in self.fields:
            self.sobject.kind(field)
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"a field is selected twice: {', '.join(self.fields)}")
        for condition in self.conditions:
            condition.check(self.sobject)
        if self.max_rows is not None and (isinstance(self.max_rows, bool) or self.max_rows < 0):
            raise ValueError(f"LIMIT must be a non-negative integer, got {self.max_rows!r}")

    @property
    def is_count(self) -> bool:
        return not self.fields

    def where(self, *conditions: Condition) -> Query[R]:
        """This query with more conditions, joined by AND."""
        return dataclasses.replace(self, conditions=self.conditions + conditions)

    def order_by_id(self, *, descending: bool = False) -> Query[R]:
        return dataclasses.replace(self, descending=descending)

    def limit(self, rows: int) -> Query[R]:
        return dataclasses.replace(self, max_rows=rows)

    @property
    def soql(self) -> str:
        # Names come from the record models only, and every value is quoted by `quote`: nothing is injected.
        selected = ", ".join(self.fields) if self.fields else "COUNT()"
        parts = [f"SELECT {selected} FROM {self.sobject.name}"]  # noqa: S608 - see above
        if self.conditions:
            parts.append("WHERE " + " AND ".join(condition.render() for condition in self.conditions))
        if self.descending is not None:
            parts.append(f"ORDER BY Id {'DESC' if self.descending else 'ASC'}")
        if self.max_rows is not None:
            parts.append(f"LIMIT {self.max_rows}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.soql


def select(sobject: SObject[R], *fields: str) -> Query[R]:
    """`SELECT fields FROM object`: at least one field, each the object's own, in canonical case."""
    if not fields:
        raise ValueError("select at least one field (or use count())")
    return Query(sobject, tuple(fields))


def count(sobject: SObject[R]) -> Query[R]:
    """`SELECT COUNT() FROM object`: the page's `totalSize` is the answer, its records are empty."""
    return Query(sobject, ())


def select_in(sobject: SObject[R], field: str, values: Sequence[str], *fields: str) -> list[Query[R]]:
    """`SELECT fields FROM object WHERE field IN (…)`, one query per 200 of `values` (none for none)."""
    return [select(sobject, *fields).where(is_in(field, batch)) for batch in in_batches(values)]


def in_batches(values: Sequence[str], size: int = MAX_IN_VALUES) -> Iterator[tuple[str, ...]]:
    """`values` in runs of at most `size` (≤ 200), in order, for one `IN (…)` each."""
    if not 1 <= size <= MAX_IN_VALUES:
        raise ValueError(f"size must be 1 to {MAX_IN_VALUES}")
    for start in range(0, len(values), size):
        yield tuple(values[start : start + size])


_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"})


def quote(text: str) -> str:
    """A SOQL string literal holding exactly `text`: its quotes and backslashes escaped."""
    return "'" + text.translate(_ESCAPES) + "'"


def _literal(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _check_value(field: str, value: object) -> None:
    if value is None or isinstance(value, str):
        return
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"{field}: a value must be a string, a Decimal, an int or None, got {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{field}: {value} is not a finite number")
