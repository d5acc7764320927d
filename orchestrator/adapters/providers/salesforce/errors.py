"""How a Salesforce exchange that went wrong becomes one of the orchestrator's typed errors.

`classify` is the one place that decides, over the contract's table
(`../shared/reference/salesforce-billing-api.md`, "Limits and headers"); it is pure and
table-tested in `tests/unit/providers/salesforce/test_errors.py`. Transport faults (nothing came
back) are classified by the client kit's `transport_failure`, statuses no platform words
differently by its `status_failure`. Two Salesforce outcomes have classes of their own, because a
caller acts on them differently from their parents:

    ProviderError
    ├── TransientProviderError            retried by the orchestrator, with backoff
    │   ├── ProviderUnavailable           connect error (not applied); connection dropped before the
    │   │                                 reply, 500 UNKNOWN_EXCEPTION, 502, 504 (a write may have
    │   │                                 applied); 503, also an HTML page (not applied)
    │   ├── ProviderTimeout               connect/pool timeout (not applied); read/write timeout
    │   │                                 (a write may have applied)
    │   └── ProviderThrottled             403 REQUEST_LIMIT_EXCEEDED (concurrency): back off with jitter
    │       └── AllocationExhausted       403 REQUEST_LIMIT_EXCEEDED "TotalRequests": the org's daily
    │                                     allocation is spent; pause the run until usage falls
    └── PermanentProviderError            recorded, never retried
        ├── ProviderRefused               400 INVALID_INPUT, MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE,
        │   │                             JSON_PARSER_ERROR, 405, other 4xx; 200 `"success": false`
        │   └── QueryLocatorExpired       400 INVALID_QUERY_LOCATOR: run the query again from the start
        ├── ProviderNotFound              404 NOT_FOUND
        ├── ProviderAuthError             401 INVALID_SESSION_ID after the client's one new token; other
        │   │                             403s (permissions)
        │   └── CredentialsRejected       the token endpoint's 4xx (invalid_client, invalid_client_id,
        │                                 unsupported_grant_type, invalid_grant): names the settings
        └── ProviderProtocolError         a 2xx that is not what Salesforce sends (HTML, truncated or
                                          malformed JSON, wrong shape); a redirect. A write may have
                                          applied

`may_have_applied` is only ever True for a `mutating` operation (void, generate, recover): such an
outcome is settled by reading `Invoice.Status` or the schedules, never by sending the write again.
400, 401 and 403 replies were not applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from orchestrator.adapters.providers.http import (
    NO_BODY,
    NOT_DECODED,
    clip,
    decode_json,
    header,
    html_detail,
    status_failure,
    success_payload,
)
from orchestrator.adapters.providers.salesforce.settings import SalesforceSettings
from orchestrator.adapters.providers.salesforce.wire import (
    ApiUsage,
    ErrorItem,
    TokenError,
    error_items,
    parse_limit_info,
)
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
)

__all__ = [
    "LIMIT_INFO",
    "PLATFORM",
    "TOKEN_OPERATION",
    "AllocationExhausted",
    "CredentialsRejected",
    "QueryLocatorExpired",
    "classify",
]

PLATFORM = "Salesforce"
#: The operation name of the token endpoint's exchanges (its refusals name the settings to fix).
TOKEN_OPERATION = "token"  # noqa: S105 - an operation's name, not a secret
LIMIT_INFO = "Sforce-Limit-Info"


class AllocationExhausted(ProviderThrottled):
    """The org's rolling 24-hour API allocation is spent (403 REQUEST_LIMIT_EXCEEDED "TotalRequests").

    Backing off one call does not help: pause the whole run until `Sforce-Limit-Info` shows usage
    below the pause threshold. `usage` is what the refusal's own header said, when it had one.
    """

    def __init__(self, message: str, *, operation: str = "", usage: ApiUsage | None = None) -> None:
        super().__init__(message, operation=operation, status_code=403)
        self.usage = usage


class QueryLocatorExpired(ProviderRefused):
    """A `nextRecordsUrl` locator is no longer valid (400 INVALID_QUERY_LOCATOR, 15 idle minutes).

    Asking for the same page again fails the same way: run the query again from its first page
    (and skip what was already read).
    """


class CredentialsRejected(ProviderAuthError):
    """The token endpoint refused the client credentials: the run cannot go on until the settings are fixed."""


def classify(
    *,
    operation: str,
    mutating: bool = False,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | str,
    payload: Any = NOT_DECODED,
) -> ProviderError | None:
    """The typed error for one reply, or None when it is a usable success.

    `payload` is the 2xx body when the caller decoded it already (the kit's `decode_success`), so a
    large page is not decoded twice. A 401 reaching here is the one after the client's new token.
    """
    if 200 <= status_code < 300:
        try:
            decoded = success_payload(
                operation,
                platform=PLATFORM,
                mutating=mutating,
                status_code=status_code,
                headers=headers,
                body=body,
                payload=payload,
            )
        except ProviderProtocolError as exc:
            return exc
        return _refusal_in_body(operation, status_code, decoded)
    items = _error_items(body)
    codes = {item.errorCode for item in items}
    if operation == TOKEN_OPERATION and 400 <= status_code < 500:
        return _credentials_rejected(status_code, body)
    if status_code == 401:
        return ProviderAuthError(
            f"{operation}: Salesforce rejected the session again after a new token (HTTP 401{_detail(items)})",
            operation=operation,
            status_code=401,
        )
    if status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
        if any("totalrequests" in (item.message or "").lower() for item in items):
            usage = parse_limit_info(header(headers, LIMIT_INFO))
            spent = f" ({usage.used}/{usage.allocation})" if usage is not None else ""
            return AllocationExhausted(
                f"{operation}: the org's daily API allocation is spent{spent} (HTTP 403{_detail(items)}); "
                "pause until usage falls",
                operation=operation,
                usage=usage,
            )
        return ProviderThrottled(
            f"{operation}: throttled by Salesforce (HTTP 403{_detail(items)})",
            operation=operation,
            status_code=403,
        )
    if status_code == 400 and "INVALID_QUERY_LOCATOR" in codes:
        return QueryLocatorExpired(
            f"{operation}: the query locator expired (HTTP 400{_detail(items)}); run the query again",
            operation=operation,
            status_code=400,
        )
    detail = f": {clip('; '.join(item.describe() for item in items))}" if items else html_detail(headers, body)
    return status_failure(
        operation=operation,
        platform=PLATFORM,
        mutating=mutating,
        status_code=status_code,
        headers=headers,
        detail=detail,
    )


def _refusal_in_body(operation: str, status_code: int, payload: Any) -> ProviderError | None:
    """A 2xx Revenue Async Response that says `"success": false` is a refusal, nothing was applied."""
    if payload is NO_BODY or not isinstance(payload, Mapping) or payload.get("success") is not False:
        return None
    items = error_items(payload.get("errors"))
    why = "; ".join(item.describe() for item in items) or "no reason given"
    return ProviderRefused(
        f"{operation}: refused by Salesforce (HTTP {status_code}, success false): {clip(why)}",
        operation=operation,
        status_code=status_code,
    )


def _credentials_rejected(status_code: int, body: bytes | str) -> CredentialsRejected:
    reason = ""
    try:
        token_error = TokenError.model_validate(decode_json(body))
    except (ValueError, pydantic.ValidationError):
        token_error = None
    if token_error is not None and (token_error.error or token_error.error_description):
        reason = ": " + clip(" ".join(p for p in (token_error.error, token_error.error_description) if p))
    first, second, third = (SalesforceSettings.env_name(f) for f in ("client_id", "client_secret", "base_url"))
    return CredentialsRejected(
        f"{TOKEN_OPERATION}: Salesforce refused the client credentials (HTTP {status_code}{reason}); "
        f"check {first}, {second} and {third}",
        operation=TOKEN_OPERATION,
        status_code=status_code,
    )


def _error_items(body: bytes | str) -> list[ErrorItem]:
    """The `[{"message", "errorCode"}]` of an error reply; [] when the body is not that (an HTML page)."""
    try:
        return error_items(decode_json(body))
    except (ValueError, pydantic.ValidationError):
        return []


def _detail(items: list[ErrorItem]) -> str:
    return f" {clip('; '.join(item.describe() for item in items))}" if items else ""
