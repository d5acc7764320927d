"""Salesforce JSON on the wire: request bodies read strictly, replies shaped like the org's.

Errors under `/services/data` are an array `[{"message", "errorCode", "fields": []}]`; the token
endpoint answers OAuth's `{"error", "error_description"}`. A body that is not the JSON an action
takes (not an object, a field of the wrong type, a field the action does not know) is refused
`JSON_PARSER_ERROR`, as the Connect REST API does; what is well-formed but wrong is for the state
to refuse (`INVALID_INPUT`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from simulators.common.http import InvalidBody, load_json
from simulators.salesforce.state import GenerateRequest, QueryPage, SalesforceError, invalid_input

__all__ = [
    "async_response",
    "error_body",
    "json_parser_error",
    "parse_generate",
    "parse_recover",
    "query_response",
]

_GENERATE_FIELDS = frozenset(
    {"billingScheduleIds", "action", "invoiceDate", "targetDate", "correlationId", "accountId", "billingTransactionId"}
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def error_body(error_code: str, message: str) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": error_code, "fields": []}]


def json_parser_error(message: str) -> SalesforceError:
    return SalesforceError(400, "JSON_PARSER_ERROR", message)


def async_response(request_identifier: str) -> dict[str, Any]:
    """The Revenue Async Response of void and generate."""
    return {"success": True, "requestIdentifier": request_identifier, "errors": None}


def query_response(page: QueryPage, version: str) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": page.total_size, "done": page.done}
    if page.next_locator is not None:
        body["nextRecordsUrl"] = f"/services/data/{version}/query/{page.next_locator}"
    body["records"] = page.records
    return body


def _object(body: bytes) -> Mapping[str, Any]:
    try:
        payload = load_json(body)
    except InvalidBody as exc:
        raise json_parser_error(exc.message) from None
    if not isinstance(payload, dict):
        raise json_parser_error("The request body must be a JSON object.")
    return payload


def _ids(payload: Mapping[str, Any]) -> list[str]:
    ids = payload.get("billingScheduleIds")
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise json_parser_error("billingScheduleIds must be an array of strings.")
    return ids


def _date(payload: Mapping[str, Any], name: str, today: date) -> date:
    value = payload.get(name)
    if value is None:
        return today
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise invalid_input(f"Enter {name} in the yyyy-mm-dd format.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid_input(f"{name} {value} isn't a valid date.") from None


def parse_generate(body: bytes, today: date) -> GenerateRequest:
    """The generate action's body. `accountId` and `billingTransactionId` are refused: they bill a whole
    account or order, which this simulator (per the contract) never does."""
    payload = _object(body)
    unknown = sorted(set(payload) - _GENERATE_FIELDS)
    if unknown:
        raise json_parser_error(f'Unrecognized field "{unknown[0]}".')
    for name in ("accountId", "billingTransactionId"):
        if payload.get(name) is not None:
            raise invalid_input(f"{name} isn't supported here: name the billing schedules in billingScheduleIds.")
    action = payload.get("action")
    correlation_id = payload.get("correlationId")
    if not isinstance(action, str | None) or not isinstance(correlation_id, str | None):
        raise json_parser_error("action and correlationId must be strings.")
    return GenerateRequest(
        billing_schedule_ids=tuple(_ids(payload)),
        action=action or "",
        invoice_date=_date(payload, "invoiceDate", today),
        target_date=_date(payload, "targetDate", today),
        correlation_id=correlation_id,
    )


def parse_recover(body: bytes) -> list[str]:
    payload = _object(body)
    unknown = sorted(set(payload) - {"billingScheduleIds"})
    if unknown:
        raise json_parser_error(f'Unrecognized field "{unknown[0]}".')
    return _ids(payload)
