"""Option types with upper bounds, whose errors show at most the first 40 characters of what was typed.

click's own types accept any size (`--chunk-size 99999999999999999999`, a poll interval of `inf` or
`nan`) and repeat the value whole in their message; these stop at what the ledger's columns and the
product can hold, and quote the value with `quoted`.
"""

from __future__ import annotations

import math
from typing import Any

import click

from orchestrator.domain import limits
from orchestrator.domain.user_input import quoted


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,}"


class _QuotesShortly(click.ParamType[Any, Any]):
    """Re-words a refused value's message: the value quoted short, then what was expected."""

    def expected(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"{quoted(value)} is not {self.expected()}", param, ctx)


class _Range(_QuotesShortly):
    """From `low` to `high`, both included; never nan or infinite (nan passes click's own range check)."""

    noun = "a number"

    def __init__(self, low: float, high: float) -> None:
        super().__init__(min=low, max=high)  # type: ignore[call-arg]  # click's IntRange or FloatRange, next in the MRO
        self.low, self.high = low, high

    def expected(self) -> str:
        return f"{self.noun} from {_number(self.low)} to {_number(self.high)}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{quoted(value)} is not {self.expected()}", param, ctx)
        return number


class BoundedInt(_Range, click.IntRange):
    noun = "a whole number"


class BoundedFloat(_Range, click.FloatRange):
    pass


class ShortChoice(_QuotesShortly, click.Choice[str]):
    def expected(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))


class ShortDate(_QuotesShortly, click.DateTime):
    def __init__(self) -> None:
        super().__init__(formats=["%Y-%m-%d"])

    def expected(self) -> str:
        return "a date such as 2026-12-31"


class BoundedText(_QuotesShortly, click.types.StringParamType):
    def __init__(self, max_length: int) -> None:
        super().__init__()
        self.max_length = max_length

    def expected(self) -> str:
        return f"a text of at most {self.max_length} characters"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = super().convert(value, param, ctx)
        if len(text) > self.max_length:
            self.fail(f"{quoted(value)} is not {self.expected()}", param, ctx)
        return text


# A run's options (orchestrator/domain/limits.py), then the other commands'.
CHUNK_SIZE = BoundedInt(1, limits.MAX_CHUNK_SIZE)
ATTEMPTS = BoundedInt(1, limits.MAX_ATTEMPTS)
POLL_INTERVAL_SECONDS = BoundedFloat(limits.MIN_POLL_INTERVAL_SECONDS, limits.MAX_POLL_INTERVAL_SECONDS)
STALL_AFTER_SECONDS = BoundedFloat(limits.MIN_STALL_AFTER_SECONDS, limits.MAX_STALL_AFTER_SECONDS)
PARTY_ID = BoundedText(limits.MAX_PARTY_ID_LENGTH)
LISTED = BoundedInt(1, 10_000)  # rows a listing shows
THREADS = BoundedInt(1, 512)  # worker threads in one process
PORT = BoundedInt(0, 65_535)
DEMO_INVOICES = BoundedInt(1, 100_000)  # the demo's simulator keeps them in memory
LATENCY_MS = BoundedFloat(0, 60_000)
SEED = BoundedInt(0, 2**63 - 1)
