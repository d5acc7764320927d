"""The contract's SOQL subset: parsed, checked against the three objects, evaluated over records.

    SELECT <field>[, <field>…] | COUNT()  FROM Invoice | InvoiceLine | BillingSchedule
      [WHERE <cond> [AND <cond>…]]  [ORDER BY Id [ASC|DESC]]  [LIMIT <n>]
    <cond> := <field> = <lit> | <field> != <lit> | <field> IN (<lit>, …) | <field> > <number> | <field> < <number>
    <lit>  := '<string>' (\\' escapes a quote) | <number> | null      (null only with = and !=)

Everything the subset accepts is accepted; everything else is refused the way the contract says:
`MALFORMED_QUERY` for syntax and anything outside the subset (OR, NOT, LIKE, <=, >=, parentheses,
relationship fields, sub-queries, date literals, filters on dates, more than 200 IN values),
`INVALID_FIELD` for an unknown field, a quoted number or an unquoted string, `INVALID_TYPE` for
another object. Keywords and field names are case-insensitive; `=` on text is case-insensitive,
on ids exact; `!=` matches nulls.

The module knows nothing of the simulator's state: `SCHEMA` names, for each field, the attribute
of a record object that holds its value, and `Query.run` evaluates over any such objects.
"""

from __future__ import annotations

import enum
import functools
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = [
    "MAX_IN_VALUES",
    "SCHEMA",
    "FieldKind",
    "Query",
    "SoqlError",
    "parse",
    "render_value",
]

MAX_IN_VALUES = 200


class FieldKind(enum.Enum):
    ID = "id"
    TEXT = "text"
    CURRENCY = "currency"
    DATE = "date"
    DATETIME = "datetime"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str  # canonical case, as records carry it
    kind: FieldKind
    attr: str  # the record object's attribute


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    name: str
    fields: dict[str, FieldSpec]  # lower-case name -> spec

    def field(self, name: str) -> FieldSpec:
        spec = self.fields.get(name.lower())
        if spec is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{self.name}'.")
        return spec


def _object(name: str, *fields: tuple[str, FieldKind, str]) -> ObjectSpec:
    return ObjectSpec(name, {n.lower(): FieldSpec(n, kind, attr) for n, kind, attr in fields})


_ID, _TEXT, _MONEY, _DATE, _DATETIME = (
    FieldKind.ID,
    FieldKind.TEXT,
    FieldKind.CURRENCY,
    FieldKind.DATE,
    FieldKind.DATETIME,
)

#: The objects and fields of the contract, by lower-case object name.
SCHEMA: dict[str, ObjectSpec] = {
    spec.name.lower(): spec
    for spec in (
        _object(
            "Invoice",
            ("Id", _ID, "id"),
            ("InvoiceNumber", _TEXT, "number"),
            ("Status", _TEXT, "status"),
            ("BillingAccountId", _ID, "billing_account_id"),
            ("InvoiceBatchRunId", _ID, "batch_run_id"),
            ("InvoiceDate", _DATE, "invoice_date"),
            ("DueDate", _DATE, "due_date"),
            ("PostedDate", _DATETIME, "posted_date"),
            ("TotalAmount", _MONEY, "total_amount"),
            ("TotalAmountWithTax", _MONEY, "total_with_tax"),
            ("Balance", _MONEY, "balance"),
            ("NetPaymentsApplied", _MONEY, "net_payments"),
            ("NetCreditsApplied", _MONEY, "net_credits"),
            ("CurrencyIsoCode", _TEXT, "currency"),
            ("Description", _TEXT, "description"),
        ),
        _object(
            "InvoiceLine",
            ("Id", _ID, "id"),
            ("InvoiceId", _ID, "invoice_id"),
            ("BillingScheduleId", _ID, "schedule_id"),
            ("Name", _TEXT, "name"),
            ("Type", _TEXT, "type"),
            ("LineAmount", _MONEY, "amount"),
            ("TaxAmount", _MONEY, "tax"),
            ("InvoiceLineStartDate", _DATE, "start_date"),
            ("InvoiceLineEndDate", _DATE, "end_date"),
        ),
        _object(
            "BillingSchedule",
            ("Id", _ID, "id"),
            ("BillingAccountId", _ID, "billing_account_id"),
            ("Status", _TEXT, "status"),
            ("BilledAmount", _MONEY, "billed_amount"),
        ),
    )
}


class SoqlError(Exception):
    """A refused query: `error_code` is MALFORMED_QUERY, INVALID_FIELD or INVALID_TYPE."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


def _malformed(message: str) -> SoqlError:
    return SoqlError("MALFORMED_QUERY", message)


# --------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------


class _T(enum.Enum):
    WORD = "word"  # identifiers and keywords; `dotted` when it holds a '.'
    STRING = "string"
    NUMBER = "number"
    OP = "op"
    PUNCT = "punct"
    END = "end"


class _Token(NamedTuple):  # a tuple: a query of 200 ids has over 600 tokens, made quicker than a dataclass
    kind: _T
    text: str  # the source text (for strings: the decoded value)
    column: int

    def is_word(self, *keywords: str) -> bool:
        return self.kind is _T.WORD and self.text.upper() in keywords

    def shown(self) -> str:
        return "end of query" if self.kind is _T.END else f"'{self.text}'"


_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
#: One token at a position, by the first alternative that matches (the order is the tokenizer's rule):
#: whitespace, a string literal without a backslash (its text is its value), the opening quote of any
#: other literal (`_string` decodes it), punctuation, a number, a word, an operator.
_TOKEN = re.compile(
    r"(?P<space>\s+)|'(?P<string>[^'\\]*)'|(?P<quote>')|(?P<punct>[(),])"
    r"|(?P<number>-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.]))"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>!=|<>|<=|>=|=|<|>)"
)
_KINDS = {"string": _T.STRING, "punct": _T.PUNCT, "number": _T.NUMBER, "word": _T.WORD, "op": _T.OP}


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        match = _TOKEN.match(text, i)
        if match is None:
            raise _malformed(f"unexpected character '{text[i]}' at column {i + 1}")
        kind = match.lastgroup
        if kind == "quote":
            value, end = _string(text, i)
            tokens.append(_Token(_T.STRING, value, i + 1))
            i = end
            continue
        if kind != "space":
            assert kind is not None
            tokens.append(_Token(_KINDS[kind], match.group(kind), i + 1))
        i = match.end()
    tokens.append(_Token(_T.END, "", n + 1))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """The decoded literal that opens at `start`, and the index after its closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            escaped = text[i + 1 : i + 2]
            if escaped not in _ESCAPES:
                raise _malformed(f"invalid escape sequence '\\{escaped}' at column {i + 1}")
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise _malformed(f"unterminated string literal at column {start + 1}")


# --------------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------------


class _Null:
    """The `null` literal."""


NULL = _Null()


@dataclass(frozen=True, slots=True)
class _Bare:
    """An unquoted word where a literal belongs (`Status = Posted`, `InvoiceDate = TODAY`)."""

    text: str


_Literal = str | Decimal | _Null | _Bare


@dataclass(frozen=True, slots=True)
class _Condition:
    field: str
    op: str  # "=", "!=", "<", ">", "IN"
    values: tuple[_Literal, ...]


@dataclass(frozen=True, slots=True)
class _Statement:
    fields: tuple[str, ...]  # empty for COUNT()
    count: bool
    object_name: str
    conditions: tuple[_Condition, ...]
    order_by: str | None
    descending: bool
    limit: int | None


_RESERVED = frozenset(
    {
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC", "LIMIT",
        "NULL", "OFFSET", "GROUP", "HAVING", "NULLS", "FIRST", "LAST", "INCLUDES", "EXCLUDES", "WITH",
        "TYPEOF", "USING", "FOR", "UPDATE", "TRUE", "FALSE",
    }
)  # fmt: skip


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        if token.kind is not _T.END:
            self.pos += 1
        return token

    def unexpected(self, token: _Token | None = None) -> SoqlError:
        token = token or self.current
        return _malformed(f"unexpected token: {token.shown()} at column {token.column}")

    def keyword(self, *words: str) -> _Token:
        token = self.current
        if not token.is_word(*words):
            raise self.unexpected()
        return self.advance()

    def punct(self, char: str) -> None:
        if self.current.kind is not _T.PUNCT or self.current.text != char:
            raise self.unexpected()
        self.advance()

    def name(self) -> str:
        """A field or object name: one plain word, not a keyword, not a relationship path."""
        token = self.current
        if token.kind is not _T.WORD or token.text.upper() in _RESERVED:
            raise self.unexpected()
        if "." in token.text:
            raise _malformed(f"relationship fields are outside the supported subset: '{token.text}'")
        return self.advance().text

    def statement(self) -> _Statement:
        self.keyword("SELECT")
        count = False
        fields: list[str] = []
        if self.current.is_word("COUNT") and self.tokens[self.pos + 1].text == "(":
            self.advance()
            self.punct("(")
            self.punct(")")
            count = True
        else:
            fields.append(self.name())
            while self.current.text == "," and self.current.kind is _T.PUNCT:
                self.advance()
                fields.append(self.name())
        self.keyword("FROM")
        object_name = self.name()
        conditions: list[_Condition] = []
        if self.current.is_word("WHERE"):
            self.advance()
            conditions.append(self.condition())
            while self.current.is_word("AND"):
                self.advance()
                conditions.append(self.condition())
            if self.current.is_word("OR"):
                raise _malformed("OR is outside the supported subset")
        order_by, descending = None, False
        if self.current.is_word("ORDER"):
            self.advance()
            self.keyword("BY")
            order_by = self.name()
            if self.current.is_word("ASC", "DESC"):
                descending = self.advance().text.upper() == "DESC"
        limit = None
        if self.current.is_word("LIMIT"):
            self.advance()
            token = self.current
            if token.kind is not _T.NUMBER or not token.text.isdigit():
                raise self.unexpected()
            limit = int(self.advance().text)
        if self.current.kind is not _T.END:
            raise self.unexpected()
        seen: set[str] = set()
        for name in fields:
            if name.lower() in seen:
                raise _malformed(f"duplicate field selected: {name}")
            seen.add(name.lower())
        return _Statement(tuple(fields), count, object_name, tuple(conditions), order_by, descending, limit)

    def condition(self) -> _Condition:
        token = self.current
        if token.kind is _T.PUNCT and token.text == "(":
            raise _malformed(f"parentheses are outside the supported subset (column {token.column})")
        if token.is_word("NOT"):
            raise _malformed("NOT is outside the supported subset")
        field = self.name()
        token = self.current
        if token.is_word("IN"):
            self.advance()
            return _Condition(field, "IN", self.in_list())
        if token.is_word("LIKE", "NOT", "INCLUDES", "EXCLUDES"):
            raise _malformed(f"{token.text.upper()} is outside the supported subset")
        if token.kind is not _T.OP:
            raise self.unexpected()
        if token.text not in ("=", "!=", "<", ">"):
            raise _malformed(f"the operator {token.text} is outside the supported subset")
        self.advance()
        return _Condition(field, token.text, (self.literal(),))

    def in_list(self) -> tuple[_Literal, ...]:
        self.punct("(")
        if self.current.is_word("SELECT"):
            raise _malformed("sub-queries are outside the supported subset")
        values = [self.literal()]
        tokens = self.tokens
        while (comma := tokens[self.pos]).kind is _T.PUNCT and comma.text == ",":
            value = tokens[self.pos + 1]  # a comma is never the last token (END is)
            if value.kind is _T.STRING:  # the common case, read without the calls `literal` makes
                values.append(value.text)
                self.pos += 2
                continue
            self.pos += 1
            values.append(self.literal())
        self.punct(")")
        return tuple(values)

    def literal(self) -> _Literal:
        token = self.current
        if token.kind is _T.STRING:
            self.advance()
            return token.text
        if token.kind is _T.NUMBER:
            self.advance()
            return Decimal(token.text)
        if token.is_word("NULL"):
            self.advance()
            return NULL
        if token.kind is _T.WORD and token.text.upper() not in _RESERVED and "." not in token.text:
            self.advance()
            return _Bare(token.text)
        raise self.unexpected()


# --------------------------------------------------------------------------------------------------
# Checking and evaluation
# --------------------------------------------------------------------------------------------------

Predicate = Callable[[Any], bool]

#: An index of the records: the ones whose id field (canonical name) holds one of the values, or
#: None when that field has no index (the query then reads every record).
Seek = Callable[[str, tuple[str, ...]], Iterable[Any] | None]


@dataclass(frozen=True, slots=True)
class Query:
    """A checked query, ready to run over the records of `object`."""

    object: ObjectSpec
    fields: tuple[FieldSpec, ...]
    count: bool
    predicates: tuple[Predicate, ...]
    descending: bool | None  # None: no ORDER BY
    limit: int | None
    #: Id fields compared with `=` or `IN` (non-null values): what an index can narrow the records to.
    seeks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _snapshot: Callable[[Any], tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def run(self, records: Iterable[Any], seek: Seek | None = None) -> list[Any]:
        """The matching records in the query's order, at most `limit` of them.

        With `seek`, the records come from the first indexed id condition instead of all of them; every
        condition still applies to each, so the answer is the same, only cheaper.
        """
        predicates = self.predicates
        if seek is not None:
            for field, values in self.seeks:
                found = seek(field, values)
                if found is not None:
                    records = {id(record): record for record in found}.values()  # once each, as a scan gives them
                    break
        if len(predicates) == 1:  # the usual query: one condition, tested without a generator per record
            test = predicates[0]
            matched = [record for record in records if test(record)]
        else:
            matched = [record for record in records if all(p(record) for p in predicates)]
        if self.descending is not None:
            matched.sort(key=lambda record: str(record.id), reverse=self.descending)
        if self.limit is not None:
            del matched[self.limit :]
        return matched

    def project(self, record: Any, url_prefix: str) -> dict[str, Any]:
        """One record as the query returns it: `attributes`, then the selected fields in canonical case."""
        return self.render(self.snapshot(record), url_prefix)

    def snapshot(self, record: Any) -> tuple[Any, ...]:
        """The record's id and selected values as they are now (immutable values: a locator's pages keep
        these, and `render` makes the returned records of them when a page is asked for)."""
        return self._snapshot(record)

    def render(self, row: tuple[Any, ...], url_prefix: str) -> dict[str, Any]:
        """A `snapshot` as the query returns it: `attributes`, then the selected fields in canonical case."""
        out: dict[str, Any] = {"attributes": {"type": self.object.name, "url": f"{url_prefix}/{row[0]}"}}
        for name, value in zip(self._names, itertools.islice(row, 1, None), strict=True):
            out[name] = value if value.__class__ in _AS_IS else render_value(value)
        return out

    def __post_init__(self) -> None:
        names = tuple(spec.name for spec in self.fields)
        attrs = ("id", *(spec.attr for spec in self.fields))
        snapshot = operator.attrgetter(*attrs) if len(attrs) > 1 else lambda record: (record.id,)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_snapshot", snapshot)


#: Types `render_value` hands back unchanged (checked exactly: a date is an instance of none of them).
_AS_IS = frozenset({str, Decimal, int, bool, float, type(None)})


def render_value(value: Any) -> Any:
    """A field value as JSON carries it: dates `yyyy-mm-dd`, date-times `…T06:00:00.000+0000`."""
    if isinstance(value, datetime):
        return _render_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@functools.lru_cache(maxsize=4096)
def _render_datetime(value: datetime) -> str:
    """Equal date-times are one instant, so one text: a run's invoices share a few posting moments."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def parse(text: str) -> Query:
    """Parse and check `text`; raises `SoqlError` with the contract's errorCode."""
    statement = _Parser(text).statement()
    spec = SCHEMA.get(statement.object_name.lower())
    if spec is None:
        raise SoqlError("INVALID_TYPE", f"sObject type '{statement.object_name}' is not supported.")
    fields = tuple(spec.field(name) for name in statement.fields)
    predicates = tuple(_predicate(spec, condition) for condition in statement.conditions)
    seeks = tuple(
        (spec.field(c.field).name, tuple(v for v in c.values if isinstance(v, str)))
        for c in statement.conditions
        if c.op in ("=", "IN")
        and spec.field(c.field).kind is FieldKind.ID
        and all(isinstance(v, str) for v in c.values)
    )
    descending: bool | None = None
    if statement.order_by is not None:
        if spec.field(statement.order_by).name != "Id":
            raise _malformed("ORDER BY is supported on Id only")
        descending = statement.descending
    return Query(spec, fields, statement.count, predicates, descending, statement.limit, seeks)


def _predicate(spec: ObjectSpec, condition: _Condition) -> Predicate:
    field = spec.field(condition.field)
    op, values = condition.op, condition.values
    if field.kind in (FieldKind.DATE, FieldKind.DATETIME):
        raise _malformed(f"date fields can be selected, not filtered: '{field.name}'")
    if op in ("<", ">") and field.kind is not FieldKind.CURRENCY:
        raise _malformed(f"the operator {op} is supported on currency fields only, not on '{field.name}'")
    if len(values) > MAX_IN_VALUES:
        raise _malformed(f"IN holds at most {MAX_IN_VALUES} values, got {len(values)}")
    if op not in ("=", "!=") and any(v is NULL for v in values):
        raise _malformed(f"null can only be compared with = or != (field '{field.name}')")
    checked = tuple(_checked(field, value) for value in values)
    return _compile(field, op, checked)


def _checked(field: FieldSpec, value: _Literal) -> str | Decimal | None:
    if value is NULL:
        return None
    if isinstance(value, _Bare):
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{field.name}' must be a quoted string or a number, "
            f"not the unquoted word {value.text}",
        )
    if field.kind is FieldKind.CURRENCY:
        if not isinstance(value, Decimal):
            raise SoqlError(
                "INVALID_FIELD",
                f"value of filter criterion for field '{field.name}' must be of type currency "
                "and should not be enclosed in quotes",
            )
        return value
    if not isinstance(value, str):
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{field.name}' must be of type string "
            "and should be enclosed in quotes",
        )
    return value


def _compile(field: FieldSpec, op: str, values: Sequence[str | Decimal | None]) -> Predicate:
    attr = field.attr
    folded = field.kind is FieldKind.TEXT

    def key(value: Any) -> Any:
        return value.lower() if folded and isinstance(value, str) else value

    if op == "IN":
        wanted = frozenset(key(v) for v in values)
        return lambda record: (v := getattr(record, attr)) is not None and key(v) in wanted
    value = values[0]
    if op in ("<", ">"):
        bound = value
        if op == ">":
            return lambda record: (v := getattr(record, attr)) is not None and v > bound
        return lambda record: (v := getattr(record, attr)) is not None and v < bound
    if value is None:
        if op == "=":
            return lambda record: getattr(record, attr) is None
        return lambda record: getattr(record, attr) is not None
    wanted_one = key(value)
    if op == "=":
        return lambda record: (v := getattr(record, attr)) is not None and key(v) == wanted_one
    return lambda record: (v := getattr(record, attr)) is None or key(v) != wanted_one
