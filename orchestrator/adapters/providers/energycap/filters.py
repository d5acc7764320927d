"""Filters for EnergyCAP's list endpoints, built so that only the contract's decided subset can come out.

    where(BillField.ACCOUNT_PERIOD, Op.EQUALS, 202510) & where(BillField.ACCOUNT_CODE, Op.ONE_OF, "AC-1", "AC-2")
    -> "accountPeriod equals '202510' and accountCode one of 'AC-1'|'AC-2'"

| field                          | values         | operators                                  |
|--------------------------------|----------------|--------------------------------------------|
| billId, accountId              | int > 0        | equals, one of                             |
| accountCode                    | text           | equals, one of, not equals, not one of     |
| accountPeriod, billingPeriod   | int yyyymm     | equals, not equals                         |
| batchCode                      | text           | equals, one of                             |

Quoting is safe by refusal: EnergyCAP documents no escape for a quote inside a value, so a text
value holding `'` (or a control character) raises `ValueError` instead of producing a filter that
could select something else. A list holds 1 to 100 values (`chunked` splits longer ones).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = ["MAX_LIST_VALUES", "Field", "Filter", "Op", "chunked", "where"]

MAX_LIST_VALUES = 100
_MAX_TEXT = 255


class Field(enum.StrEnum):
    BILL_ID = "billId"
    ACCOUNT_ID = "accountId"
    ACCOUNT_CODE = "accountCode"
    ACCOUNT_PERIOD = "accountPeriod"
    BILLING_PERIOD = "billingPeriod"
    BATCH_CODE = "batchCode"


class Op(enum.StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not equals"
    ONE_OF = "one of"
    NOT_ONE_OF = "not one of"

    @property
    def takes_list(self) -> bool:
        return self in (Op.ONE_OF, Op.NOT_ONE_OF)


class _Kind(enum.Enum):
    ID = "a whole number above 0"
    TEXT = "text"
    PERIOD = "a period yyyymm (an int such as 202510)"


_ID_OPS = frozenset({Op.EQUALS, Op.ONE_OF})
_SUBSET: dict[Field, tuple[_Kind, frozenset[Op]]] = {
    Field.BILL_ID: (_Kind.ID, _ID_OPS),
    Field.ACCOUNT_ID: (_Kind.ID, _ID_OPS),
    Field.ACCOUNT_CODE: (_Kind.TEXT, frozenset(Op)),
    Field.ACCOUNT_PERIOD: (_Kind.PERIOD, frozenset({Op.EQUALS, Op.NOT_EQUALS})),
    Field.BILLING_PERIOD: (_Kind.PERIOD, frozenset({Op.EQUALS, Op.NOT_EQUALS})),
    Field.BATCH_CODE: (_Kind.TEXT, _ID_OPS),
}


@dataclass(frozen=True, slots=True)
class Filter:
    """Clauses joined by `and`; `str(filter)` is the `filter=` query value (the client URL-encodes it)."""

    clauses: tuple[str, ...]

    def __and__(self, other: Filter) -> Filter:
        return Filter(self.clauses + other.clauses)

    def __str__(self) -> str:
        return " and ".join(self.clauses)


def where(field: Field, op: Op, *values: int | str) -> Filter:
    """One clause; ValueError for anything outside the decided subset."""
    kind, ops = _SUBSET[field]
    if op not in ops:
        allowed = ", ".join(sorted(o.value for o in ops))
        raise ValueError(f"{field} cannot be filtered with '{op}' (allowed: {allowed})")
    if not values:
        raise ValueError(f"{field} {op} needs a value")
    if not op.takes_list and len(values) > 1:
        raise ValueError(f"{field} {op} takes one value, got {len(values)}")
    if len(values) > MAX_LIST_VALUES:
        raise ValueError(f"{field} {op} takes at most {MAX_LIST_VALUES} values, got {len(values)}")
    quoted = "|".join(f"'{_check(field, kind, value)}'" for value in values)
    return Filter((f"{field} {op} {quoted}",))


def chunked(field: Field, values: Iterable[int | str], size: int = MAX_LIST_VALUES) -> Iterator[Filter]:
    """`field one of ...` over every value, at most `size` per filter (duplicates dropped, order kept)."""
    if not 1 <= size <= MAX_LIST_VALUES:
        raise ValueError(f"size must be between 1 and {MAX_LIST_VALUES}")
    unique: Sequence[int | str] = list(dict.fromkeys(values))
    for start in range(0, len(unique), size):
        yield where(field, Op.ONE_OF, *unique[start : start + size])


def _check(field: Field, kind: _Kind, value: int | str) -> str:
    if kind is _Kind.TEXT:
        if not isinstance(value, str):
            raise ValueError(f"{field} takes {kind.value}, got {type(value).__name__}")
        if not value or len(value) > _MAX_TEXT:
            raise ValueError(f"{field} values must be 1 to {_MAX_TEXT} characters")
        if "'" in value or any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError(f"{field} value {value!r} holds a quote or control character: it cannot be quoted safely")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} takes {kind.value}, got {value!r}")
    if kind is _Kind.PERIOD and not (190_001 <= value <= 209_912 and 1 <= value % 100 <= 12):
        raise ValueError(f"{field} takes {kind.value}, got {value}")
    if kind is _Kind.ID and value < 1:
        raise ValueError(f"{field} takes {kind.value}, got {value}")
    return str(value)
