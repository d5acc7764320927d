"""The query filters of the list endpoints (`?Property=operation:value`): parsed, checked, applied.

A parameter `Balance=gt:0` is the filter (Balance, gt, 0); a value without a known operation is an
`eq` (`BillingLogKey=a9f0…`). `in` and `between` take `|`- or comma-separated values. A property is
looked up case-blind in the entity's table below, its values are read as that property's kind
(a decimal, an int (`cash`/`accrual` name an accounting method), or a string compared case-blind),
and a property with no value matches `ne` only. An unknown property or a bad value is a `BadRequest`;
several filters must all match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from simulators.imis.entities import ACCOUNTING_METHODS
from simulators.imis.errors import BadRequest

FILTER_OPERATIONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "contains", "startswith", "in", "between"})


@dataclass(frozen=True, slots=True)
class Filter:
    field: str  # as the client spelled it
    operation: str  # lower case, one of FILTER_OPERATIONS
    values: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, raw: str) -> Filter:
        op, sep, rest = raw.partition(":")
        if sep and op.lower() in FILTER_OPERATIONS:
            operation = op.lower()
            if operation in ("in", "between"):
                parts = rest.split("|") if "|" in rest else rest.split(",")
                return cls(name, operation, tuple(p.strip() for p in parts))
            return cls(name, operation, (rest,))
        return cls(name, "eq", (raw,))


Getter = Callable[[Any], Any]


def _coerce(kind: type, raw: str, field_name: str) -> Any:
    try:
        if kind is Decimal:
            return Decimal(raw)
        if kind is int:
            if raw.strip().lower() in ACCOUNTING_METHODS:
                return ACCOUNTING_METHODS[raw.strip().lower()]
            return int(raw)
    except (ArithmeticError, ValueError):
        raise BadRequest(f"'{raw}' is not a valid value for {field_name}", field_name) from None
    return raw.lower()


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b[0]),
    "ne": lambda a, b: bool(a != b[0]),
    "gt": lambda a, b: bool(a > b[0]),
    "ge": lambda a, b: bool(a >= b[0]),
    "lt": lambda a, b: bool(a < b[0]),
    "le": lambda a, b: bool(a <= b[0]),
    "in": lambda a, b: a in b,
    "between": lambda a, b: bool(b[0] <= a <= b[1]),
    "contains": lambda a, b: str(b[0]).lower() in str(a).lower(),
    "startswith": lambda a, b: str(a).lower().startswith(str(b[0]).lower()),
}


@dataclass(frozen=True, slots=True)
class _CompiledFilter:
    getter: Getter
    lower: bool
    compare: Callable[[Any, Any], bool]
    args: tuple[Any, ...]
    operation: str

    def __call__(self, item: Any) -> bool:
        value = self.getter(item)
        if value is None:
            return self.operation == "ne"
        if self.lower:
            value = value.lower()
        return self.compare(value, self.args)


def _compile(flt: Filter, kind: type, getter: Getter) -> _CompiledFilter:
    args = tuple(_coerce(kind, v, flt.field) for v in flt.values)
    if flt.operation == "between" and len(args) != 2:
        raise BadRequest(f"between needs two values for {flt.field}", flt.field)
    return _CompiledFilter(getter, kind is str, _COMPARE[flt.operation], args, flt.operation)


INVOICE_FILTERS: dict[str, tuple[type, Getter]] = {
    "billinglogkey": (str, lambda i: i.billing_log_key),
    "invoiceid": (str, lambda i: i.invoice_id),
    "invoicenumber": (int, lambda i: i.number),
    "billtopartyid": (str, lambda i: i.bill_to),
    "soldtopartyid": (str, lambda i: i.sold_to),
    "balance": (Decimal, lambda i: i.balance),
    "invoiceamount": (Decimal, lambda i: i.amount),
    "paymentamount": (Decimal, lambda i: i.payment_amount),
    "pendingpaymentamount": (Decimal, lambda i: i.pending_payment_amount),
    "accountingmethod": (int, lambda i: i.accounting_method),
    "sourcesystem": (str, lambda i: i.source.value),
}

BILLING_LOG_FILTERS: dict[str, tuple[type, Getter]] = {
    "billinglogkey": (str, lambda b: b.key),
    "billingcyclename": (str, lambda b: b.cycle_name),
    "billingrunname": (str, lambda b: b.run_name),
    "originalbillinglogkey": (str, lambda b: b.original_key),
    "status": (int, lambda b: b.status),
    "billingpartyid": (str, lambda b: b.party_id),
    "accountingmethod": (int, lambda b: b.accounting_method),
    "batchid": (str, lambda b: b.batch_id),
}


def apply_filters(
    items: Iterable[Any], filters: Sequence[Filter], table: Mapping[str, tuple[type, Getter]], entity: str
) -> list[Any]:
    """The `items` matching every filter, in their order; `table` is the entity's filterable properties."""
    compiled = []
    for flt in filters:
        spec = table.get(flt.field.lower())
        if spec is None:
            raise BadRequest(f"'{flt.field}' is not a filterable property of {entity}", flt.field)
        compiled.append(_compile(flt, *spec))
    if not compiled:
        return list(items)
    if len(compiled) == 1:
        return [item for item in items if compiled[0](item)]
    return [item for item in items if all(check(item) for check in compiled)]
