"""What operators see of runs (the web view and the HTML report): one read-side port and its values.

Pages are built from these frozen values only, so the templates know nothing of the ledger's
tables; `orchestrator/adapters/ledger/views.py` is the one place that turns rows into them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from orchestrator.domain.run import ACTIVE_RUN_STATES, TERMINAL_ITEM_STATES, ItemState, ReasonCode, RunState

ZERO = Decimal("0")


def shown_money(value: Decimal) -> str:
    """An amount as operators read it: thousands separated, two places."""
    return f"{value:,.2f}"


def shown_time(value: datetime | None) -> str:
    """A moment in UTC, to the second; `-` when there is none."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def shown_duration(seconds: float | None) -> str:
    """`4:07`, `1:02:03`; `-` when unknown."""
    if seconds is None:
        return "-"
    text = str(timedelta(seconds=round(seconds)))
    return text.removeprefix("0:") if seconds < 3600 else text


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Invoices of a run per item state, with their money."""

    counts: Mapping[ItemState, int] = field(default_factory=dict)
    amounts: Mapping[ItemState, Decimal] = field(default_factory=dict)

    def count(self, *states: ItemState) -> int:
        return sum(self.counts.get(state, 0) for state in states)

    def amount(self, *states: ItemState) -> Decimal:
        return sum((self.amounts.get(state, ZERO) for state in states), ZERO)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def settled(self) -> int:
        return self.count(*TERMINAL_ITEM_STATES)

    @property
    def reversed(self) -> Decimal:
        return self.amount(ItemState.REVERSED)

    @property
    def left(self) -> Decimal:
        """Left as they were: paid, partly paid, nothing to reverse."""
        return self.amount(ItemState.SKIPPED)

    @property
    def failed(self) -> Decimal:
        return self.amount(ItemState.FAILED)

    @property
    def open(self) -> Decimal:
        return self.amount(ItemState.PENDING, ItemState.IN_FLIGHT, ItemState.RETRY_WAIT)


@dataclass(frozen=True, slots=True)
class RunHeadline:
    """One run as the runs page lists it."""

    id: str
    provider: str
    selection: str  # what the run reverses, in the platform's words
    state: RunState
    reason_code: ReasonCode | None
    reason: str | None
    dry_run: bool
    created_at: datetime
    finished_at: datetime | None
    planned: bool
    outcomes: Outcomes

    def duration_seconds(self, now: datetime) -> float:
        return max(0.0, ((self.finished_at or now) - self.created_at).total_seconds())


@dataclass(frozen=True, slots=True)
class RunsQuery:
    states: frozenset[RunState] = frozenset()
    providers: frozenset[str] = frozenset()
    include_dry_runs: bool = False
    limit: int = 100


@dataclass(frozen=True, slots=True)
class RunsPage:
    runs: tuple[RunHeadline, ...]
    providers: tuple[str, ...]  # every provider with a run in the ledger, for the filter


@dataclass(frozen=True, slots=True)
class StatusStep:
    """One status the platform reported for the run's billing, when it was first seen."""

    subject: str  # what the platform's status is about (iMIS: a billing log's key)
    status: str  # "5"
    label: str  # "Reversing invoices"
    at: datetime
    note: str | None = None


@dataclass(frozen=True, slots=True)
class CallView:
    """One recorded HTTP exchange with the platform."""

    operation: str
    outcome: str
    status_code: int | None
    latency_ms: float
    started_at: datetime
    error: str | None


@dataclass(frozen=True, slots=True)
class Action:
    """A command line an operator may run now, and what it does."""

    command: str
    effect: str


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failed invoices sharing one reason, with one example and the platform call that failed."""

    reason: str
    count: int
    amount: Decimal
    example_invoice: str
    example_error: str | None
    example_call: CallView | None


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    offset_seconds: float  # from the activity's start
    settled: int  # invoices that reached a final state in this bucket
    reversed: int
    calls: int
    busy_ms: float  # summed latency of the calls started in this bucket


@dataclass(frozen=True, slots=True)
class Activity:
    """Reversals and calls over the run's time, in equal buckets."""

    start: datetime
    bucket_seconds: float
    buckets: tuple[ActivityBucket, ...]


@dataclass(frozen=True, slots=True)
class Progress:
    """What changes while a run moves: polled by the run page."""

    run_id: str
    state: RunState
    reason: str | None
    planned: bool
    outcomes: Outcomes
    settled_last_minute: int  # invoices worked to a final state (not those left as-is by planning)
    observed_at: datetime
    last_step: StatusStep | None
    window_seconds: float = 60.0  # the last minute, or the run's age when it is younger

    @property
    def rate_per_second(self) -> float:
        return self.settled_last_minute / max(1.0, self.window_seconds)

    @property
    def eta_seconds(self) -> float | None:
        """Time left for the invoices still open at the last minute's pace; None when unknown."""
        left = self.outcomes.total - self.outcomes.settled
        if left == 0:
            return 0.0
        if not self.planned or self.rate_per_second == 0:
            return None
        return left / self.rate_per_second


@dataclass(frozen=True, slots=True)
class RunDetail:
    headline: RunHeadline
    progress: Progress
    settings: Mapping[str, str]  # the run's options and platform references, as labelled text
    rebill_sent: bool
    steps: tuple[StatusStep, ...]
    failures: tuple[FailureGroup, ...]
    run_failures: tuple[CallView, ...]  # failed calls about the run itself (planning, rebill, polls)
    calls: Mapping[tuple[str, str], int]  # (operation, outcome) -> count
    activity: Activity
    new_amount: Decimal | None = None  # what the platform billed anew, where it says (None: it does not)


@dataclass(frozen=True, slots=True)
class InvoiceQuery:
    """A page of a run's invoices: `text` matches an invoice id or party id prefix, or part of a party name."""

    text: str = ""
    outcome: ItemState | None = None
    after: int | None = None  # keyset paging on the item id
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    item_id: int
    invoice_id: str
    party_id: str | None
    party_name: str | None
    amount: Decimal
    outcome: ItemState
    reason: str | None
    attempts: int  # since the run (or an operator's retry) last started it
    last_error: str | None
    settled_by_read: bool
    number: str | None = None
    result_ref: str | None = None  # the platform's reference for the reversal (a credit memo, a batch)
    rebill_ref: str | None = None  # ... and for the invoice billed anew
    new_amount: Decimal | None = None
    attempts_total: int = 0  # every claim, retries included
    updated_at: datetime | None = None  # when the outcome was written


@dataclass(frozen=True, slots=True)
class EarlierOutcome:
    """An outcome the invoice had before an operator's retry (or a later reading) replaced it."""

    outcome: ItemState
    reason: str | None
    error: str | None
    attempts: int
    settled_at: datetime
    replaced_at: datetime


@dataclass(frozen=True, slots=True)
class InvoicePage:
    lines: tuple[InvoiceLine, ...]
    next_after: int | None  # pass as `after` for the next page
    previous_before: int | None  # pass as `before` for the previous page


@dataclass(frozen=True, slots=True)
class InvoiceHistory:
    line: InvoiceLine
    calls: tuple[CallView, ...]  # every call of every attempt, oldest first
    earlier: tuple[EarlierOutcome, ...] = ()


class RunViews(Protocol):
    """Read-only views of the ledger. Every method is one short read; none ever writes."""

    def runs(self, query: RunsQuery) -> RunsPage: ...

    def resolve(self, run_id: str) -> str | None:
        """The full id of a run from its id or a unique prefix."""
        ...

    def run(self, run_id: str) -> RunDetail | None: ...

    def progress(self, run_id: str) -> Progress | None: ...

    def invoices(self, run_id: str, query: InvoiceQuery) -> InvoicePage: ...

    def invoice(self, run_id: str, item_id: int) -> InvoiceHistory | None: ...

    def every_invoice(self, run_id: str, *, outcome: ItemState | None = None) -> Iterator[InvoiceHistory]:
        """Every invoice of the run (or those with `outcome`) with its calls and earlier outcomes, in item
        order, streamed (the reports)."""
        ...


def operator_actions(
    run_id: str, state: RunState, reason_code: ReasonCode | None, *, rebill_sent: bool
) -> list[Action]:
    """The commands that do something for a run in this state (what `services.runs` accepts)."""
    actions: list[Action] = []
    retry = _RETRY_EFFECTS.get(reason_code) if state in _RESUMABLE else None
    if state in ACTIVE_RUN_STATES:
        retry = "re-sends whatever looks lost (the reconciler does it too, every few seconds)"
    if retry:
        actions.append(Action(f"rebill retry {run_id} --wait", retry))
    if not state.is_closed and not rebill_sent:
        actions.append(
            Action(f"rebill cancel {run_id}", "stops dispatching; invoices already reversed stay reversed, no rebill")
        )
    if reason_code is ReasonCode.BILLING_FAILED:
        actions.append(
            Action(
                f"rebill status {run_id}",
                "the rebill failed on the platform: check it there (sending it again could bill members twice)",
            )
        )
    return actions


_RESUMABLE = frozenset({RunState.NEEDS_ATTENTION, RunState.STALLED, RunState.FAILED})
_RETRY_EFFECTS: dict[ReasonCode | None, str] = {
    ReasonCode.FAILED_ITEMS: "once the cause is fixed: re-sends only the failed invoices, then the rebill",
    ReasonCode.AWAITING_OPERATOR: "follows the run on its platform again, once the operator has done what it waits for",
    ReasonCode.STALLED: "follows the billing again",
    ReasonCode.REBILL_OUTCOME_UNKNOWN: "settles the rebill by reading the platform, sends it only if it never arrived",
    ReasonCode.REBILL_REFUSED: "sends the rebill again",
    ReasonCode.PLANNING_FAILED: "planning resumes where it stopped",
    ReasonCode.CREDENTIALS_REFUSED: "acts on the invoices again, once the credentials are fixed",
}
