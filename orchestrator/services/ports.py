"""The ports the services need; adapters implement them, tests use fakes.

`BillingProvider` is the one port every billing platform implements. The core (this package and
the domain) drives every run the same way and never speaks a platform's vocabulary:

1. **open**: the provider parses its own selector and options (typed models of its package), checks
   the selection can be reversed and rebilled, and names its scope, guard key and label.
2. **plan**: `prepare_run` does what must exist on the platform before any item is touched, then
   `iter_plan` streams the selection page by page from an integer cursor, each invoice with its
   verdict (PENDING, or SKIPPED with the platform's reason).
3. **act**: the core claims items (one at a time, or a whole chunk for a provider whose `unit` is
   CHUNK), then for each unit: `settle` when a claim came before (read the platform: was it applied?),
   `prepare` (reads only: what would be sent, and which items turned ineligible), the fence, then
   `apply` (the one write) or `preview` in a dry run. Claims, leases, fences and the reconciler are
   the core's; only "how to read whether it happened" is the provider's.
4. **follow**: after the items, `follow` decides the run-level steps and watches the platform:
   `Send` a step (claimed once in the ledger, then `send_step`; an unknown outcome is settled by
   `settle_step`), `Watch` a status, or `Finish`.

How the four platforms map onto it (`docs/providers.md` has the long form):

- iMIS: selects a billing log by key (and party); unit item; settle = read the invoice summary,
  prepare = Can*BeReversed, apply = Process*Reversal; follow = step `rebill` (the bill-generation
  task), then its billing log watched 5 -> 1 -> 2, step `post_batch` at 4.
- Aria: selects a bill date (and account) or a file of invoices; unit item; settle = the account's
  invoice history, prepare = the invoice's lines with the corrections, apply = gen_rb_m (credit memo
  and rebill invoice at once); follow = nothing, finish.
- Salesforce: selects an invoice batch run or a billing account; unit item; settle = the invoice's
  status, apply = void; follow = watch the voids to Voided, steps `generate/NNNN` (<= 200
  schedules each), watch the new invoices, steps `recover/...` for schedules in error.
- EnergyCAP: selects an account period (and accounts) or bill ids; unit chunk; settle = read the
  batch by its deterministic code, apply = one bill/reverse for the chunk; follow = step `import` of
  the corrected bills when a file was given, its task watched to the end.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from orchestrator.domain.billing import ApiCall
from orchestrator.domain.run import (
    Item,
    ItemOutcome,
    ItemState,
    Observation,
    PlannedItem,
    ReasonCode,
    Run,
    RunOptions,
    RunState,
    Selection,
    StatusEvent,
    Step,
    StepPhase,
)

CallObserver = Callable[[ApiCall], None]


class ActionUnit(enum.StrEnum):
    ITEM = "item"  # one call per invoice (iMIS, Aria, Salesforce)
    CHUNK = "chunk"  # one call per chunk of invoices (EnergyCAP's bulk reverse)


@dataclass(frozen=True, slots=True)
class Opening:
    """What a provider made of a run request: the selection, its options as stored JSON, and the state
    it keeps from the start (iMIS: the original billing log as read, so retries rebill from it)."""

    selection: Selection
    options: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    item_actions: bool = True


@dataclass(frozen=True, slots=True)
class Preparation:
    """What `prepare_run` made on the platform: state to keep, and the status it now shows."""

    state: Mapping[str, Any] = field(default_factory=dict)
    observation: Observation | None = None


@dataclass(frozen=True, slots=True)
class PlanPage:
    """One page of a selection; `next_cursor` is None on the last page."""

    items: tuple[PlannedItem, ...]
    cursor: int
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One unit of work, decided by reading only: the items the write covers and the request the
    provider will send for them (opaque to the core), and items found ineligible meanwhile."""

    send: tuple[Item, ...]
    request: Any = None
    decided: Mapping[int, ItemOutcome] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Send:
    """Claim step `key` and send it. `request` is kept on the step row for audit (JSON, no secrets)."""

    key: str
    kind: str
    request: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Watch:
    """Nothing to send now: read again after the run's poll interval (or `after` seconds)."""

    after: float | None = None


@dataclass(frozen=True, slots=True)
class Finish:
    state: RunState
    code: ReasonCode | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What `follow` decided, with what it learnt on the way: the platform's status, state to keep,
    and items whose outcome it now knows (a rebill invoice found, a void confirmed)."""

    action: Send | Watch | Finish
    observation: Observation | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    items: Sequence[tuple[int, ItemOutcome]] = ()
    notice: str | None = None


class Settlement(enum.StrEnum):
    APPLIED = "APPLIED"
    NOT_APPLIED = "NOT_APPLIED"  # safe to send again
    UNKNOWN = "UNKNOWN"  # keep reading; after the settle window an operator decides


@dataclass(frozen=True, slots=True)
class StepResult:
    """A step's outcome as the platform answered it (`send_step`) or as reading showed it (`settle_step`)."""

    settlement: Settlement
    ref: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScheduledSelection:
    """What a schedule's choice selects now: a selector to run, or None and the reason why not."""

    selector: Mapping[str, Any] | None
    key: str | None = None  # what was chosen, for the firing record
    reason: str | None = None  # why there is nothing to run
    done_on_platform: str | None = None  # the platform shows it was already reverse-and-rebilled: why


class FollowView(Protocol):
    """What a provider may read of its run's ledger while following it."""

    def items(self, *, states: Collection[ItemState] | None = None) -> Iterator[Item]: ...

    def steps(self) -> Sequence[Step]: ...


class BillingProvider(Protocol):
    """One tenant of one billing platform. Every method raises `ProviderError` subclasses (and
    `RunRefused` from `open`). Implementations are thread-safe: one instance serves every worker
    thread of a process."""

    name: str
    #: The platform as users name it in messages ("iMIS", "Aria").
    title: str
    #: What one write covers: one invoice, or a chunk of them.
    unit: ActionUnit
    #: A dry run asks the platform what each eligible invoice would become (Aria's do_write false).
    previews_items: bool

    # --- open and plan ---

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        """Parse and check a run request; RunRefused says what is wrong with it (file and line too)."""
        ...

    def prepare_run(self, run: Run) -> Preparation:
        """What must exist on the platform before any item is touched (iMIS: the tracking billing log).
        Called each time planning starts or resumes: it must be safe to repeat."""
        ...

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        """Stream the selection from `cursor` (0: the start), never all at once."""
        ...

    # --- act ---

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        """Wrap the calls one thread makes for one unit, one after another: they may share one of the
        tenant's slots instead of queueing for a slot per call."""
        ...

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        """Read whether the action on `items` (claimed before: it may have been sent) took effect.
        Returns the outcome of each item that needs nothing more; the others are still to do."""
        ...

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        """Decide, by reading only, what to send for `items`."""
        ...

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        """Send the one write of `prepared`; never sent twice for the same items without `settle`."""
        ...

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        """A dry run's `apply`: ask what it would do, write nothing (only when `previews_items`)."""
        ...

    # --- follow ---

    def follow(self, run: Run, view: FollowView) -> Decision:
        """The next thing to do for the run once its items are settled (states REBILLING, POLLING)."""
        ...

    def send_step(self, run: Run, step: Step) -> StepResult:
        """Send a claimed step. `may_have_applied` errors are settled with `settle_step`."""
        ...

    def settle_step(self, run: Run, step: Step) -> StepResult:
        """Read whether a step whose answer was lost took effect."""
        ...

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        """For a dry run: the run-level requests the follow-up would send, as JSON; calls nothing."""
        ...

    # --- operators ---

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        """Resolve a schedule's choice (iMIS: the latest completed billing of a cycle) into a selector,
        or say why there is nothing to run (none found, already done on the platform)."""
        ...

    def summarize(self, run: Run) -> Mapping[str, Any]:
        """The platform's own facts about a run for status pages (keys and values as JSON)."""
        ...

    def check(self) -> str:
        """Authenticate and read one page; a line saying what was read (never a credential)."""
        ...


class Providers(Protocol):
    """The configured providers, by name."""

    def get(self, name: str) -> BillingProvider:
        """The provider, or ConfigurationError naming what to set for it."""
        ...

    def names(self) -> list[str]: ...


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
    opening: Opening
    options: RunOptions
    state: RunState
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
    selected: str | None = None  # the key of what the firing selected (iMIS: a billing log key)
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
class WorkerStatus:
    id: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    dead_at: datetime | None


@dataclass(frozen=True, slots=True)
class Released:
    """What a dead worker held, now free: claims expired, chunks and runs to dispatch again."""

    claims: int
    chunks: tuple[tuple[str, int], ...]  # (run id, chunk id)
    runs: tuple[tuple[str, RunState], ...]  # (run id, the state whose run-level work it held)
    sessions: int = 0  # its database sessions ended (a frozen one may hold row locks, and no timeout ends it)


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
        """Check the new run against the runs of its scope and insert it, as one atomic decision per
        scope; RunRefused says which run is in the way."""
        ...

    def get_run(self, run_id: str) -> Run | None: ...

    def resolve_run_id(self, prefix: str) -> str | None:
        """The one run id starting with `prefix`; None when there is none or more than one."""
        ...

    def list_runs(self, limit: int = 50) -> list[Run]: ...

    def active_runs(self) -> list[Run]: ...

    def find_runs_by_scope(self, scope: str) -> list[Run]: ...

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

    def merge_provider_state(self, run_id: str, state: Mapping[str, Any], *, now: datetime) -> None:
        """Add `state`'s keys to the provider's kept state (a key set to None is removed)."""
        ...

    def claim_poll(
        self, run_id: str, *, expected: datetime | None, next_poll_at: datetime, holder: str | None = None
    ) -> bool:
        """Move the run's next follow-up time from `expected` to `next_poll_at`, noting which worker holds
        the tick (None: nobody); the loser of a race gets False."""
        ...

    def record_status(self, run_id: str, observation: Observation, *, at: datetime) -> bool:
        """Append a status event unless it repeats the last one; True when the status changed."""
        ...

    def status_events(self, run_id: str) -> list[StatusEvent]: ...

    # Steps
    def steps(self, run_id: str) -> list[Step]: ...

    def claim_step(self, run_id: str, *, key: str, kind: str, request: Mapping[str, Any], now: datetime) -> bool:
        """Take step `key` for sending, once: True only for the one caller that may send it now (no
        row yet, or a RELEASED one), and only while the run is REBILLING or POLLING."""
        ...

    def finish_step(
        self,
        run_id: str,
        key: str,
        *,
        phase: StepPhase,
        now: datetime,
        ref: str | None = None,
        error: str | None = None,
    ) -> None: ...

    def release_steps(self, run_id: str, *, phases: Collection[StepPhase], now: datetime) -> int:
        """Let an operator's retry send these steps again (after reading showed they did not apply)."""
        ...

    # Planning
    def record_plan_page(
        self,
        run_id: str,
        items: Sequence[PlannedItem],
        *,
        expected_offset: int,
        next_offset: int,
        chunk_size: int,
        ramp: int = 0,
        now: datetime,
    ) -> bool:
        """Write one page of the plan and move the cursor, atomically; False if the cursor moved.
        Pending items go into chunks of `chunk_size` (none when 0), the first ones smaller (`chunk_capacity`)."""
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

    def chunk_seq(self, chunk_id: int) -> int:
        """The chunk's number within its run (0, 1, ...): stable, so a provider may name things after it."""
        ...

    def record_delivery(self, chunk_id: int, *, worker_id: str | None = None) -> int:
        """Count one more delivery of the chunk's message that has not finished (by `worker_id`); returns
        the count."""
        ...

    def finish_delivery(self, chunk_id: int) -> None:
        """The delivery ran to its end: a worker crash is no longer suspected."""
        ...

    def claim_items(self, chunk_id: int, *, owner: str, now: datetime, lease_until: datetime, limit: int) -> list[Item]:
        """Take up to `limit` claimable items of the chunk (in id order) while its run is REVERSING."""
        ...

    def renew_lease(
        self,
        item_ids: Sequence[int],
        *,
        owner: str,
        lease_until: datetime,
        worker_id: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Extend claims still held by `owner`; False when any was taken over, or when `worker_id` was
        declared dead (the renewal counts as its heartbeat otherwise: it cannot be declared dead while
        it renews)."""
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

    def hasten_chunk(self, chunk_id: int, *, at: datetime, now: datetime) -> bool:
        """Schedule a wake-up at `at`, unless a delivery of the chunk is being worked or one is due by then."""
        ...

    def fail_open_items(self, chunk_id: int, *, reason: str, now: datetime) -> int: ...

    def has_open_items(self, run_id: str) -> bool:
        """Whether any item is still PENDING, IN_FLIGHT or RETRY_WAIT (cheap: asked after every chunk)."""
        ...

    def item_counts(self, run_id: str) -> dict[ItemState, int]: ...

    def reset_failed_items(self, run_id: str, *, now: datetime) -> int: ...

    def iter_items(self, run_id: str, *, states: Collection[ItemState] | None = None) -> Iterator[Item]: ...

    def set_item_outcomes(self, run_id: str, outcomes: Sequence[tuple[int, ItemOutcome]], *, now: datetime) -> None:
        """Write outcomes learnt after the items were worked (`Decision.items`). As in `finish_items`,
        what the platform named (refs, new amount) and that an item was settled by reading are kept
        when a later outcome does not say them again."""
        ...

    def record_calls(self, run_id: str, calls: Sequence[ApiCall], *, item_id: int | None = None) -> None: ...

    def call_counts(self, run_id: str) -> dict[tuple[str, str], int]: ...

    # Workers
    def beat(self, worker_id: str, *, host: str, pid: int, now: datetime) -> bool:
        """Record a heartbeat; False when the worker had been declared dead meanwhile."""
        ...

    def declare_dead(self, *, silent_since: datetime, now: datetime) -> list[str]:
        """Workers silent since before `silent_since`, newly declared dead by this caller (one winner each)."""
        ...

    def release_worker(self, worker_id: str, *, now: datetime) -> Released:
        """Expire a dead worker's claims in active runs; its unfinished deliveries and run-level work."""
        ...

    def workers(self) -> list[WorkerStatus]: ...
