"""How an iMIS exchange that went wrong becomes one of the orchestrator's typed errors.

`classify` is the one place that decides; it is pure (no I/O, no clock unless `now` is omitted) and
table-tested in `tests/unit/providers/imis/test_errors.py`. The classes are those of
`orchestrator.domain.errors`; no iMIS-specific subclass exists. What every platform shares (transport
exceptions, the statuses, a 2xx that is not JSON, Retry-After) is decided by
`orchestrator.adapters.providers.http`; iMIS's own part is reading its `Errors`/`Message` bodies,
`IsSuccessStatusCode: false` in a 200, and the refusals of `/token`:

    ProviderError
    ├── TransientProviderError            the orchestrator retries at the task level, with backoff
    │   ├── ProviderUnavailable           connect error (not applied); connection dropped before the
    │   │                                 reply; 500/502/504 (a write may have applied); 503, also an
    │   │                                 HTML maintenance page (not applied; Retry-After kept if sent)
    │   ├── ProviderTimeout               connect/pool timeout (not applied); read/write timeout
    │   │                                 (a write may have applied); 408
    │   └── ProviderThrottled             429; `retry_after` from Retry-After, seconds or HTTP-date
    └── PermanentProviderError            recorded, never retried
        ├── ProviderRefused               400/405/409/other 4xx, with the API's `Errors` messages
        │                                 joined; 200 with `IsSuccessStatusCode: false` + `Message`
        ├── ProviderNotFound              404
        ├── ProviderAuthError             401 (after the client's single refresh-and-repeat), 403,
        │                                 `/token` 400 `invalid_grant`; never carries a secret
        └── ProviderProtocolError         a 2xx whose body is not what iMIS sends (HTML, truncated or
                                          malformed JSON, wrong shape), a redirect; a write may have
                                          applied (the request was accepted, the reply is unusable)

`may_have_applied` is only ever True for a `mutating` operation (reversals, BillingLog POST,
task submission, batch posting): such an outcome is settled by reading the invoice or log, never by
sending the write again. Retries and backoff live in the orchestrator (one retry layer per failure
type); the client's only repeat is the single token refresh on a 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic

from orchestrator.adapters.providers import http
from orchestrator.adapters.providers.http import NOT_DECODED, outcome_of, parse_retry_after
from orchestrator.adapters.providers.imis.wire import ErrorsBody, decode_json, unwrap
from orchestrator.domain.errors import ProviderAuthError, ProviderError, ProviderProtocolError, ProviderRefused

__all__ = ["NOT_DECODED", "PLATFORM", "classify", "outcome_of", "parse_retry_after", "protocol_error"]

#: How errors name the platform.
PLATFORM = "iMIS"

#: Statuses `http.status_failure` words alike for every platform; the other 4xx are read here first.
_GENERIC_4XX = frozenset({401, 403, 404, 408, 429})


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
    `headers` and raw `body`. `mutating` says whether the operation writes; `now` pins the clock
    used to read a Retry-After HTTP-date. A caller that has already decoded a 2xx `body` with
    `decode_json` passes it as `payload`, so a large page is not decoded twice.
    """
    if exc is not None:
        return http.transport_failure(exc, operation=operation, mutating=mutating, platform=PLATFORM)
    if status_code is None:
        raise ValueError("classify needs either exc or status_code")
    headers = headers or {}
    raw = body if body is not None else b""
    if 200 <= status_code < 300:
        return _from_success(operation, mutating, status_code, headers, raw, payload)
    if 400 <= status_code < 500 and status_code not in _GENERIC_4XX:
        errors = _errors_body(raw)
        if operation == "token" or (errors is not None and errors.error == "invalid_grant"):
            why = "; ".join(errors.messages()) if errors is not None else ""
            return ProviderAuthError(
                f"{operation}: iMIS refused the credentials (HTTP {status_code})" + (f": {why}" if why else ""),
                operation=operation,
                status_code=status_code,
            )
    return http.status_failure(
        operation=operation,
        platform=PLATFORM,
        mutating=mutating,
        status_code=status_code,
        headers=headers,
        detail=_detail(headers, raw),
        now=now,
    )


def protocol_error(
    operation: str, *, mutating: bool, what: str, status_code: int | None = None
) -> ProviderProtocolError:
    """A usable-looking reply whose content is not what iMIS sends; `what` says what was wrong."""
    return http.protocol_error(operation, platform=PLATFORM, mutating=mutating, what=what, status_code=status_code)


# --- helpers ---------------------------------------------------------------------------------------------


def _from_success(
    operation: str, mutating: bool, status_code: int, headers: Mapping[str, str], raw: bytes | str, payload: Any
) -> ProviderError | None:
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
    if isinstance(payload, Mapping) and unwrap(payload.get("IsSuccessStatusCode")) is False:
        message = unwrap(payload.get("Message"))
        return ProviderRefused(
            f"{operation}: refused by iMIS: {http.clip(str(message)) if message else 'no message given'}",
            operation=operation,
            status_code=status_code,
        )
    return None


def _errors_body(raw: bytes | str) -> ErrorsBody | None:
    try:
        payload = decode_json(raw)
    except ValueError:
        return None
    if not isinstance(payload, Mapping):
        return None
    try:
        return ErrorsBody.model_validate(payload)
    except pydantic.ValidationError:
        return None


def _detail(headers: Mapping[str, str], raw: bytes | str) -> str:
    """`: <the API's messages joined>`, or the HTML page's title, or nothing."""
    errors = _errors_body(raw)
    if errors is not None and errors.messages():
        return ": " + http.clip("; ".join(errors.messages()))
    return http.html_detail(headers, raw)
