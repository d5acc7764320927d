"""The ports the services need; adapters implement them, tests use fakes."""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestrator.domain.billing import (
    ApiCall,
    Batch,
    BillingLog,
    BillingLogStatus,
    Invoice,
    InvoicePage,
    Rebill,
    Reversal,
    ServerSideReversal,
)
from orchestrator.domain.run import (
    Item,
    ItemOutcome,
    ItemState,
    PlannedItem,
    ReasonCode,
    RebillPhase,
    Run,
    RunOptions,
    RunState,
    StatusEvent,
)

CallObserver = Callable[[ApiCall], None]


class BillingProvider(Protocol):
    """One billing platform tenant. Every method raises `ProviderError` subclasses only.

    Implementations are thread-safe: one instance serves every worker thread of a process.
    """

    name: str

    def get_billing_log(self, key: str) -> BillingLog:
        """Raises ProviderNotFound when the platform does not know the key."""
        ...

    def find_billing_logs(self, *, original_key: str) -> list[BillingLog]:
        """Every billing log whose OriginalBillingLogKey is `original_key`."""
        ...

    def billing_logs_of_cycle(self, cycle_name: str) -> list[BillingLog]:
        """Every billing log of the billing cycle named `cycle_name`, in any status."""
        ...

    def create_tracking_log(self, original: BillingLog, *, key: str, run_name: str) -> BillingLog:
        """Record a 'Reversing invoices' (5) billing log pointing at `original`, under our own `key`."""
        ...

    def iter_invoice_pages(
        self, billing_key: str, *, party_id: str | None = None, start_offset: int = 0
    ) -> Iterator[InvoicePage]:
        """Stream a billing's invoices page by page, from `start_offset`, never all at once."""
        ...

    def get_invoice(self, invoice_id: str) -> Invoice: ...

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        """Wrap the calls one thread makes for one invoice, one after another: the provider may let
        them share one of the tenant's slots instead of queueing for a slot per call."""
        ...

    def can_reverse(self, invoice: Invoice) -> bool:
        """Ask the platform (CanCashInvoiceBeReversed / CanInvoiceBeReversed)."""
        ...

    def reverse(self, reversal: Reversal) -> None:
        """Reverse one invoice. Not idempotent on the platform: settle unknown outcomes by reading."""
        ...

    def submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> str:
        """Start a server-side task (rebill, reversal, or both); returns the platform's task id."""
        ...

    def preview_submit(self, *, rebill: Rebill | None, reversal: ServerSideReversal | None = None) -> dict[str, Any]:
        """The request `submit` would send, for dry runs; calls nothing."""
        ...

    def post_batch(self, batch_id: str) -> None: ...

    def get_batch(self, batch_id: str) -> Batch: ...


class Dispatcher(Protocol):
    """Sends work to the workers. Called only after the ledger change it follows is committed."""

    def plan(self, run_id: str) -> None: ...

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None: ...

    def rebill(self, run_id: str, *, countdown: float = 0) -> None: ...

    def poll(self, run_id: str, *, countdown: float = 0) -> None: ...


Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    provider: str
    original: BillingLog
    options: RunOptions
    state: RunState
    tracking_log_key: str | None
    guard_key: str | None
    created_at: datetime
    schedule_slot: str | None = None


class FiringOutcome(enum.StrEnum):
    STARTED = "STARTED"  # a run was created for the slot
    SKIPPED = "SKIPPED"  # nothing to do, and the reason says why (e.g. already reverse-and-rebilled)
    FAILED = "FAILED"  # could not decide (the tenant refused us); a later firing of the slot may retry


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """What one firing of a schedule slot did. `slot` (`<schedule>@<UTC ISO time>`) is unique."""

    slot: str
    schedule: str
    slot_at: datetime
    outcome: FiringOutcome
    fired_at: datetime
    run_id: str | None = None
    billing_log_key: str | None = None
    reason: str | None = None


class FiringLog(Protocol):
    """Where schedule firings are recorded (the ledger's database)."""

    def record_firing(self, firing: ScheduleFiring) -> ScheduleFiring:
        """Store the firing unless its slot already has one that did not FAIL; returns the stored one."""
        ...

    def get_firing(self, slot: str) -> ScheduleFiring | None: ...

    def run_for_slot(self, slot: str) -> str | None:
        """The id of the run created for `slot`, if any (runs.schedule_slot)."""
        ...

    def recent_firings(self, *, schedule: str | None = None, limit: int = 20) -> list[ScheduleFiring]: ...


@dataclass(frozen=True, slots=True)
class ChunkProgress:
    open_items: int
    wake_at: datetime | None  # earliest RETRY_WAIT item, when nothing is claimable now
    done: bool


@dataclass(frozen=True, slots=True)
class FinishedItem:
    """One worked item, its outcome and the API calls it took, waiting to be written with its batch."""

    item: Item
    outcome: ItemOutcome
    calls: Sequence[ApiCall]


class Ledger(Protocol):
    """The source of truth. Every method is one transaction; conditional ones say so by returning bool."""

    # Runs
    def create_run(self, run: NewRun) -> Run:
        """Raises RunRefused when another run holds the same guard key (same billing/party)."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def resolve_run_id(self, prefix: str) -> str | None:
        """The one run id starting with `prefix`; None when there is none or more than one."""
        ...

    def list_runs(self, limit: int = 50) -> list[Run]: ...

    def active_runs(self) -> list[Run]: ...

    def find_runs_by_billing(self, original_key: str) -> list[Run]: ...

    def transition(
        self,
        run_id: str,
        *,
        from_states: Collection[RunState],
        to: RunState,
        now: datetime,
        reason_code: ReasonCode | None = None,
        reason: str | None = None,
        release_guard: bool = False,
        **fields: Any,
    ) -> bool:
        """Move the run to `to` if it is in one of `from_states`; the loser of a race gets False."""
        ...

    def update_run(self, run_id: str, *, now: datetime, **fields: Any) -> None: ...

    def claim_rebill(self, run_id: str, *, now: datetime, from_phases: Collection[RebillPhase]) -> bool:
        """REBILLING run's rebill phase -> SENDING, once. Only the winner may send the rebill."""
        ...

    def claim_poll(self, run_id: str, *, expected: datetime | None, next_poll_at: datetime) -> bool: ...

    def record_status(
        self, run_id: str, *, billing_log_key: str, status: BillingLogStatus, at: datetime, note: str | None
    ) -> bool:
        """Append a status event unless it repeats the last one; True when the status changed."""
        ...

    def status_events(self, run_id: str) -> list[StatusEvent]: ...

    # Planning
    def record_plan_page(
        self,
        run_id: str,
        items: Sequence[PlannedItem],
        *,
        expected_offset: int,
        next_offset: int,
        chunk_size: int,
        now: datetime,
    ) -> bool:
        """Write one page of the plan and move the cursor, atomically; False if the cursor moved."""
        ...

    def finish_planning(self, run_id: str, *, expected_offset: int, now: datetime, to: RunState) -> bool:
        """Seal the last chunk and leave PLANNING for `to`, unless another planner moved the cursor."""
        ...

    # Chunks and items
    def take_chunks_to_dispatch(self, run_id: str, *, window: int, now: datetime) -> list[int]:
        """Mark up to `window` minus the due queued ones as QUEUED and return them, oldest first."""
        ...

    def stale_chunks(self, run_id: str, *, now: datetime, quiet_since: datetime) -> list[int]:
        """QUEUED chunks with claimable work and no activity since `quiet_since`; marked re-dispatched."""
        ...

    def record_delivery(self, chunk_id: int) -> int:
        """Count one more delivery of the chunk's message that has not finished; returns the count."""
        ...

    def finish_delivery(self, chunk_id: int) -> None:
        """The delivery ran to its end: a worker crash is no longer suspected."""
        ...

    def claim_items(self, chunk_id: int, *, owner: str, now: datetime, lease_until: datetime, limit: int) -> list[Item]:
        """Take up to `limit` claimable items of the chunk (in id order) while its run is REVERSING."""
        ...

    def renew_lease(self, item_id: int, *, owner: str, lease_until: datetime) -> bool:
        """Extend a claim still held by `owner`; False when it expired and someone else may hold it."""
        ...

    def finish_items(self, finished: Sequence[FinishedItem], *, owner: str, now: datetime) -> None:
        """Write the outcomes and calls of items still claimed by `owner`, in one transaction."""
        ...

    def finish_and_claim(
        self,
        finished: Sequence[FinishedItem],
        *,
        owner: str,
        now: datetime,
        chunk_id: int,
        lease_until: datetime,
        limit: int,
    ) -> list[Item]:
        """`finish_items`, then `claim_items` of the chunk for `owner`, in the same transaction."""
        ...

    def chunk_to_help(self, run_id: str, *, now: datetime) -> int | None:
        """A chunk on its first delivery with items still claimable, when none of the run waits to be delivered."""
        ...

    def chunk_progress(self, chunk_id: int, *, now: datetime) -> ChunkProgress:
        """How much of the chunk is open; marks it DONE when nothing is."""
        ...

    def requeue_chunk(self, chunk_id: int, *, at: datetime, now: datetime) -> bool:
        """Schedule the chunk's next wake-up at `at`, unless one is already scheduled after `now`."""
        ...

    def fail_open_items(self, chunk_id: int, *, reason: str, now: datetime) -> int: ...

    def has_open_items(self, run_id: str) -> bool:
        """Whether any item is still PENDING, IN_FLIGHT or RETRY_WAIT (cheap: asked after every chunk)."""
        ...

    def item_counts(self, run_id: str) -> dict[ItemState, int]: ...

    def reset_failed_items(self, run_id: str, *, now: datetime) -> int: ...

    def iter_items(self, run_id: str, *, states: Collection[ItemState] | None = None) -> Iterator[Item]: ...

    def set_item_outcomes(self, run_id: str, outcomes: Sequence[tuple[int, ItemOutcome]], *, now: datetime) -> None: ...

    def record_calls(self, run_id: str, calls: Sequence[ApiCall], *, item_id: int | None = None) -> None: ...

    def call_counts(self, run_id: str) -> dict[tuple[str, str], int]: ...
