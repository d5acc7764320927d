"""A reverse-and-rebill run: its states, its items, its options, and the rules that move them.

Run life:

    PLANNING ──> REVERSING ──> REBILLING ──> POLLING ──> COMPLETED
        │            │             │            ├──> NEEDS_ATTENTION (unposted batch not posted)
        │            │             │            ├──> FAILED          (BillingLog 3 or 6)
        │            │             │            └──> STALLED         (no status change past the deadline)
        │            └──> NEEDS_ATTENTION (items FAILED: no rebill; `rebill retry` resumes)
        └──> DRY_RUN (the plan only)          any non-final state ──> CANCELLED

Item life: PENDING ──claim──> IN_FLIGHT ──> REVERSED | SKIPPED | FAILED
                                   └──> RETRY_WAIT (transient) ──claim──> IN_FLIGHT ...
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any

from orchestrator.domain.billing import BillingLog, BillingLogStatus, Invoice


class RunState(enum.StrEnum):
    PLANNING = "PLANNING"
    REVERSING = "REVERSING"
    REBILLING = "REBILLING"
    POLLING = "POLLING"
    COMPLETED = "COMPLETED"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    FAILED = "FAILED"
    STALLED = "STALLED"
    CANCELLED = "CANCELLED"
    DRY_RUN = "DRY_RUN"

    @property
    def is_final(self) -> bool:
        """Nothing will move the run again on its own (retry may, except for the closed ones)."""
        return self in FINAL_RUN_STATES

    @property
    def is_closed(self) -> bool:
        """Nothing may move the run again, not even `rebill retry`."""
        return self in (RunState.COMPLETED, RunState.CANCELLED, RunState.DRY_RUN)


ACTIVE_RUN_STATES = frozenset({RunState.PLANNING, RunState.REVERSING, RunState.REBILLING, RunState.POLLING})
FINAL_RUN_STATES = frozenset(set(RunState) - ACTIVE_RUN_STATES)


class ItemState(enum.StrEnum):
    PENDING = "PENDING"
    IN_FLIGHT = "IN_FLIGHT"
    RETRY_WAIT = "RETRY_WAIT"
    REVERSED = "REVERSED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_ITEM_STATES


TERMINAL_ITEM_STATES = frozenset({ItemState.REVERSED, ItemState.SKIPPED, ItemState.FAILED})
OPEN_ITEM_STATES = frozenset(set(ItemState) - TERMINAL_ITEM_STATES)


class ChunkState(enum.StrEnum):
    PLANNED = "PLANNED"  # rows written, no message sent
    QUEUED = "QUEUED"  # a message was sent (dispatched_at)
    DONE = "DONE"  # every item terminal


class RunMode(enum.StrEnum):
    ORCHESTRATED = "orchestrated"  # rebill reverses invoice by invoice, then sends the rebill alone
    NATIVE = "native"  # one server-side task with both actions (iMIS 20.3.208+)


class RebillPhase(enum.StrEnum):
    NOT_SENT = "NOT_SENT"
    SENDING = "SENDING"  # claimed; the request may be on the wire
    SENT = "SENT"
    UNKNOWN = "UNKNOWN"  # the request left but no answer came: settle by reading, never resend blindly


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything that shapes a run, fixed at creation so retries behave like the first pass."""

    mode: RunMode = RunMode.ORCHESTRATED
    party_id: str | None = None
    dry_run: bool = False
    tracking_log: bool = True
    allow_partial: bool = False
    chunk_size: int = 50
    max_attempts: int = 5
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 120.0
    adjustment_reason: str = "Reverse and rebill"
    adjustment_date: date | None = None  # None: the day each reversal is sent
    do_not_cancel_membership: bool = True
    automatically_post_batch: bool = True
    post_unposted_batch: bool = True
    poll_interval_seconds: float = 5.0
    stall_after_seconds: float = 1800.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        data["adjustment_date"] = self.adjustment_date.isoformat() if self.adjustment_date else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunOptions:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["mode"] = RunMode(values.get("mode", RunMode.ORCHESTRATED))
        if values.get("adjustment_date"):
            values["adjustment_date"] = date.fromisoformat(values["adjustment_date"])
        return cls(**values)


def rebill_run_name(cycle_name: str, party_id: str | None) -> str:
    """The seed page's naming: `Rebill: <cycle>` and `Rebill: <cycle> for <party>`."""
    return f"Rebill: {cycle_name}" + (f" for {party_id}" if party_id else "")


def full_jitter(ceiling: float) -> float:
    """Kept apart so tests can pin it."""
    return random.uniform(0, ceiling)


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    jitter: Callable[[float], float] = full_jitter,
) -> float:
    """Exponential backoff with full jitter, never sooner than the server's Retry-After."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = jitter(ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, max(cap, retry_after or 0.0))


class PollVerdict(enum.StrEnum):
    KEEP_POLLING = "KEEP_POLLING"
    COMPLETED = "COMPLETED"
    POST_BATCH = "POST_BATCH"
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    FAILED = "FAILED"
    STALLED = "STALLED"


def judge_poll(
    status: BillingLogStatus,
    *,
    post_unposted_batch: bool,
    batch_already_posted: bool,
    seconds_since_change: float,
    stall_after_seconds: float,
) -> PollVerdict:
    """What one observation of the rebill's BillingLog means for the run."""
    if status is BillingLogStatus.COMPLETED:
        return PollVerdict.COMPLETED
    if status in (BillingLogStatus.FAILED, BillingLogStatus.BATCH_DELETED):
        return PollVerdict.FAILED
    if status is BillingLogStatus.UNPOSTED_BATCH and not batch_already_posted:
        return PollVerdict.POST_BATCH if post_unposted_batch else PollVerdict.NEEDS_ATTENTION
    if seconds_since_change > stall_after_seconds:
        return PollVerdict.STALLED
    return PollVerdict.KEEP_POLLING


class ReasonCode(enum.StrEnum):
    """Why a run stopped where it did; `rebill retry` decides what to do from it."""

    FAILED_ITEMS = "FAILED_ITEMS"
    NOTHING_TO_REVERSE = "NOTHING_TO_REVERSE"
    UNPOSTED_BATCH = "UNPOSTED_BATCH"
    REBILL_OUTCOME_UNKNOWN = "REBILL_OUTCOME_UNKNOWN"
    REBILL_REFUSED = "REBILL_REFUSED"
    BILLING_FAILED = "BILLING_FAILED"
    STALLED = "STALLED"
    PLANNING_FAILED = "PLANNING_FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Run:
    """A snapshot of one run as the ledger holds it."""

    id: str
    provider: str
    original: BillingLog
    state: RunState
    options: RunOptions
    created_at: datetime
    updated_at: datetime
    party_id: str | None = None
    reason_code: ReasonCode | None = None
    reason: str | None = None
    tracking_log_key: str | None = None
    tracking_log_created: bool = False
    planned: bool = False
    plan_offset: int = 0
    plan_count: int = 0
    invoice_count: int = 0
    rebill_phase: RebillPhase = RebillPhase.NOT_SENT
    rebill_sent_at: datetime | None = None
    rebill_task_id: str | None = None
    rebill_log_key: str | None = None
    known_log_keys: tuple[str, ...] = ()
    batch_id: str | None = None
    batch_posted: bool = False
    last_status: BillingLogStatus | None = None
    last_status_change_at: datetime | None = None
    next_poll_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def original_key(self) -> str:
        return self.original.key

    @property
    def progress_log_key(self) -> str | None:
        """The BillingLog that reports the rebill's progress."""
        return self.rebill_log_key or (self.tracking_log_key if self.options.tracking_log else None)


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One invoice of the billing as planning found it: to reverse (PENDING) or SKIPPED with a reason."""

    invoice: Invoice
    state: ItemState
    reason: str | None = None

    @classmethod
    def from_invoice(cls, invoice: Invoice) -> PlannedItem:
        skip = invoice.skip_reason()
        if skip is None:
            return cls(invoice, ItemState.PENDING)
        return cls(invoice, ItemState.SKIPPED, skip.value)


@dataclass(frozen=True, slots=True)
class Item:
    """One invoice of a run, with its reversal state."""

    id: int
    run_id: str
    chunk_id: int | None
    invoice: Invoice
    state: ItemState
    attempts: int = 0
    claims_total: int = 0
    reason: str | None = None
    last_error: str | None = None
    settled_by_read: bool = False
    next_attempt_at: datetime | None = None

    @property
    def claimed_before(self) -> bool:
        """A previous claim may have sent the reversal: read the invoice before sending anything."""
        return self.claims_total > 1


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    state: ItemState
    reason: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    settled_by_read: bool = False


@dataclass(frozen=True, slots=True)
class StatusEvent:
    billing_log_key: str
    status: BillingLogStatus
    observed_at: datetime
    note: str | None = None
