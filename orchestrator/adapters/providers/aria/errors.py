"""How an Aria exchange that went wrong becomes one of the orchestrator's typed errors.

Aria answers HTTP 200 for business and authentication errors: success is `error_code` 0, whatever
the status line. `classify` is the one place that decides; it is pure and table-tested in
`tests/unit/providers/aria/test_errors.py`. What every platform shares (transport exceptions, the
statuses, a 2xx that is not JSON, Retry-After) is decided by `orchestrator.adapters.providers.http`;
Aria's own part is the `error_code` table. The classes are those of `orchestrator.domain.errors`; an
answer that carried an `error_code` is raised as an `AriaCodedError` subclass holding it, so the
provider can settle a 3097, skip a 2003 as voided, or stop a run on 1004 / 3024:

    ProviderError
    ├── TransientProviderError             retried at the task level, with backoff
    │   ├── ProviderUnavailable            connect error (not applied), connection lost before the
    │   │   │                              reply, HTTP 500/502/504 (a gen_rb_m may have applied:
    │   │   │                              settle by reading history first), 503 (not applied)
    │   │   └── AriaUnexpectedError        1001 unexpected error (on gen_rb_m: may have applied)
    │   ├── ProviderTimeout                connect timeout (not applied); no reply in time (on
    │   │                                  gen_rb_m: may have applied)
    │   └── ProviderThrottled              429 with Retry-After (a gateway's)
    │       └── AriaBusyError              3108 another invoice in progress for the billing group
    │                                      (not applied: back off with jitter)
    └── PermanentProviderError             recorded, never retried
        ├── ProviderRefused                other 4xx
        │   └── AriaRefusedError           1010 1012 1016 1024 1033 (our request is wrong), 2003 voided,
        │                                  3024 invalid reason code, 3097 already rebilled, and any code
        │                                  not in the table
        ├── ProviderNotFound               404
        │   └── AriaNotFoundError          1009 account, 3004 invoice
        ├── ProviderAuthError              401, 403
        │   └── AriaAuthError              1004 bad client_no / auth_key (never carries the key)
        └── ProviderProtocolError          a reply that is not Aria's JSON (HTML, truncated, no
                                           error_code); on gen_rb_m it may have applied

(`AriaCodedError` is the mixin base of the five Aria classes.) `may_have_applied` is True only for
gen_rb_m with `do_write` (the one write) when the request may have reached Aria.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestrator.adapters.providers import http
from orchestrator.adapters.providers.http import NO_BODY, NOT_DECODED
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderUnavailable,
)

__all__ = [
    "PLATFORM",
    "AriaAuthError",
    "AriaBusyError",
    "AriaCode",
    "AriaCodedError",
    "AriaNotFoundError",
    "AriaRefusedError",
    "AriaUnexpectedError",
    "classify",
    "classify_error_code",
    "error_code_of",
]

PLATFORM = "Aria"


class AriaCode(enum.IntEnum):
    """The `error_code`s of the contract's table."""

    OK = 0
    UNEXPECTED = 1001
    AUTHENTICATION = 1004
    NO_ACCOUNT = 1009
    MISSING_PARAMETER = 1010
    UNPARSABLE_JSON = 1012
    INVALID_INPUT = 1016
    INVALID_DATE = 1024
    INVALID_BOOLEAN = 1033
    VOIDED = 2003
    NO_INVOICE = 3004
    INVALID_REASON = 3024
    ALREADY_REBILLED = 3097
    BILLING_GROUP_BUSY = 3108


class AriaCodedError(ProviderError):
    """An error Aria answered in the body: `error_code` is Aria's own code."""

    def __init__(self, message: str, *, error_code: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.error_code = error_code


class AriaRefusedError(AriaCodedError, ProviderRefused):
    """Aria refused the call; the same call would be refused again."""


class AriaNotFoundError(AriaCodedError, ProviderNotFound):
    """1009 (account) or 3004 (invoice, or not on that account)."""


class AriaAuthError(AriaCodedError, ProviderAuthError):
    """1004: `client_no` / `auth_key` rejected. Stop the run; nothing else will pass either."""


class AriaBusyError(AriaCodedError, ProviderThrottled):
    """3108: another invoice of the billing group is in progress; nothing was applied."""


class AriaUnexpectedError(AriaCodedError, ProviderUnavailable):
    """1001: Aria failed unexpectedly; on gen_rb_m the outcome is unknown until settled."""


_MEANING: dict[int, str] = {
    AriaCode.UNEXPECTED: "unexpected error",
    AriaCode.AUTHENTICATION: "authentication error",
    AriaCode.NO_ACCOUNT: "account does not exist",
    AriaCode.NO_INVOICE: "invoice does not exist",
    AriaCode.BILLING_GROUP_BUSY: "another invoice in progress for the same billing group",
    AriaCode.MISSING_PARAMETER: "missing required parameter",
    AriaCode.UNPARSABLE_JSON: "unable to parse input json",
    AriaCode.INVALID_INPUT: "invalid input",
    AriaCode.INVALID_DATE: "invalid date format",
    AriaCode.INVALID_BOOLEAN: "true/false parameter invalid",
    AriaCode.VOIDED: "the invoice is voided",
    AriaCode.INVALID_REASON: "invalid reason code",
    AriaCode.ALREADY_REBILLED: "the invoice is already rebilled",
}


def classify(
    *,
    operation: str,
    mutating: bool = False,
    status_code: int | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    payload: Any = NOT_DECODED,
    exc: BaseException | None = None,
    now: datetime | None = None,
) -> ProviderError | None:
    """The typed error for one exchange, or None when the reply is a usable success.

    Give either `exc` (the request raised; nothing came back) or `status_code` with the reply's
    `headers` and raw `body`; `payload` is the body already decoded (`http.decode_success`). A JSON
    body with an `error_code` decides whatever the status line says (Aria answers errors with 200);
    any other reply is judged by its status. `mutating` is True for gen_rb_m only.
    """
    if exc is not None:
        return http.transport_failure(exc, operation=operation, mutating=mutating, platform=PLATFORM)
    if status_code is None:
        raise ValueError("classify needs either exc or status_code")
    headers = headers or {}
    raw = body if body is not None else b""
    if 200 <= status_code < 300:
        try:
            payload = http.success_payload(
                operation,
                platform=PLATFORM,
                mutating=mutating,
                status_code=status_code,
                headers=headers,
                body=raw,
                payload=payload,
            )
        except ProviderProtocolError as error:
            return error
        if payload is NO_BODY or not isinstance(payload, Mapping) or "error_code" not in payload:
            return http.protocol_error(
                operation,
                platform=PLATFORM,
                mutating=mutating,
                what="no error_code in the reply",
                status_code=status_code,
            )
    else:
        payload = _json_body(raw)
    code = _error_code(payload)
    if code is not None:
        message = payload.get("error_msg")
        return classify_error_code(
            operation, code, message if isinstance(message, str) else None, mutating=mutating, status_code=status_code
        )
    if 200 <= status_code < 300:
        return http.protocol_error(
            operation, platform=PLATFORM, mutating=mutating, what="error_code is not a number", status_code=status_code
        )
    return http.status_failure(
        operation=operation,
        platform=PLATFORM,
        mutating=mutating,
        status_code=status_code,
        headers=headers,
        detail=http.html_detail(headers, raw),
        now=now,
    )


def _json_body(raw: bytes | str) -> Any:
    """A non-2xx body decoded when it is JSON (Aria's own error reply), else None."""
    try:
        return http.decode_json(raw)
    except ValueError:
        return None


def _error_code(payload: Any) -> int | None:
    """`error_code` as a number or a numeric string; None when absent or unreadable."""
    if not isinstance(payload, Mapping):
        return None
    value = payload.get("error_code")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def classify_error_code(
    operation: str, error_code: int, error_msg: str | None, *, mutating: bool, status_code: int | None = 200
) -> ProviderError | None:
    """The typed error for an Aria reply's `error_code` (None for 0). `mutating`: the call is gen_rb_m."""
    if error_code == AriaCode.OK:
        return None
    said = f"{operation}: Aria error {error_code} ({http.clip(error_msg or _MEANING.get(error_code, 'no message'))})"
    where: dict[str, Any] = {"error_code": error_code, "operation": operation, "status_code": status_code}
    if error_code == AriaCode.AUTHENTICATION:
        return AriaAuthError(f"{operation}: Aria rejected client_no/auth_key (error {error_code})", **where)
    if error_code in (AriaCode.NO_ACCOUNT, AriaCode.NO_INVOICE):
        return AriaNotFoundError(said, **where)
    if error_code == AriaCode.BILLING_GROUP_BUSY:
        return AriaBusyError(said + "; not applied: try again after a backoff", **where)
    if error_code == AriaCode.UNEXPECTED:
        return AriaUnexpectedError(
            said + (http.SETTLE_BY_READING if mutating else ""), may_have_applied=mutating, **where
        )
    return AriaRefusedError(said, **where)


def error_code_of(error: BaseException) -> int | None:
    """The Aria `error_code` an error carries (None for a transport or HTTP failure)."""
    return error.error_code if isinstance(error, AriaCodedError) else None
