"""Fault settings every simulator shares, and the random decisions made from them.

`Faults` is an immutable pydantic model; a platform subclasses it to add its own settings (the
iMIS one adds token lifetime, page cap, per-invoice faults...). `FaultInjector` holds the current
settings (swapped atomically, so they can change while requests are in flight) and an injectable
`random.Random`, so a seeded simulator makes the same decisions every run.

Per request, `FaultInjector.decide(operation)` draws at most two numbers: one for jitter (only when
`jitter_ms` > 0) and one uniform draw matched against the cumulative probabilities, in this order:

| kind             | answer                                          | operation applied? |
|------------------|-------------------------------------------------|--------------------|
| `429`            | 429 + `Retry-After: retry_after_seconds`        | no                 |
| `500`            | 500 JSON error                                  | no                 |
| `503_html`       | 503 `text/html` page + `Retry-After` likewise    | no                 |
| `hang`           | sleeps `hang_seconds`, then 504 HTML            | no                 |
| `reply_lost`     | 502 HTML, or sleep `hang_seconds` then 504      | **yes**            |
| `html_200`       | 200 `text/html` (a proxy/login page)            | no                 |
| `truncated_json` | 200 `application/json`, the body cut in half    | **yes**            |

Probabilities are exclusive: if they add up to more than 1, the later kinds get what is left.
Latency (`latency_ms` + uniform `jitter_ms`) applies to every counted request; the probabilistic
faults apply to every API operation when `fault_operations` is None, otherwise only to the
operations named there (which may include an authentication operation such as `token`).
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

ReplyLostMode = Literal["502", "hang"]

Probability = Field(default=0.0, ge=0.0, le=1.0)


class Faults(BaseModel):
    """What any simulator can be told to do wrong; subclass it for a platform's own settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0.0)
    jitter_ms: float = Field(default=0.0, ge=0.0)
    p_429: float = Probability
    retry_after_seconds: int = Field(default=1, ge=0)
    p_500: float = Probability
    p_503_html: float = Probability
    p_hang: float = Probability
    hang_seconds: float = Field(default=60.0, ge=0.0)
    p_reply_lost: float = Probability
    reply_lost_mode: ReplyLostMode = "502"
    p_html_200: float = Probability
    p_truncated_json: float = Probability
    fault_operations: frozenset[str] | None = None

    def public_dict(self) -> dict[str, Any]:
        """JSON-ready view (sets become sorted lists)."""
        data = self.model_dump()
        ops = data["fault_operations"]
        data["fault_operations"] = None if ops is None else sorted(ops)
        return data


class FaultKind(enum.StrEnum):
    TOO_MANY_REQUESTS = "429"
    SERVER_ERROR = "500"
    MAINTENANCE_HTML = "503_html"
    HANG = "hang"
    REPLY_LOST = "reply_lost"
    HTML_200 = "html_200"
    TRUNCATED_JSON = "truncated_json"

    @property
    def applies_operation(self) -> bool:
        """Whether the operation is carried out before the reply goes wrong."""
        return self in (FaultKind.REPLY_LOST, FaultKind.TRUNCATED_JSON)


_PROBABILITY_FIELDS: tuple[tuple[FaultKind, str], ...] = (
    (FaultKind.TOO_MANY_REQUESTS, "p_429"),
    (FaultKind.SERVER_ERROR, "p_500"),
    (FaultKind.MAINTENANCE_HTML, "p_503_html"),
    (FaultKind.HANG, "p_hang"),
    (FaultKind.REPLY_LOST, "p_reply_lost"),
    (FaultKind.HTML_200, "p_html_200"),
    (FaultKind.TRUNCATED_JSON, "p_truncated_json"),
)

F = TypeVar("F", bound=Faults)


@dataclass(frozen=True, slots=True)
class FaultDecision(Generic[F]):
    """What to do to one request: wait `delay_seconds`, then fail as `kind` (None: answer normally)."""

    delay_seconds: float
    kind: FaultKind | None
    settings: F


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch: objects merge recursively, null removes a member."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = value
    return result


class FaultInjector(Generic[F]):
    """The current fault settings plus the random source; safe to use from any thread."""

    def __init__(self, faults: F, rng: random.Random | None = None) -> None:
        self._faults = faults
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()

    @property
    def settings(self) -> F:
        return self._faults

    def replace(self, faults: F) -> F:
        with self._lock:
            self._faults = faults
        return faults

    def update(self, patch: Mapping[str, Any] | None = None, /, **changes: Any) -> F:
        """Apply a JSON merge patch (and/or keyword changes); raises pydantic.ValidationError.

        A null member resets that setting to its default (in a mapping setting: removes that entry).
        """
        with self._lock:
            merged = merge_patch(self._faults.public_dict(), dict(patch or {}, **changes))
            new = type(self._faults).model_validate(merged)
            self._faults = new
        return new

    def applies_to(self, operation: str, settings: Faults, *, api: bool) -> bool:
        if settings.fault_operations is None:
            return api
        return operation in settings.fault_operations

    def decide(self, operation: str, *, api: bool = True) -> FaultDecision[F]:
        """Draw this request's delay and fault. `api` is False for an authentication route (`/token`)."""
        settings = self._faults
        delay = settings.latency_ms / 1000.0
        kind: FaultKind | None = None
        with self._lock:
            if settings.jitter_ms > 0:
                delay += self._rng.uniform(0.0, settings.jitter_ms) / 1000.0
            if self.applies_to(operation, settings, api=api):
                total = 0.0
                draw = self._rng.random()
                for candidate, name in _PROBABILITY_FIELDS:
                    total += getattr(settings, name)
                    if draw < total:
                        kind = candidate
                        break
        return FaultDecision(delay_seconds=delay, kind=kind, settings=settings)
