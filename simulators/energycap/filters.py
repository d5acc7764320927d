"""The `filter=` subset of the list endpoints (contract, decided): parsed, checked, evaluated.

    filter  := clause (" and " clause)*
    clause  := field operator values
    values  := quoted ("|" quoted)*          a quoted value is '...' and holds no quote

| field                          | kind   | operators                                        |
|--------------------------------|--------|--------------------------------------------------|
| billId, accountId              | int    | equals, one of                                   |
| accountCode                    | string | equals, one of, not equals, not one of           |
| accountPeriod, billingPeriod   | yyyymm | equals, not equals                               |
| batchCode                      | string | equals, one of                                   |

Field names, operators and `and` are read case-blind, strings compare case-blind, a list holds at
most 100 values. Anything else (another field or operator, a bad value, broken syntax) is a
`SimError` (400): the simulator never guesses what an unsupported filter meant.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from simulators.energycap.errors import SimError

MAX_LIST_VALUES = 100

T = TypeVar("T")


class Kind(enum.Enum):
    INT = "int"
    STRING = "string"
    PERIOD = "yyyymm"


class Operator(enum.StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not equals"
    ONE_OF = "one of"
    NOT_ONE_OF = "not one of"

    @property
    def is_list(self) -> bool:
        return self in (Operator.ONE_OF, Operator.NOT_ONE_OF)

    @property
    def negated(self) -> bool:
        return self in (Operator.NOT_EQUALS, Operator.NOT_ONE_OF)


@dataclass(frozen=True, slots=True)
class Clause:
    """One `field operator values` as written (field and values not yet checked)."""

    field: str
    operator: Operator
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FieldSpec(Generic[T]):
    """A filterable field of one entity: its name, kind, operators and how to read it."""

    name: str
    kind: Kind
    operators: frozenset[Operator]
    read: Callable[[T], Any]


INT_OPERATORS = frozenset({Operator.EQUALS, Operator.ONE_OF})
ALL_OPERATORS = frozenset(Operator)
PERIOD_OPERATORS = frozenset({Operator.EQUALS, Operator.NOT_EQUALS})


_OPERATOR = re.compile(r"(not\s+equals|equals|not\s+one\s+of|one\s+of)(?=\s*')", re.IGNORECASE)
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_AND = re.compile(r"\s+and(?:\s+|$)", re.IGNORECASE)
_PERIOD = re.compile(r"(\d{4})(\d{2})")


def parse(text: str) -> list[Clause]:
    """The clauses of a filter; an empty or blank filter has none. Raises SimError on broken syntax."""
    if not text.strip():
        return []
    clauses: list[Clause] = []
    position = _skip_spaces(text, 0)
    while True:
        clause, position = _clause(text, position)
        clauses.append(clause)
        if not text[position:].strip():
            return clauses
        joiner = _AND.match(text, position)
        if joiner is None:
            raise SimError(f"Invalid filter: expected 'and' at position {position + 1} of {text!r}.")
        position = joiner.end()


def compile_filter(text: str | None, fields: Sequence[FieldSpec[T]], entity: str) -> Callable[[T], bool] | None:
    """A predicate for the filter (None when there is none); SimError for anything outside the subset."""
    if text is None or not text.strip():
        return None
    by_name = {spec.name.lower(): spec for spec in fields}
    checks = [_compile_clause(clause, by_name, entity) for clause in parse(text)]
    if len(checks) == 1:
        return checks[0]
    return lambda item: all(check(item) for check in checks)


def _clause(text: str, position: int) -> tuple[Clause, int]:
    field = _FIELD.match(text, position)
    if field is None:
        raise SimError(f"Invalid filter: expected a field name at position {position + 1} of {text!r}.")
    position = _skip_spaces(text, field.end())
    operator = _OPERATOR.match(text, position)
    if operator is None:
        rest = text[position:].split("'", 1)[0].strip() or text[position:]
        raise SimError(f"Invalid filter: unsupported operator {rest!r} for {field.group()}.")
    position = _skip_spaces(text, operator.end())
    values: list[str] = []
    while True:
        value, position = _quoted(text, position)
        values.append(value)
        after = _skip_spaces(text, position)
        if not text.startswith("|", after):
            break
        position = _skip_spaces(text, after + 1)
    name = " ".join(operator.group(1).lower().split())
    return Clause(field.group(), Operator(name), tuple(values)), position


def _quoted(text: str, position: int) -> tuple[str, int]:
    if not text.startswith("'", position):
        raise SimError(f"Invalid filter: expected a quoted value at position {position + 1} of {text!r}.")
    end = text.find("'", position + 1)
    if end < 0:
        raise SimError(f"Invalid filter: unterminated quote at position {position + 1} of {text!r}.")
    return text[position + 1 : end], end + 1


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _compile_clause(clause: Clause, fields: Mapping[str, FieldSpec[T]], entity: str) -> Callable[[T], bool]:
    spec = fields.get(clause.field.lower())
    if spec is None:
        raise SimError(f"Invalid filter: {clause.field!r} is not a filterable field of {entity}.")
    if clause.operator not in spec.operators:
        raise SimError(f"Invalid filter: operator '{clause.operator}' is not supported for {spec.name}.")
    if not clause.operator.is_list and len(clause.values) != 1:
        raise SimError(f"Invalid filter: '{clause.operator}' takes one value, got {len(clause.values)}.")
    if len(clause.values) > MAX_LIST_VALUES:
        raise SimError(
            f"Invalid filter: '{clause.operator}' takes at most {MAX_LIST_VALUES} values, got {len(clause.values)}."
        )
    wanted = frozenset(_value(spec, raw) for raw in clause.values)
    read, negated = spec.read, clause.operator.negated
    if spec.kind is Kind.STRING:
        return lambda item: (str(read(item) or "").lower() in wanted) != negated
    return lambda item: (read(item) in wanted) != negated


def _value(spec: FieldSpec[Any], raw: str) -> int | str:
    if spec.kind is Kind.STRING:
        return raw.lower()
    text = raw.strip()
    if spec.kind is Kind.PERIOD:
        period = _PERIOD.fullmatch(text)
        if period is None or not 1 <= int(period.group(2)) <= 12:
            raise SimError(f"Invalid filter: {spec.name} takes a period yyyymm, got {raw!r}.")
        return int(text)
    if not text.isdigit():
        raise SimError(f"Invalid filter: {spec.name} takes whole numbers, got {raw!r}.")
    return int(text)
