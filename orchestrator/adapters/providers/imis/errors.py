"""How an iMIS exchange that went wrong becomes one of the orchestrator's typed errors.

`classify` is the one place that decides; it is pure (no I/O, no clock unless `now` is omitted) and
table-tested in `tests/unit/providers/imis/test_errors.py`. The classes are those of
`orchestrator.domain.errors`; no iMIS-specific subclass exists:

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

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pydantic

from orchestrator.adapters.providers.imis.wire import ErrorsBody, decode_json, unwrap
from orchestrator.domain.billing import CallOutcome
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    TransientProviderError,
)

__all__ = ["NOT_DECODED", "classify", "outcome_of", "parse_retry_after", "protocol_error"]

#: `classify`'s default `payload`: the caller has not decoded the body.
NOT_DECODED: Any = object()

_MAX_DETAIL = 500
_NOT_APPLIED_5XX = frozenset({501, 503})


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
        return _from_exception(operation, mutating, exc)
    if status_code is None:
        raise ValueError("classify needs either exc or status_code")
    headers = headers or {}
    raw = body if body is not None else b""
    if 200 <= status_code < 300:
        return _from_success(operation, mutating, status_code, headers, raw, payload)
    if status_code == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
        hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
        return ProviderThrottled(
            f"{operation}: throttled by iMIS (HTTP 429){hint}",
            operation=operation,
            status_code=429,
            retry_after=retry_after,
        )
    if status_code >= 500:
        applied = mutating and status_code not in _NOT_APPLIED_5XX
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
        message = f"{operation}: iMIS server error (HTTP {status_code}{_reason(status_code)})"
        message += _detail(headers, raw)
        if applied:
            message += "; the write may have been applied: settle by reading before sending again"
        return ProviderUnavailable(
            message,
            operation=operation,
            status_code=status_code,
            may_have_applied=applied,
            retry_after=retry_after,
        )
    if status_code == 401:
        return ProviderAuthError(
            f"{operation}: iMIS rejected the credentials or token (HTTP 401)",
            operation=operation,
            status_code=401,
        )
    if status_code == 403:
        return ProviderAuthError(
            f"{operation}: the iMIS user is not permitted to do this (HTTP 403)",
            operation=operation,
            status_code=403,
        )
    if status_code == 404:
        return ProviderNotFound(
            f"{operation}: not found (HTTP 404){_detail(headers, raw)}",
            operation=operation,
            status_code=404,
        )
    if status_code == 408:
        return ProviderTimeout(
            f"{operation}: iMIS timed out waiting for the request (HTTP 408)",
            operation=operation,
            status_code=408,
        )
    if 400 <= status_code < 500:
        errors = _errors_body(raw)
        if operation == "token" or (errors is not None and errors.error == "invalid_grant"):
            why = "; ".join(errors.messages()) if errors is not None else ""
            return ProviderAuthError(
                f"{operation}: iMIS refused the credentials (HTTP {status_code})" + (f": {why}" if why else ""),
                operation=operation,
                status_code=status_code,
            )
        return ProviderRefused(
            f"{operation}: refused by iMIS (HTTP {status_code}{_reason(status_code)}){_detail(headers, raw)}",
            operation=operation,
            status_code=status_code,
        )
    location = _header(headers, "Location")
    return ProviderProtocolError(
        f"{operation}: unexpected HTTP {status_code}" + (f" redirect to {location}" if location else ""),
        operation=operation,
        status_code=status_code,
    )


def protocol_error(
    operation: str, *, mutating: bool, what: str, status_code: int | None = None
) -> ProviderProtocolError:
    """A usable-looking reply whose content is not what iMIS sends; `what` says what was wrong."""
    message = f"{operation}: unusable reply from iMIS" + (f" (HTTP {status_code})" if status_code else "")
    message += f": {_clip(what)}"
    if mutating:
        message += "; the write may have been applied: settle by reading before sending again"
    return ProviderProtocolError(message, operation=operation, status_code=status_code, may_have_applied=mutating)


def outcome_of(error: ProviderError | None) -> CallOutcome:
    if error is None:
        return CallOutcome.OK
    if isinstance(error, TransientProviderError):
        return CallOutcome.TRANSIENT
    if isinstance(error, PermanentProviderError):
        return CallOutcome.PERMANENT
    return CallOutcome.PERMANENT


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- helpers ---------------------------------------------------------------------------------------------


def _from_exception(operation: str, mutating: bool, exc: BaseException) -> ProviderError:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    settle = "; the write may have been applied: settle by reading before sending again"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderTimeout(
            f"{operation}: no connection to iMIS in time ({what}); nothing was sent", operation=operation
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            f"{operation}: no reply from iMIS in time ({what})" + (settle if mutating else ""),
            operation=operation,
            may_have_applied=mutating,
        )
    if isinstance(exc, httpx.ConnectError):
        return ProviderUnavailable(
            f"{operation}: cannot connect to iMIS ({what}); nothing was sent", operation=operation
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.TooManyRedirects | httpx.DecodingError):
        return ProviderProtocolError(
            f"{operation}: {what}" + (settle if mutating else ""),
            operation=operation,
            may_have_applied=mutating and isinstance(exc, httpx.DecodingError),
        )
    return ProviderUnavailable(
        f"{operation}: the connection to iMIS failed before the reply ({what})" + (settle if mutating else ""),
        operation=operation,
        may_have_applied=mutating,
    )


def _from_success(
    operation: str, mutating: bool, status_code: int, headers: Mapping[str, str], raw: bytes | str, payload: Any
) -> ProviderError | None:
    if status_code == 204 or not raw.strip():
        return None
    if payload is NOT_DECODED:
        try:
            payload = decode_json(raw)
        except ValueError as exc:
            what = _not_json(headers, raw, exc)
            return protocol_error(operation, mutating=mutating, what=what, status_code=status_code)
    if isinstance(payload, Mapping) and unwrap(payload.get("IsSuccessStatusCode")) is False:
        message = unwrap(payload.get("Message"))
        return ProviderRefused(
            f"{operation}: refused by iMIS: {_clip(str(message)) if message else 'no message given'}",
            operation=operation,
            status_code=status_code,
        )
    return None


def _not_json(headers: Mapping[str, str], raw: bytes | str, exc: ValueError) -> str:
    if _looks_like_html(headers, raw):
        title = _html_title(raw)
        return "an HTML page instead of JSON" + (f" ({title!r})" if title else "")
    return f"truncated or malformed JSON ({exc})"


def _looks_like_html(headers: Mapping[str, str], raw: bytes | str) -> bool:
    content_type = (_header(headers, "Content-Type") or "").lower()
    text = _text(raw).lstrip().lower()
    return "html" in content_type or text.startswith(("<!doctype html", "<html", "<"))


def _html_title(raw: bytes | str) -> str | None:
    match = re.search(r"<title[^>]*>(.*?)</title>", _text(raw), re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).split()) if match else None


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
        return ": " + _clip("; ".join(errors.messages()))
    if _text(raw).strip() and _looks_like_html(headers, raw):
        title = _html_title(raw)
        return f": HTML page {title!r}" if title else ": HTML page"
    return ""


def _reason(status_code: int) -> str:
    phrase = httpx.codes.get_reason_phrase(status_code)
    return f" {phrase}" if phrase else ""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"
