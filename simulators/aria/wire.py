"""Aria's wire format for the simulator: request bodies in, typed commands out, replies rendered.

Bodies are `application/json` or `application/x-www-form-urlencoded`; in a form body an array is
JSON text, and Crescendo's `name[0][field]` keys are refused with 1016. Parameters are read as Aria
reads them: a long may be a JSON number or a numeric string, booleans are `"true"`/`"false"`, dates
`yyyy-mm-dd`; each wrong one is refused with the code the contract gives. Money goes out as JSON
numbers with its exact digits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, cast, get_args
from urllib.parse import parse_qsl

from simulators.aria.state import (
    AccountRef,
    AriaError,
    Condition,
    ErrorCode,
    HistoryRequest,
    Invoice,
    InvoiceQuery,
    Line,
    QueryKey,
    RebillLine,
    RebillRequest,
    RebillResult,
)

#: The array parameters of the four calls: JSON text in a form body.
ARRAY_PARAMETERS = frozenset({"rb_line_items", "optional_transaction_qualifiers"})
DEFAULT_LIMIT = 100

_BRACKET_KEY = re.compile(r"^[^\[\]]+\[")
_QUERY_KEYS: frozenset[str] = frozenset(get_args(QueryKey))


def _missing(name: str) -> AriaError:
    return AriaError(ErrorCode.MISSING_PARAMETER, f"missing required parameter: {name}")


def _invalid(message: str) -> AriaError:
    return AriaError(ErrorCode.INVALID_INPUT, message)


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The request's parameters; 1012 when a JSON body (or a form array) is not JSON."""
    if "application/x-www-form-urlencoded" in content_type.lower():
        return _parse_form(body)
    try:
        params = json.loads(body, parse_float=Decimal) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise AriaError(ErrorCode.UNPARSABLE_JSON, "unable to parse input json") from None
    if not isinstance(params, dict):
        raise AriaError(ErrorCode.UNPARSABLE_JSON, "unable to parse input json: the body is not an object")
    return params


def _parse_form(body: bytes) -> dict[str, Any]:
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise AriaError(ErrorCode.UNPARSABLE_JSON, "unable to parse input: the form body is not UTF-8") from None
    params: dict[str, Any] = {}
    for key, value in pairs:
        if _BRACKET_KEY.match(key):
            raise _invalid(f"invalid input: {key} (send arrays as JSON text)")
        if key in ARRAY_PARAMETERS:
            try:
                params[key] = json.loads(value, parse_float=Decimal)
            except ValueError:
                raise AriaError(ErrorCode.UNPARSABLE_JSON, f"unable to parse input json: {key}") from None
        else:
            params[key] = value
    return params


def rest_call(params: Mapping[str, Any]) -> str | None:
    value = params.get("rest_call")
    return value.strip() if isinstance(value, str) and value.strip() else None


def credentials(params: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """`client_no` and `auth_key` as given (an unreadable client_no reads as none: 1004 follows)."""
    try:
        client_no = optional_long(params, "client_no")
    except AriaError:
        client_no = None
    auth_key = params.get("auth_key")
    return client_no, auth_key if isinstance(auth_key, str) else None


def check_output_format(params: Mapping[str, Any]) -> None:
    value = params.get("output_format", "json")
    if not isinstance(value, str) or value.strip().lower() != "json":
        raise _invalid("invalid input: output_format (the simulator answers json only)")


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def optional_long(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _invalid(f"{name} is not a valid long")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,22}\s*", value):
        return int(value)
    raise _invalid(f"{name} is not a valid long")


def long(params: Mapping[str, Any], name: str) -> int:
    value = optional_long(params, name)
    if value is None:
        raise _missing(name)
    return value


def optional_double(params: Mapping[str, Any], name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _invalid(f"{name} is not a valid double")
    number: Decimal | None = None
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite():
        raise _invalid(f"{name} is not a valid double")
    return Decimal(format(number, "f"))  # plain digits: 1E+2 would not render as a JSON number


def optional_string(params: Mapping[str, Any], name: str, max_length: int) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(f"{name} is not a valid string")
    text = str(value)
    if len(text) > max_length:
        raise _invalid(f"{name} is longer than {max_length} characters")
    return text


def optional_boolean(params: Mapping[str, Any], name: str, *, numeric: bool = False) -> bool | None:
    """`"true"`/`"false"` (any case) or a JSON boolean; with `numeric`, also 1/0 (do_collect); else 1033."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    if numeric and text in ("1", "0"):
        return text == "1"
    raise AriaError(ErrorCode.INVALID_BOOLEAN, f"{name} must be true or false")


def optional_date(params: Mapping[str, Any], name: str) -> date | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return parse_date(value, name)


def parse_date(value: Any, name: str) -> date:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise AriaError(ErrorCode.INVALID_DATE, f"invalid date format for {name} (yyyy-mm-dd)")


def account_ref(params: Mapping[str, Any]) -> AccountRef:
    return AccountRef(optional_long(params, "acct_no"), optional_string(params, "client_acct_id", 50))


# --------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------


def parse_query(params: Mapping[str, Any], page_cap: int) -> tuple[InvoiceQuery, int, int | None]:
    """`get_invoice_information_m`: the query, the offset and the page size (None: count only).

    `limit` absent or 0 means 100, -1 a count; above `page_cap` it is cut to the cap without a word.
    """
    raw = params.get("query_string")
    if raw is not None and not isinstance(raw, str):
        raise _invalid("invalid query_string")
    query = parse_query_string(raw or "")
    limit = optional_long(params, "limit")
    offset = optional_long(params, "offset") or 0
    if offset < 0:
        raise _invalid("offset must not be negative")
    if limit == -1:
        return query, offset, None
    if limit is None or limit == 0:
        limit = DEFAULT_LIMIT
    if limit < 0:
        raise _invalid("invalid limit")
    return query, offset, min(limit, page_cap)


_CONDITION = re.compile(r"^\s*([A-Za-z_]+)\s*(!=|=)\s*(.*?)\s*$")
_ORDER_BY = re.compile(r"\s+ORDER\s+BY\s+invoice_no(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE)
_ANY_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


def parse_query_string(text: str) -> InvoiceQuery:
    """The decided subset: `key = value` / `key != value` joined by AND, optional ORDER BY invoice_no."""
    descending = False
    text = " " + text.strip()
    order = _ORDER_BY.search(text)
    if order is not None:
        descending = (order.group(1) or "ASC").upper() == "DESC"
        text = text[: order.start()]
    if _ANY_ORDER_BY.search(text):
        raise _invalid("invalid query_string: only ORDER BY invoice_no [ASC|DESC] is supported")
    if not text.strip():
        return InvoiceQuery((), descending)
    conditions: list[Condition] = []
    for part in _AND.split(text.strip()):
        match = _CONDITION.match(part)
        if match is None:
            raise _invalid(f"invalid query_string: {part.strip()!r}")
        key, operator, raw = match.group(1).lower(), match.group(2), _unquote(match.group(3))
        if key not in _QUERY_KEYS or not raw:
            raise _invalid(f"invalid query_string: {part.strip()!r}")
        conditions.append(Condition(cast(QueryKey, key), _query_value(key, raw), negated=operator == "!="))
    return InvoiceQuery(tuple(conditions), descending)


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def _query_value(key: str, raw: str) -> date | int | str:
    if key == "bill_date":
        return parse_date(raw, "bill_date")
    if key in ("acct_no", "invoice_no"):
        if not re.fullmatch(r"-?\d{1,22}", raw):
            raise _invalid(f"invalid query_string: {key} is not a valid long")
        return int(raw)
    return raw


def parse_history(params: Mapping[str, Any]) -> HistoryRequest:
    if optional_long(params, "master_plan_instance_id") is None:
        raise _missing("master_plan_instance_id")
    rb_option = optional_long(params, "rb_option") or 0
    if rb_option not in (0, 1, 2):
        raise _invalid("invalid rb_option")
    return HistoryRequest(
        account=account_ref(params),
        start_bill_date=optional_date(params, "start_bill_date"),
        end_bill_date=optional_date(params, "end_bill_date"),
        include_voided=bool(optional_boolean(params, "include_voided")),
        rb_option=cast(Literal[0, 1, 2], rb_option),
    )


def parse_rebill(params: Mapping[str, Any]) -> RebillRequest:
    """gen_rb_m's parameters (the simulator refuses `rb_amount`: Aria computes it)."""
    account = account_ref(params)
    if account == AccountRef():
        raise _missing("acct_no")
    orig_invoice_no = long(params, "orig_invoice_no")
    reason_cd = long(params, "reason_cd")
    raw_lines = params.get("rb_line_items")
    if raw_lines is None or raw_lines == [] or raw_lines == "":
        raise _missing("rb_line_items")
    if not isinstance(raw_lines, list):
        raise _invalid("rb_line_items must be an array")
    do_write = optional_boolean(params, "do_write")
    return RebillRequest(
        account=account,
        orig_invoice_no=orig_invoice_no,
        reason_cd=reason_cd,
        lines=tuple(_rebill_line(item) for item in raw_lines),
        comments=optional_string(params, "rb_comments", 3000),
        do_write=True if do_write is None else do_write,
        do_collect=optional_boolean(params, "do_collect", numeric=True),
        alt_caller_id=optional_string(params, "alt_caller_id", 30),
        qualifiers=_qualifiers(params.get("optional_transaction_qualifiers")),
    )


def _rebill_line(item: Any) -> RebillLine:
    if not isinstance(item, dict):
        raise _invalid("each rb_line_items entry must be an object")
    if "rb_amount" in item:
        raise _invalid("rb_amount is computed by Aria: send rb_rate_per_unit and/or rb_units")
    line_no = long(item, "line_no")
    service_no = optional_long(item, "service_no")
    client_service_id = optional_string(item, "client_service_id", 100)
    if service_no is None and client_service_id is None:
        raise _missing("service_no")
    rate = optional_double(item, "rb_rate_per_unit")
    units = optional_double(item, "rb_units")
    if (rate is not None and rate < 0) or (units is not None and units < 0):
        raise _invalid(f"negative rate or units on line_no {line_no}")
    return RebillLine(
        line_no=line_no,
        service_no=service_no,
        client_service_id=client_service_id,
        rate_per_unit=rate,
        units=units,
        comments=optional_string(item, "rb_line_comments", 200),
    )


def _qualifiers(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid("optional_transaction_qualifiers must be an array")
    pairs = []
    for item in raw:
        if not isinstance(item, dict):
            raise _invalid("each optional_transaction_qualifiers entry must be an object")
        name = optional_string(item, "qualifier_name", 100)
        value = optional_string(item, "qualifier_value", 100)
        if name is None or value is None:
            raise _missing("qualifier_name")
        pairs.append((name, value))
    return tuple(pairs)


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


def ok(**fields: Any) -> dict[str, Any]:
    return {"error_code": 0, "error_msg": "OK", **fields}


def error(code: int, message: str) -> dict[str, Any]:
    return {"error_code": code, "error_msg": message}


def _day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def invoice_header(invoice: Invoice) -> dict[str, Any]:
    """One `invoice_details_m` record of the object query."""
    amount, total_due = invoice.amount_and_due()
    return {
        "invoice_no": invoice.invoice_no,
        "acct_no": invoice.account.acct_no,
        "client_acct_id": invoice.account.client_acct_id,
        "billing_group_no": invoice.account.billing_group_no,
        "amount": amount,
        "total_due": total_due,
        "credit": invoice.credit,
        "paid_date": _day(invoice.paid_date),
        "bill_date": _day(invoice.bill_date),
        "voiding_event_no": invoice.voiding_event_no,
        "invoice_type_cd": invoice.invoice_type_cd,
    }


def invoice_page(invoices: list[Invoice], offset: int, total: int) -> dict[str, Any]:
    return ok(
        starting_record=offset,
        total_records=total,
        invoice_details_m=[invoice_header(invoice) for invoice in invoices],
    )


def _line(line: Line) -> dict[str, Any]:
    return {
        "line_no": line.line_no,
        "service_no": line.service.service_no,
        "client_service_id": line.service.client_service_id,
        "service_name": line.service.name,
        "units": line.units,
        "rate_per_unit": line.rate_per_unit,
        "amount": line.amount,
        "line_type": line.service.line_type,
        "rb_excluded": int(line.rb_excluded),
        "rb_line_comments": line.rb_line_comments,
    }


def _tax_details(invoice: Invoice, lines: tuple[Line, ...] | list[Line]) -> list[dict[str, Any]]:
    if invoice.tax_rate is None:
        return []
    return [
        {
            "tax_detail_line": 1,
            "seq_num": line.line_no,
            "debit": line.amount,
            "tax_rate": invoice.tax_rate,
            "tax_srv_tax_type_desc": line.service.name,
        }
        for line in lines
        if line.service.is_tax
    ]


def invoice_details(invoice: Invoice) -> dict[str, Any]:
    return ok(
        invoice_no=invoice.invoice_no,
        acct_no=invoice.account.acct_no,
        bill_date=_day(invoice.bill_date),
        amount=invoice.amount,
        invoice_type_cd=invoice.invoice_type_cd,
        rb_flag=int(invoice.is_rebill),
        rb_status="True" if invoice.rebilled else "False",
        orig_invoice_no=invoice.orig_invoice_no,
        invoice_line_details=[_line(line) for line in invoice.lines],
        tax_details=_tax_details(invoice, invoice.lines),
    )


def history_row(invoice: Invoice) -> dict[str, Any]:
    return {
        "invoice_no": invoice.invoice_no,
        "outacct_no": invoice.account.acct_no,
        "bill_date": _day(invoice.bill_date),
        "paid_date": _day(invoice.paid_date),
        "amount": invoice.amount,
        "credit": invoice.credit,
        "is_voided_ind": int(invoice.voided),
        "invoice_type_cd": invoice.invoice_type_cd,
        "orig_invoice_no": invoice.orig_invoice_no,
        "rb_no": invoice.rb_no,
        "rb_reason_cd": invoice.rb_reason_cd,
        "rb_comments": invoice.rb_comments,
        "rb_flag": int(invoice.is_rebill),
        "rb_status": "True" if invoice.rebilled else "False",
    }


def history(invoices: list[Invoice]) -> dict[str, Any]:
    return ok(invoice_hist=[history_row(invoice) for invoice in invoices])


def rebill(result: RebillResult) -> dict[str, Any]:
    preview = result.preview
    return ok(
        invoice_no=result.invoice_no,
        amount=preview.amount,
        reason_code=result.request.reason_cd,
        created_by=result.request.alt_caller_id,
        created_date=_day(result.created_date),
        invoice_items=[
            {
                "invoice_line_no": line.line_no,
                "service_no": line.service.service_no,
                "client_service_id": line.service.client_service_id,
                "units": line.units,
                "rate_per_unit": line.rate_per_unit,
                "line_amount": line.amount,
                "line_type": line.service.line_type,
                "line_description": line.service.name,
            }
            for line in preview.lines
        ],
        tax_details=_tax_details(preview.original, preview.lines),
        third_party_errors=[],
        collection_error_cd=None,
        collection_error_msg=None,
    )
