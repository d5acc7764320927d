"""What every platform's failed exchange has in common, as the orchestrator's typed errors.

Each platform keeps ONE pure, table-tested `classify()` for its replies (its `errors.py`); it calls
these for the parts no platform words differently. `platform` is the name users read ("iMIS").

    ProviderError
    ├── TransientProviderError              retried by the orchestrator, with backoff
    │   ├── ProviderUnavailable             transport_failure: connect error (not applied), connection
    │   │                                   dropped before the reply; status_failure: 500/502/504 (a
    │   │                                   write may have applied), 501/503 (not applied)
    │   ├── ProviderTimeout                 transport_failure: connect/pool timeout (not applied),
    │   │                                   read/write timeout (a write may have applied); 408
    │   └── ProviderThrottled               429, `retry_after` from Retry-After (seconds or HTTP-date)
    └── PermanentProviderError              recorded, never retried
        ├── ProviderRefused                 other 4xx (with the platform's `detail`)
        ├── ProviderNotFound                404
        ├── ProviderAuthError               401, 403
        └── ProviderProtocolError           protocol_error: a reply that is not what the platform
                                            sends (a write may have applied); a redirect; an
                                            unsupported scheme; an undecodable body

`may_have_applied` is only ever True for a `mutating` operation: such an outcome is settled by
reading, never by sending the write again.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from orchestrator.adapters.providers.tenant_limit import LimiterUnavailable
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

__all__ = [
    "SETTLE_BY_READING",
    "clip",
    "header",
    "html_detail",
    "looks_like_html",
    "outcome_of",
    "parse_retry_after",
    "protocol_error",
    "status_failure",
    "transport_failure",
]

#: Appended to the message of an error on a write that may have been applied.
SETTLE_BY_READING = "; the write may have been applied: settle by reading before sending again"

_MAX_DETAIL = 500
#: 5xx statuses that say the server did not act on the request.
_NOT_APPLIED_5XX = frozenset({501, 503})


def transport_failure(exc: BaseException, *, operation: str, mutating: bool, platform: str) -> ProviderError:
    """The typed error for a request that raised instead of giving a reply."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    settle = SETTLE_BY_READING if mutating else ""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ProviderTimeout(
            f"{operation}: no connection to {platform} in time ({what}); nothing was sent", operation=operation
        )
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(
            f"{operation}: no reply from {platform} in time ({what})" + settle,
            operation=operation,
            may_have_applied=mutating,
        )
    if isinstance(exc, LimiterUnavailable):
        # Our own Redis, not the platform: naming the platform would send an operator to the wrong system.
        return ProviderUnavailable(f"{operation}: not sent to {platform}: {exc}", operation=operation)
    if isinstance(exc, httpx.ConnectError):
        return ProviderUnavailable(
            f"{operation}: cannot connect to {platform} ({what}); nothing was sent", operation=operation
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.TooManyRedirects | httpx.DecodingError):
        return ProviderProtocolError(
            f"{operation}: {what}" + settle,
            operation=operation,
            may_have_applied=mutating and isinstance(exc, httpx.DecodingError),
        )
    return ProviderUnavailable(
        f"{operation}: the connection to {platform} failed before the reply ({what})" + settle,
        operation=operation,
        may_have_applied=mutating,
    )


def status_failure(
    *,
    operation: str,
    platform: str,
    mutating: bool,
    status_code: int,
    headers: Mapping[str, str],
    detail: str = "",
    now: datetime | None = None,
) -> ProviderError:
    """The typed error for a reply whose status is not 2xx.

    `detail` is what the platform read from the body (`": <its messages>"`, see `html_detail`), shown
    on 5xx, 404 and refusals; `now` pins the clock used to read a Retry-After HTTP-date.
    """
    if status_code == 429:
        retry_after = parse_retry_after(header(headers, "Retry-After"), now=now)
        hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
        return ProviderThrottled(
            f"{operation}: throttled by {platform} (HTTP 429){hint}",
            operation=operation,
            status_code=429,
            retry_after=retry_after,
        )
    if status_code >= 500:
        applied = mutating and status_code not in _NOT_APPLIED_5XX
        message = f"{operation}: {platform} server error (HTTP {status_code}{_reason(status_code)}){detail}"
        return ProviderUnavailable(
            message + (SETTLE_BY_READING if applied else ""),
            operation=operation,
            status_code=status_code,
            may_have_applied=applied,
            retry_after=parse_retry_after(header(headers, "Retry-After"), now=now),
        )
    if status_code == 401:
        return ProviderAuthError(
            f"{operation}: {platform} rejected the credentials or token (HTTP 401)",
            operation=operation,
            status_code=401,
        )
    if status_code == 403:
        return ProviderAuthError(
            f"{operation}: the {platform} user is not permitted to do this (HTTP 403)",
            operation=operation,
            status_code=403,
        )
    if status_code == 404:
        return ProviderNotFound(f"{operation}: not found (HTTP 404){detail}", operation=operation, status_code=404)
    if status_code == 408:
        return ProviderTimeout(
            f"{operation}: {platform} timed out waiting for the request (HTTP 408)",
            operation=operation,
            status_code=408,
        )
    if 400 <= status_code < 500:
        return ProviderRefused(
            f"{operation}: refused by {platform} (HTTP {status_code}{_reason(status_code)}){detail}",
            operation=operation,
            status_code=status_code,
        )
    location = header(headers, "Location")
    return ProviderProtocolError(
        f"{operation}: unexpected HTTP {status_code}" + (f" redirect to {location}" if location else ""),
        operation=operation,
        status_code=status_code,
    )


def protocol_error(
    operation: str, *, platform: str, mutating: bool, what: str, status_code: int | None = None
) -> ProviderProtocolError:
    """A usable-looking reply whose content is not what the platform sends; `what` says what was wrong."""
    message = f"{operation}: unusable reply from {platform}" + (f" (HTTP {status_code})" if status_code else "")
    message += f": {clip(what)}"
    if mutating:
        message += SETTLE_BY_READING
    return ProviderProtocolError(message, operation=operation, status_code=status_code, may_have_applied=mutating)


def outcome_of(error: ProviderError | None) -> CallOutcome:
    """How an exchange is recorded in its `ApiCall`."""
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


def html_detail(headers: Mapping[str, str], raw: bytes | str) -> str:
    """`: HTML page '<title>'` when the body is an HTML page (a proxy's, a maintenance page), else nothing."""
    if not _text(raw).strip() or not looks_like_html(headers, raw):
        return ""
    title = html_title(raw)
    return f": HTML page {title!r}" if title else ": HTML page"


def looks_like_html(headers: Mapping[str, str], raw: bytes | str) -> bool:
    content_type = (header(headers, "Content-Type") or "").lower()
    text = _text(raw).lstrip().lower()
    return "html" in content_type or text.startswith(("<!doctype html", "<html", "<"))


def html_title(raw: bytes | str) -> str | None:
    match = re.search(r"<title[^>]*>(.*?)</title>", _text(raw), re.IGNORECASE | re.DOTALL)
    return " ".join(match.group(1).split()) if match else None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value from any mapping, whatever the case of its name."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def clip(value: Any) -> str:
    """`value` as text, cut to a length fit for a message."""
    text = str(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _reason(status_code: int) -> str:
    phrase = httpx.codes.get_reason_phrase(status_code)
    return f" {phrase}" if phrase else ""


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
