"""The classification table: every kind of exchange iMIS can give, and the typed error it becomes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from orchestrator.adapters.providers.http import transport_failure
from orchestrator.adapters.providers.imis.errors import classify
from orchestrator.adapters.providers.imis.wire import decode_json
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)

NOW = datetime(2025, 9, 9, 12, 0, 0, tzinfo=UTC)
READ = "InvoiceSummary.get"
WRITE = "Invoice.ProcessCashReversal"

HTML_503 = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable - Scheduled maintenance</title></head>"
    b"<body><h1>iMIS is down for maintenance</h1></body></html>"
)
HTML_LOGIN = b"<html><head><title>Sign In</title></head><body><form>...</form></body></html>"
ERRORS_400 = json.dumps(
    {
        "$type": "Asi.Soa.Core.DataContracts.ValidationResultsData, Asi.Contracts",
        "Errors": {
            "$type": "System.Collections.Generic.List`1[[...ValidationResultData, Asi.Contracts]], mscorlib",
            "$values": [
                {"Message": "Invoice 8158 has already been reversed", "FieldName": None},
                {"Message": "Invoice 8158 has a payment applied", "FieldName": "InvoiceId"},
            ],
        },
    }
).encode()


def ok_body(**fields: Any) -> bytes:
    return json.dumps({"$type": "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts", **fields}).encode()


@dataclass(frozen=True)
class Row:
    id: str
    expected: type[ProviderError] | None
    operation: str = READ
    mutating: bool = False
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    exc: BaseException | None = None
    applied: bool = False
    retry_after: float | None = None
    says: tuple[str, ...] = ()


ROWS = [
    # --- throttling ----------------------------------------------------------------------------------
    Row("429-seconds", ProviderThrottled, status_code=429, headers={"Retry-After": "7"}, retry_after=7.0),
    Row(
        "429-http-date",
        ProviderThrottled,
        status_code=429,
        headers={"retry-after": "Tue, 09 Sep 2025 12:00:30 GMT"},
        retry_after=30.0,
    ),
    Row(
        "429-date-in-the-past",
        ProviderThrottled,
        status_code=429,
        headers={"Retry-After": "Tue, 09 Sep 2025 11:00:00 GMT"},
        retry_after=0.0,
    ),
    Row("429-without-header", ProviderThrottled, status_code=429, retry_after=None),
    Row("429-on-write", ProviderThrottled, operation=WRITE, mutating=True, status_code=429, applied=False),
    # --- server faults -------------------------------------------------------------------------------
    Row("500-read", ProviderUnavailable, status_code=500, body=b'{"Message":"An error has occurred."}'),
    Row(
        "500-write",
        ProviderUnavailable,
        operation=WRITE,
        mutating=True,
        status_code=500,
        body=b'{"Message":"An error has occurred."}',
        applied=True,
        says=("An error has occurred.",),
    ),
    Row(
        "502-write",
        ProviderUnavailable,
        operation=WRITE,
        mutating=True,
        status_code=502,
        body=b"<html>Bad gateway</html>",
        applied=True,
    ),
    Row(
        "503-html-page",
        ProviderUnavailable,
        operation=WRITE,
        mutating=True,
        status_code=503,
        headers={"Content-Type": "text/html"},
        body=HTML_503,
        applied=False,
        says=("503", "Scheduled maintenance"),
    ),
    Row(
        "503-with-retry-after", ProviderUnavailable, status_code=503, headers={"Retry-After": "120"}, retry_after=120.0
    ),
    Row("504-write", ProviderUnavailable, operation=WRITE, mutating=True, status_code=504, applied=True),
    Row("504-read", ProviderUnavailable, status_code=504, applied=False),
    Row("408", ProviderTimeout, operation=WRITE, mutating=True, status_code=408, applied=False),
    # --- refusals ------------------------------------------------------------------------------------
    Row(
        "400-errors-joined",
        ProviderRefused,
        operation=WRITE,
        mutating=True,
        status_code=400,
        body=ERRORS_400,
        says=("Invoice 8158 has already been reversed; Invoice 8158 has a payment applied",),
    ),
    Row(
        "400-bare-errors-list",
        ProviderRefused,
        status_code=400,
        body=b'{"Errors":[{"Message":"bad filter"}]}',
        says=("bad filter",),
    ),
    Row(
        "400-aspnet-message",
        ProviderRefused,
        status_code=400,
        body=b'{"Message":"The request is invalid."}',
        says=("The request is invalid.",),
    ),
    Row("405", ProviderRefused, status_code=405, says=("405",)),
    Row(
        "409",
        ProviderRefused,
        operation=WRITE,
        mutating=True,
        status_code=409,
        body=b'{"Message":"conflict"}',
        applied=False,
    ),
    Row("422", ProviderRefused, status_code=422),
    Row("404", ProviderNotFound, status_code=404, says=("not found",)),
    Row(
        "200-IsSuccessStatusCode-false",
        ProviderRefused,
        operation=WRITE,
        mutating=True,
        status_code=200,
        body=ok_body(IsSuccessStatusCode=False, Message="Invoice cannot be reversed: it has payments", Result=None),
        applied=False,
        says=("Invoice cannot be reversed: it has payments",),
    ),
    Row(
        "200-IsSuccessStatusCode-false-wrapped",
        ProviderRefused,
        status_code=200,
        body=ok_body(
            IsSuccessStatusCode={"$type": "System.Boolean", "$value": False},
            Message={"$type": "System.String", "$value": "nope"},
        ),
        says=("nope",),
    ),
    # --- authentication ------------------------------------------------------------------------------
    Row("401", ProviderAuthError, status_code=401),
    Row("403", ProviderAuthError, status_code=403),
    Row(
        "token-400-invalid-grant",
        ProviderAuthError,
        operation="token",
        status_code=400,
        body=b'{"error":"invalid_grant","error_description":"The user name or password is incorrect."}',
        says=("The user name or password is incorrect.",),
    ),
    Row("invalid-grant-elsewhere", ProviderAuthError, status_code=400, body=b'{"error":"invalid_grant"}'),
    Row("token-401", ProviderAuthError, operation="token", status_code=401),
    Row("token-503-is-transient", ProviderUnavailable, operation="token", status_code=503, body=HTML_503),
    # --- success, and 2xx that is not ---------------------------------------------------------------
    Row("200-json", None, status_code=200, body=ok_body(IsSuccessStatusCode=True, Result=True)),
    Row(
        "200-generic-execute-result",
        None,
        status_code=200,
        body=b'{"$type":"GenericExecuteResult","Result":{"TaskLogId":"x"}}',
    ),
    Row("201-json", None, operation="BillingLog.create", mutating=True, status_code=201, body=b'{"BillingLogKey":"k"}'),
    Row("202-json", None, operation="TaskDefinition.execute", mutating=True, status_code=202, body=b'{"Result":{}}'),
    Row("204-empty", None, status_code=204, body=b""),
    Row("200-json-list", None, status_code=200, body=b"[1, 2]"),
    Row(
        "200-html-page-on-write",
        ProviderProtocolError,
        operation=WRITE,
        mutating=True,
        status_code=200,
        headers={"Content-Type": "text/html; charset=utf-8"},
        body=HTML_LOGIN,
        applied=True,
        says=(WRITE, "HTML page", "Sign In"),
    ),
    Row(
        "200-html-page-on-read",
        ProviderProtocolError,
        status_code=200,
        body=HTML_LOGIN,
        applied=False,
        says=(READ, "HTML"),
    ),
    Row(
        "200-truncated-json-on-write",
        ProviderProtocolError,
        operation=WRITE,
        mutating=True,
        status_code=200,
        headers={"Content-Type": "application/json"},
        body=ok_body(IsSuccessStatusCode=True, Message=None, Result=True)[:30],
        applied=True,
        says=(WRITE, "truncated or malformed JSON"),
    ),
    Row(
        "200-truncated-json-on-read",
        ProviderProtocolError,
        status_code=200,
        body=b'{"InvoiceId": "81',
        says=("truncated",),
    ),
    Row("200-nan-is-not-json", ProviderProtocolError, status_code=200, body=b'{"Amount": NaN}'),
    Row(
        "302-redirect-to-login",
        ProviderProtocolError,
        status_code=302,
        headers={"Location": "/iMIS/Login"},
        says=("/iMIS/Login",),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_classification_table(row: Row) -> None:
    error = classify(
        operation=row.operation,
        mutating=row.mutating,
        status_code=row.status_code,
        headers=row.headers,
        body=row.body,
        exc=row.exc,
        now=NOW,
    )
    if row.expected is None:
        assert error is None
        return
    assert type(error) is row.expected
    assert error is not None
    assert error.operation == row.operation
    assert error.status_code == row.status_code
    assert error.may_have_applied is row.applied
    assert str(error).startswith(row.operation)
    for fragment in row.says:
        assert fragment in str(error)
    if isinstance(error, ProviderThrottled) or row.retry_after is not None:
        assert getattr(error, "retry_after", None) == row.retry_after


def test_may_have_applied_is_never_set_for_reads() -> None:
    for row in ROWS:
        if row.mutating:
            continue
        error = classify(
            operation=row.operation,
            status_code=row.status_code,
            headers=row.headers,
            body=row.body,
            exc=row.exc,
            now=NOW,
        )
        assert error is None or error.may_have_applied is False, row.id


def test_a_success_body_the_caller_decoded_is_classified_alike() -> None:
    compared = 0
    for row in ROWS:
        if row.status_code is None or not 200 <= row.status_code < 300 or not (row.body or b"").strip():
            continue
        try:
            payload = decode_json(row.body or b"")
        except ValueError:
            continue
        own = classify(
            operation=row.operation, mutating=row.mutating, status_code=row.status_code, body=row.body, now=NOW
        )
        given = classify(
            operation=row.operation,
            mutating=row.mutating,
            status_code=row.status_code,
            body=row.body,
            payload=payload,
            now=NOW,
        )
        assert repr(given) == repr(own), row.id
        compared += 1
    assert compared >= 3


def test_classify_reads_the_payload_it_is_given_instead_of_decoding_again() -> None:
    refusal = {"IsSuccessStatusCode": False, "Message": "Invoice has payments"}
    error = classify(operation=WRITE, mutating=True, status_code=200, body=b"{}", payload=refusal)
    assert isinstance(error, ProviderRefused)
    assert "Invoice has payments" in str(error)


def test_an_exception_is_read_by_the_shared_transport_failure() -> None:
    # Its table is tests/unit/providers/test_http.py; classify only names the platform.
    exc = httpx.ReadTimeout("timed out")
    error = classify(operation=WRITE, mutating=True, exc=exc)
    assert repr(error) == repr(transport_failure(exc, operation=WRITE, mutating=True, platform="iMIS"))


def test_classify_needs_a_reply_or_an_exception() -> None:
    with pytest.raises(ValueError, match="exc or status_code"):
        classify(operation=READ)


def test_long_messages_are_clipped() -> None:
    body = json.dumps({"Errors": [{"Message": "x" * 5000}]}).encode()
    error = classify(operation=READ, status_code=400, body=body)
    assert error is not None
    assert len(str(error)) < 700
