"""Reading a 2xx reply at the boundary: JSON decoded once, money exact, pydantic errors without their input."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pydantic

from orchestrator.adapters.providers.http.failures import html_title, looks_like_html, protocol_error

__all__ = [
    "NOT_DECODED",
    "NO_BODY",
    "decode_json",
    "decode_success",
    "describe_validation_error",
    "parse_model",
    "success_payload",
]

#: A body nobody decoded: not a 2xx, not JSON, or the caller did not try.
NOT_DECODED: Any = object()

#: What a 2xx reply without a body decodes to.
NO_BODY: Any = object()

M = TypeVar("M", bound=pydantic.BaseModel)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def decode_json(raw: bytes | str) -> Any:
    """Decode a JSON body; every non-integer number becomes an exact `Decimal`.

    A UTF-8 byte order mark is skipped; NaN and Infinity are refused. Raises `ValueError` (a
    `json.JSONDecodeError` or a `UnicodeDecodeError`) when the body is not JSON.
    """
    text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def decode_success(response: httpx.Response) -> Any:
    """A 2xx body decoded once, for the platform's `classify` and the parser alike (pages are large).

    `NO_BODY` when there is none; `NOT_DECODED` when the reply is not a 2xx or not JSON, so that
    `classify` names what is wrong with it.
    """
    if not 200 <= response.status_code < 300:
        return NOT_DECODED
    raw = response.content
    if response.status_code == 204 or not raw.strip():
        return NO_BODY
    try:
        return decode_json(raw)
    except ValueError:
        return NOT_DECODED


def success_payload(
    operation: str,
    *,
    platform: str,
    mutating: bool,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | str,
    payload: Any = NOT_DECODED,
) -> Any:
    """A 2xx reply's body for a platform's `classify`: `NO_BODY` when empty, else the decoded JSON
    (`payload` when the caller decoded it already).

    Raises `ProviderProtocolError` when the body is not JSON: an HTML page (a login or proxy page),
    truncated or malformed JSON. On a write that may have been applied (the request was accepted,
    the reply is unusable).
    """
    if status_code == 204 or not body.strip():
        return NO_BODY
    if payload is not NOT_DECODED:
        return payload
    try:
        return decode_json(body)
    except ValueError as exc:
        if looks_like_html(headers, body):
            title = html_title(body)
            what = "an HTML page instead of JSON" + (f" ({title!r})" if title else "")
        else:
            what = f"truncated or malformed JSON ({exc})"
        raise protocol_error(
            operation, platform=platform, mutating=mutating, what=what, status_code=status_code
        ) from None


def parse_model(
    model: type[M], payload: Any, *, operation: str, platform: str, mutating: bool, status_code: int | None = None
) -> M:
    """`payload` (from `decode_success`) as `model`; `ProviderProtocolError` naming the fields at fault
    (never their values) when it does not fit, or when there was no body."""
    if payload is NO_BODY:
        raise protocol_error(
            operation, platform=platform, mutating=mutating, what="an empty body", status_code=status_code
        )
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as exc:
        raise protocol_error(
            operation,
            platform=platform,
            mutating=mutating,
            what=f"unexpected {model.__name__} shape: {describe_validation_error(exc)}",
            status_code=status_code,
        ) from None


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """Where and what, never the offending input (it may be large, or sensitive)."""
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:3]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
