"""The classification table: every kind of reply the contract lists, and the typed error it becomes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from orchestrator.adapters.providers.http import decode_success
from orchestrator.adapters.providers.salesforce.errors import (
    AllocationExhausted,
    CredentialsRejected,
    QueryLocatorExpired,
    classify,
)
from orchestrator.adapters.providers.salesforce.wire import ApiUsage
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderUnavailable,
    TransientProviderError,
)

HTML_503 = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>down</body></html>"
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
OK = json.dumps({"success": True, "requestIdentifier": "ae6f23bc-f056-44b7-aa4d-c7f6fc5e0cf4", "errors": None})


def errors(code: str, message: str) -> bytes:
    return json.dumps([{"message": message, "errorCode": code, "fields": []}]).encode()


@dataclass(frozen=True)
class Row:
    id: str
    expected: type[ProviderError] | None
    status_code: int
    body: bytes | str = b""
    operation: str = "query"
    mutating: bool = False
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    may_have_applied: bool = False
    in_message: tuple[str, ...] = ()


HTML = {"Content-Type": "text/html"}

TABLE = [
    # successes
    Row("void ok", None, 200, OK, "void", True),
    Row("query ok", None, 200, '{"totalSize": 0, "done": true, "records": []}'),
    Row("empty 2xx", None, 200, b"", "void", True),
    Row("204", None, 204, b"", "void", True),
    # 2xx that is not what Salesforce sends, or says no
    Row("200 success false", ProviderRefused, 200,
        json.dumps({"success": False, "requestIdentifier": None,
                    "errors": [{"errorCode": "INVALID_INPUT", "message": "Invoice is not posted"}]}),
        "void", True, in_message=("INVALID_INPUT", "Invoice is not posted")),
    Row("200 success false, no errors", ProviderRefused, 200, '{"success": false}', "generate", True,
        in_message=("no reason given",)),
    Row("200 html on a write", ProviderProtocolError, 200, HTML_503, "void", True, HTML, may_have_applied=True,
        in_message=("HTML",)),
    Row("200 truncated json on a read", ProviderProtocolError, 200, '{"totalSize": 3, "done": fa',
        in_message=("JSON",)),
    Row("200 truncated json on a write", ProviderProtocolError, 200, '{"success": tr', "generate", True,
        may_have_applied=True),
    # refusals: nothing applied
    Row("400 INVALID_INPUT on void", ProviderRefused, 400, errors("INVALID_INPUT", "balance differs"), "void", True,
        in_message=("INVALID_INPUT", "balance differs")),
    Row("400 MALFORMED_QUERY", ProviderRefused, 400, errors("MALFORMED_QUERY", "unexpected token: OR"),
        in_message=("MALFORMED_QUERY",)),
    Row("400 INVALID_FIELD", ProviderRefused, 400, errors("INVALID_FIELD", "No such column 'Foo'")),
    Row("400 INVALID_TYPE", ProviderRefused, 400, errors("INVALID_TYPE", "sObject type 'Account'")),
    Row("400 JSON_PARSER_ERROR", ProviderRefused, 400, errors("JSON_PARSER_ERROR", "Unexpected character"),
        "generate", True),
    Row("404 NOT_FOUND", ProviderNotFound, 404, errors("NOT_FOUND", "The requested resource does not exist"),
        "void", True, in_message=("NOT_FOUND",)),
    Row("405", ProviderRefused, 405, errors("METHOD_NOT_ALLOWED", "HTTP Method 'GET' not allowed"), "generate", True),
    Row("400 without a body", ProviderRefused, 400, b"", "recover", True),
    # the locator: rerun the query
    Row("400 INVALID_QUERY_LOCATOR", QueryLocatorExpired, 400, errors("INVALID_QUERY_LOCATOR", "invalid query locator"),
        "query.more", in_message=("run the query again",)),
    # sessions and credentials
    Row("401 after the refresh", ProviderAuthError, 401, errors("INVALID_SESSION_ID", "Session expired or invalid"),
        "void", True, in_message=("INVALID_SESSION_ID",)),
    Row("token 400 invalid_client", CredentialsRejected, 400,
        '{"error": "invalid_client", "error_description": "invalid client credentials"}', "token",
        in_message=("invalid_client", "REBILL_SALESFORCE_CLIENT_ID", "REBILL_SALESFORCE_CLIENT_SECRET",
                    "REBILL_SALESFORCE_BASE_URL")),
    Row("token 400 unsupported_grant_type", CredentialsRejected, 400, '{"error": "unsupported_grant_type"}', "token"),
    Row("token 401 html", CredentialsRejected, 401, HTML_503, "token", headers=HTML),
    Row("token 503", ProviderUnavailable, 503, HTML_503, "token", headers=HTML),
    # limits
    Row("403 TotalRequests", AllocationExhausted, 403,
        errors("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), "void", True,
        in_message=("allocation", "5000/5000")),
    Row("403 concurrency", ProviderThrottled, 403,
        errors("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."), "void", True),
    Row("403 permissions", ProviderAuthError, 403, errors("INSUFFICIENT_ACCESS", "insufficient access rights")),
    # server faults: a write may have applied, except 503
    Row("500 on a read", ProviderUnavailable, 500, errors("UNKNOWN_EXCEPTION", "An unexpected error occurred"),
        in_message=("UNKNOWN_EXCEPTION",)),
    Row("500 on a write", ProviderUnavailable, 500, errors("UNKNOWN_EXCEPTION", "An unexpected error occurred"),
        "generate", True, may_have_applied=True, in_message=("settle by reading",)),
    Row("502 html on a write", ProviderUnavailable, 502, HTML_502, "void", True, HTML, may_have_applied=True,
        in_message=("502 Bad Gateway",)),
    Row("502 html on a read", ProviderUnavailable, 502, HTML_502, headers=HTML),
    Row("503 html on a write", ProviderUnavailable, 503, HTML_503, "void", True, HTML,
        in_message=("Service Unavailable",)),
    Row("504 on a write", ProviderUnavailable, 504, b"", "recover", True, may_have_applied=True),
    # not followed
    Row("302", ProviderProtocolError, 302, b"", headers={"Location": "https://login.salesforce.com/"}),
]  # fmt: skip


def run_classify(row: Row) -> ProviderError | None:
    response = httpx.Response(row.status_code, content=row.body, headers=row.headers)
    headers = dict(row.headers)
    if row.id == "403 TotalRequests":
        headers["Sforce-Limit-Info"] = "api-usage=5000/5000"
    return classify(
        operation=row.operation,
        mutating=row.mutating,
        status_code=row.status_code,
        headers=headers,
        body=response.content,
        payload=decode_success(response),
    )


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_classify(row: Row) -> None:
    error = run_classify(row)
    if row.expected is None:
        assert error is None
        return
    assert type(error) is row.expected
    assert error is not None
    assert error.operation == row.operation
    assert error.may_have_applied is row.may_have_applied
    for text in row.in_message:
        assert text in error.message, error.message


def test_the_allocation_error_is_transient_and_carries_the_usage() -> None:
    row = next(row for row in TABLE if row.id == "403 TotalRequests")
    error = run_classify(row)
    assert isinstance(error, AllocationExhausted)
    assert isinstance(error, TransientProviderError)
    assert error.usage == ApiUsage(used=5000, allocation=5000)
    assert error.status_code == 403


def test_a_decoded_payload_is_not_decoded_again() -> None:
    # the payload the caller decoded wins over the raw body (a 500-record page is decoded once)
    error = classify(
        operation="void",
        mutating=True,
        status_code=200,
        headers={},
        body=b"not json at all",
        payload={"success": False, "errors": [{"errorCode": "INVALID_INPUT", "message": "m"}]},
    )
    assert isinstance(error, ProviderRefused)


@pytest.mark.parametrize("payload", [{"success": True}, {"recoveryResults": []}, [], {"success": None}])
def test_only_an_explicit_success_false_is_a_refusal(payload: Any) -> None:
    assert classify(operation="recover", mutating=True, status_code=200, headers={}, body=b"x", payload=payload) is None
