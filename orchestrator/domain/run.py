"""A reverse-and-rebill run: its states, its items, its steps, its options, and the rules that move them.

Run life (every platform):

    PLANNING ──> REVERSING ──> REBILLING ──> POLLING ──> COMPLETED
        │            │             │            ├──> NEEDS_ATTENTION (the platform waits on an operator)
        │            │             │            ├──> FAILED          (the platform says the rebill failed)
        │            │             │            └──> STALLED         (no status change past the deadline)
        │            └──> NEEDS_ATTENTION (items FAILED: nothing rebilled; `rebill retry` resumes)
        └──> DRY_RUN (the plan, and what the platform would do)    any non-final state ──> CANCELLED

REVERSING acts on every eligible item (a reversal, a void, a reversal with its rebill: whatever the
platform's action is). REBILLING and POLLING follow the run up on the platform: steps sent once each
(a rebill task, generate calls, an import), then the platform's status watched to the end. A
platform with nothing to do after its items finishes as soon as they are all settled.

Item life: PENDING ──claim──> IN_FLIGHT ──> REVERSED | SKIPPED | FAILED | PREVIEWED (dry run)
                                   └──> RETRY_WAIT (transient) ──claim──> IN_FLIGHT ...
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from orchestrator.domain.billing import Invoice


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
FOLLOWING_RUN_STATES = frozenset({RunState.REBILLING, RunState.POLLING})


class ItemState(enum.StrEnum):
    PENDING = "PENDING"
    IN_FLIGHT = "IN_FLIGHT"
    RETRY_WAIT = "RETRY_WAIT"
    REVERSED = "REVERSED"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    PREVIEWED = "PREVIEWED"  # a dry run asked the platform what it would do; nothing was written

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_ITEM_STATES


TERMINAL_ITEM_STATES = frozenset({ItemState.REVERSED, ItemState.SKIPPED, ItemState.FAILED, ItemState.PREVIEWED})
OPEN_ITEM_STATES = frozenset(set(ItemState) - TERMINAL_ITEM_STATES)


class ChunkState(enum.StrEnum):
    PLANNED = "PLANNED"  # rows written, no message sent
    QUEUED = "QUEUED"  # a message was sent (dispatched_at)
    DONE = "DONE"  # every item terminal


class StepPhase(enum.StrEnum):
    """Where one run-level call (a rebill task, a generate call, an import) stands. A step row exists
    only once claimed: nobody may send it again while it is SENDING, SENT or UNKNOWN."""

    SENDING = "SENDING"  # claimed; the request may be on the wire
    SENT = "SENT"
    UNKNOWN = "UNKNOWN"  # the request left but no answer came: settle by reading, never resend blindly
    RELEASED = "RELEASED"  # known not applied (or given back by an operator): may be claimed again
    FAILED = "FAILED"  # refused by the platform


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What shapes a run on every platform, fixed at creation so retries behave like the first pass.
    A platform's own options live in its provider package and are stored beside these."""

    dry_run: bool = False
    allow_partial: bool = False
    chunk_size: int = 50
    max_attempts: int = 5
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 120.0
    poll_interval_seconds: float = 5.0
    stall_after_seconds: float = 1800.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


#: The smaller sizes a run's first chunks take, as fractions of its chunk size, `ramp` chunks each.
_RAMP_DIVISORS = (8, 4, 2)


def chunk_capacity(seq: int, chunk_size: int, *, ramp: int) -> int:
    """How many items chunk `seq` (0-based) of a run takes before it is sealed.

    A chunk's items are worked one after another, so a run acts on as many invoices at once as it has
    chunks dispatched. Full chunks from the start would keep acting under the tenant's cap until
    planning had written `ramp` of them; instead the first `ramp` chunks take an eighth of the chunk
    size, the next `ramp` a quarter, the next `ramp` a half: the cap is reached from planning's
    first page, and the chunks keep coming while planning catches up. `ramp` 0 keeps every chunk
    full (a provider whose write covers a whole chunk promises its size).
    """
    stage = seq // ramp if ramp > 0 else len(_RAMP_DIVISORS)
    if stage >= len(_RAMP_DIVISORS):
        return chunk_size
    return max(1, -(-chunk_size // _RAMP_DIVISORS[stage]))


@dataclass(frozen=True, slots=True)
class Selection:
    """What a run reverses, as its provider resolved it when the run was opened.

    Runs of one `scope` (one billing of one platform) are checked against each other in one atomic
    step before a run is created; `guard_key` is held while the run holds its part of the scope.
    `whole` says the run covers the whole scope (a single contact's run does not).
    """

    scope: str
    guard_key: str
    label: str
    selector: Mapping[str, Any]
    whole: bool = True


def overlap_refusal(new: Selection, runs: Sequence[Run]) -> str | None:
    """Why a run of `new` must not be created beside `runs` of the same scope, or None.

    A whole-scope run and a partial run of the same scope would bill the partial run's members
    twice; so would two runs holding the same guard key. Dry runs and cancelled runs hold nothing.
    """
    for other in runs:
        if other.options.dry_run or other.state is RunState.CANCELLED:
            continue
        if new.whole and not other.selection.whole:
            return (
                f"{new.label} already has a partial run {other.id} ({other.selection.label}, {other.state.value}); "
                "a run of the whole would bill those members twice"
            )
        if not new.whole and other.selection.whole:
            return f"{new.label} is already taken by run {other.id} ({other.state.value}) for the whole of it"
        if other.selection.guard_key == new.guard_key and other.guard_held:
            return (
                f"{new.label} is already taken by run {other.id} ({other.state.value}); "
                "one billing is reversed and rebilled once"
            )
    return None


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


class ReasonCode(enum.StrEnum):
    """Why a run stopped where it did; `rebill retry` decides what to do from it."""

    FAILED_ITEMS = "FAILED_ITEMS"
    NOTHING_TO_REVERSE = "NOTHING_TO_REVERSE"
    AWAITING_OPERATOR = "AWAITING_OPERATOR"  # the platform waits on something only an operator can do
    REBILL_OUTCOME_UNKNOWN = "REBILL_OUTCOME_UNKNOWN"
    REBILL_REFUSED = "REBILL_REFUSED"
    BILLING_FAILED = "BILLING_FAILED"
    STALLED = "STALLED"
    PLANNING_FAILED = "PLANNING_FAILED"
    CREDENTIALS_REFUSED = "CREDENTIALS_REFUSED"  # the tenant refused our credentials mid-run: nothing more is sent
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of the platform's progress: its own status code and label for `subject`
    (iMIS: a billing log walking 5 -> 1 -> 2), shown to users exactly as the platform says it."""

    subject: str
    code: str
    label: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    subject: str
    code: str
    label: str
    observed_at: datetime
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """A snapshot of one run as the ledger holds it."""

    id: str
    provider: str
    selection: Selection
    state: RunState
    options: RunOptions
    created_at: datetime
    updated_at: datetime
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    provider_state: Mapping[str, Any] = field(default_factory=dict)  # what the provider keeps between steps
    item_actions: bool = True  # False: the platform acts on the whole selection itself (no per-item work)
    guard_held: bool = True
    reason_code: ReasonCode | None = None
    reason: str | None = None
    notice: str | None = None  # why an active run waits (a paused tenant, say); cleared once it moves on
    planned: bool = False
    plan_offset: int = 0
    plan_count: int = 0
    invoice_count: int = 0
    last_status: Observation | None = None
    last_status_change_at: datetime | None = None
    next_poll_at: datetime | None = None
    finished_at: datetime | None = None
    schedule_slot: str | None = None


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One invoice of the selection as planning found it: to act on (PENDING) or SKIPPED with a reason."""

    invoice: Invoice
    state: ItemState
    reason: str | None = None
    group: str | None = None  # items of one group share a chunk, worked one after another (an account)

    @classmethod
    def eligible(cls, invoice: Invoice, *, group: str | None = None) -> PlannedItem:
        return cls(invoice, ItemState.PENDING, group=group)

    @classmethod
    def skipped(cls, invoice: Invoice, reason: str) -> PlannedItem:
        return cls(invoice, ItemState.SKIPPED, reason)


@dataclass(frozen=True, slots=True)
class Item:
    """One invoice of a run, with its state and what the platform answered for it."""

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
    result_ref: str | None = None  # the platform's reference for the action (credit memo, reversal bill, void)
    rebill_ref: str | None = None  # the invoice that bills the member again, where the platform names it
    new_amount: Decimal | None = None  # what the rebill bills, where the platform says
    chunk_seq: int | None = None  # the chunk's number in its run, for a provider acting on whole chunks

    @property
    def claimed_before(self) -> bool:
        """A previous claim may have sent the action: read the platform before sending anything."""
        return self.claims_total > 1


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    state: ItemState
    reason: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    settled_by_read: bool = False
    result_ref: str | None = None
    rebill_ref: str | None = None
    new_amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One run-level call as the ledger holds it."""

    run_id: str
    key: str
    kind: str
    phase: StepPhase
    claimed_at: datetime
    attempts: int = 1
    ref: str | None = None
    error: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
