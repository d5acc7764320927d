"""How an EnergyCAP reply that went wrong becomes one of the orchestrator's typed errors.

`classify` is the one place that decides; it is pure and table-tested in
`tests/unit/providers/energycap/test_errors.py`. A request that raised (timeout, reset, refused
connection) is the kit's `transport_failure`, the same for every platform. The contract's table
(reference/energycap-api.md, "Errors"):

    ProviderError
    ├── TransientProviderError            retried by the orchestrator, with backoff
    │   ├── ProviderUnavailable           500, 502, 503, 504 (HTML or empty bodies too): on a write
    │   │                                 the request may have been applied (settle by reading the
    │   │                                 batch by its code first); EnergyCAP promises nothing for a 503
    │   ├── ProviderTimeout               408; timeouts (the kit)
    │   └── ProviderThrottled             429 (undocumented), `retry_after` from Retry-After
    └── PermanentProviderError            recorded, never retried
        ├── ProviderRefused               400 and other 4xx, with the `{"errors": [{"message"}]}` text
        │   └── BatchCodeInUse            400 "batch code already exists": nothing was applied by
        │                                 this call, but an earlier one with the code may have been:
        │                                 settle by reading the batch, never fail on it
        ├── ProviderNotFound              404: unknown bill, batch, task or path
        ├── ProviderAuthError             401 (key missing, wrong, revoked), 403 (the key's user lacks
        │                                 BillsAndBatches): stop the run, naming REBILL_ENERGYCAP_API_KEY
        │                                 and never its value
        └── ProviderProtocolError         a 2xx that is not JSON (an HTML page, a cut body); on a
                                          write it may have been applied
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic

from orchestrator.adapters.providers.energycap.settings import API_KEY_VARIABLE
from orchestrator.adapters.providers.energycap.wire import ErrorsBody
from orchestrator.adapters.providers.http import (
    NOT_DECODED,
    SETTLE_BY_READING,
    clip,
    decode_json,
    header,
    html_detail,
    parse_retry_after,
    status_failure,
    success_payload,
)
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderUnavailable,
)

__all__ = ["PLATFORM", "BatchCodeInUse", "classify", "error_messages"]

PLATFORM = "EnergyCAP"

#: How EnergyCAP words a batch code that another batch has (any case; "smart batch" keeps codes unique).
_CODE_IN_USE = re.compile(
    r"batch\s*code.*(already\s+exists|in\s+use|already\s+used|must\s+be\s+unique|not\s+unique|duplicate)"
    r"|duplicate\s+batch\s*code",
    re.IGNORECASE | re.DOTALL,
)


class BatchCodeInUse(ProviderRefused):
    """The batch code of a reverse or import names a batch that exists already.

    This call applied nothing, but a call before it with the same code may have: the caller reads
    the batch by its code and settles, it never fails the chunk or picks another code.
    """


def classify(
    *,
    operation: str,
    mutating: bool = False,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | str,
    payload: Any = NOT_DECODED,
    now: datetime | None = None,
) -> ProviderError | None:
    """The typed error for one EnergyCAP reply, or None when it is a usable success.

    `payload` is the 2xx body as the channel decoded it once; `now` pins the clock a Retry-After
    HTTP-date is read against.
    """
    if 200 <= status_code < 300:
        try:
            success_payload(
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
        return None
    messages = error_messages(body)
    detail = ": " + clip("; ".join(messages)) if messages else html_detail(headers, body)
    if status_code == 401:
        return ProviderAuthError(
            f"{operation}: EnergyCAP rejected the API key (HTTP 401): it is missing, wrong or revoked; "
            f"set a valid key in {API_KEY_VARIABLE}",
            operation=operation,
            status_code=401,
        )
    if status_code == 403:
        return ProviderAuthError(
            f"{operation}: the EnergyCAP user of the API key in {API_KEY_VARIABLE} may not do this (HTTP 403): "
            "reversing and importing bills need the BillsAndBatches permission (Edit/Create)",
            operation=operation,
            status_code=403,
        )
    if status_code == 400 and any(_CODE_IN_USE.search(message) for message in messages):
        return BatchCodeInUse(
            f"{operation}: the batch code is in use, nothing was applied by this call: settle by reading "
            f"the batch by its code (HTTP 400{detail})",
            operation=operation,
            status_code=400,
        )
    if status_code == 503 and mutating:
        return ProviderUnavailable(
            f"{operation}: {PLATFORM} unavailable (HTTP 503){detail}" + SETTLE_BY_READING,
            operation=operation,
            status_code=503,
            may_have_applied=True,
            retry_after=parse_retry_after(header(headers, "Retry-After"), now=now),
        )
    return status_failure(
        operation=operation,
        platform=PLATFORM,
        mutating=mutating,
        status_code=status_code,
        headers=headers,
        detail=detail,
        now=now,
    )


def error_messages(body: bytes | str) -> list[str]:
    """The messages of a `{"errors": [{"message": ...}]}` body; none when the body is anything else."""
    try:
        payload = decode_json(body)
        return ErrorsBody.model_validate(payload).messages() if isinstance(payload, Mapping) else []
    except (ValueError, pydantic.ValidationError):
        return []
