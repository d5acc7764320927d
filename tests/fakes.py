"""Fakes of the ports for service tests: state in memory, behaviour scripted, assertions on state.

`FakeProvider` is a small billing platform of its own, not iMIS in disguise, so the core is shown to
need nothing of any real platform:

- billings (closed ones can be reversed and rebilled) with invoices: amount, balance, payments, party;
- a run selects `{"billing": KEY, "party_id": optional}` (scope `fake:KEY`; a party makes it partial);
- `prepare_run` opens a batch for the run (safe to repeat); planning reads pages of `page_size`;
- per invoice: settle = read the invoice, prepare = a can-reverse check, apply = reverse it (the
  platform refuses a second reversal of a reversed invoice);
- after the invoices: step `rebill` creates a job, whose status walks a script the test gives
  (`queued`, `running`, `done`, `failed`, `held`, `waiting`); a held job gets step `release` when
  the run's option `release_held` allows it, else the run waits for an operator.

Faults are scripted per (operation, key): `fail` raises errors in turn, `applied_then_lost` lets the
write take effect and then raises (the reply was lost). `FakeBulkProvider` acts on a whole chunk per
call, as EnergyCAP's bulk reverse does.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrator.domain.billing import ApiCall, CallOutcome, Invoice
from orchestrator.domain.errors import (
    ConfigurationError,
    PermanentProviderError,
    ProviderError,
    ProviderRefused,
    RunRefused,
)
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
    Step,
    StepPhase,
)
from orchestrator.services import follow_up, planning, reversal
from orchestrator.services.context import Context
from orchestrator.services.ports import (
    ActionUnit,
    BillingProvider,
    CallObserver,
    Decision,
    Finish,
    FollowView,
    Opening,
    PlanPage,
    Preparation,
    Prepared,
    ScheduledSelection,
    Send,
    Settlement,
    StepResult,
    Watch,
)

BILLING = "2026-11-monthly"
CYCLE = "Monthly dues"
HAS_PAYMENT = "has a payment applied"
NOTHING_OWED = "nothing is owed"
PAID_SINCE_PLANNING = "paid since planning"
#: Every operation of the fake that changes something on the platform.
WRITES = frozenset({"batch.open", "invoice.reverse", "chunk.reverse", "job.create", "job.release"})
REBILL = "rebill"
RELEASE = "release"
STATUS_LABELS = {
    "queued": "Queued",
    "running": "Running",
    "waiting": "Waiting for capacity",
    "held": "Held for review",
    "done": "Done",
    "failed": "Failed",
}
_SELECTOR_KEYS = frozenset({"billing", "party_id"})
_OPTION_KEYS = frozenset({"release_held", "server_side"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeBilling:
    key: str
    cycle: str = CYCLE
    name: str | None = None
    closed: bool = True
    billed_on: date = date(2026, 11, 1)
    rebill_of: str | None = None  # this billing rebills another one (a reverse-and-rebill done on the platform)


@dataclass
class FakeInvoice:
    invoice_id: str
    billing: str
    party_id: str
    amount: Decimal
    balance: Decimal
    payments: Decimal = Decimal("0")
    reversals: int = 0

    def skip_reason(self) -> str | None:
        if self.payments:
            return HAS_PAYMENT
        if self.balance <= 0:
            return NOTHING_OWED
        return None


@dataclass
class FakeJob:
    """The rebill of one run on the platform; each read shows the next status of its walk."""

    job_id: str
    reference: str  # the run it was sent for: how reading finds it again
    request: dict[str, Any]
    walk: list[str]
    status: str = "queued"
    released: bool = False
    reversed_itself: bool = False


@dataclass
class FakeProvider:
    """A billing platform in memory, behind the `BillingProvider` port."""

    name: str = "fake"
    title: str = "Fake"
    unit: ActionUnit = ActionUnit.ITEM
    previews_items: bool = False
    page_size: int = 7
    price_change: Decimal = Decimal("5.00")  # what a rebill adds to each invoice (a dry run's preview shows it)
    billings: dict[str, FakeBilling] = field(default_factory=dict)
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    batches_opened: Counter[str] = field(default_factory=Counter)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    job_script: list[str] = field(default_factory=lambda: ["running", "running", "done"])
    calls: Counter[str] = field(default_factory=Counter)
    faults: dict[tuple[str, str], list[BaseException]] = field(default_factory=lambda: defaultdict(list))
    lost_replies: dict[tuple[str, str], BaseException] = field(default_factory=dict)
    meanwhile: dict[tuple[str, str], Callable[[], object]] = field(default_factory=dict)
    observer: CallObserver | None = None
    now: Callable[[], datetime] = field(default=_utc_now)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- scripting ----------------------------------------------------------------------------------

    def seed(self, *, open_count: int = 20, paid: int = 3, part_paid: int = 2, billing: str = BILLING) -> None:
        """A closed billing with open invoices, fully paid ones and part-paid ones, numbered from 1001."""
        self.billings.setdefault(billing, FakeBilling(billing))
        number = 1000 + len(self.invoices)
        for kind, count in (("open", open_count), ("paid", paid), ("part", part_paid)):
            for _ in range(count):
                number += 1
                amount = Decimal("95.00")
                payment = {"open": Decimal("0"), "paid": amount, "part": Decimal("20.00")}[kind]
                self.invoices[str(number)] = FakeInvoice(
                    str(number), billing, f"P{number}", amount, amount - payment, payment
                )

    def fail(self, operation: str, key: str, *errors: BaseException) -> None:
        """The next calls of `operation` on `key` raise `errors`, one each, before doing anything."""
        self.faults[(operation, key)].extend(errors)

    def applied_then_lost(self, operation: str, key: str, error: BaseException) -> None:
        """The next `operation` on `key` takes effect, then raises `error` (the reply was lost)."""
        self.lost_replies[(operation, key)] = error

    def while_calling(self, operation: str, key: str, happening: Callable[[], object]) -> None:
        """The next `operation` on `key` waits for `happening` (another worker's work, say) before it starts."""
        self.meanwhile[(operation, key)] = happening

    def script(self, *statuses: str, run_id: str | None = None) -> None:
        """The statuses a job shows on its following reads (the last one stays): of the next job
        created, or of the job already sent for `run_id`."""
        if run_id is None:
            self.job_script = list(statuses)
        else:
            self.jobs[run_id].walk = list(statuses)

    def pay(self, invoice_id: str, amount: Decimal) -> None:
        invoice = self.invoices[invoice_id]
        invoice.payments += amount
        invoice.balance -= amount

    def reversals(self) -> dict[str, int]:
        """How many times each invoice was reversed (only those reversed at all)."""
        return {invoice.invoice_id: invoice.reversals for invoice in self.invoices.values() if invoice.reversals}

    def writes(self) -> set[str]:
        """The write operations called at all."""
        return {operation for operation in self.calls if operation in WRITES}

    # --- the platform's API (each call counted, faults raised, reported to the observer) ------------

    @contextlib.contextmanager
    def _call(self, operation: str, key: str) -> Iterator[None]:
        with self.lock:
            happening = self.meanwhile.pop((operation, key), None)
        if happening is not None:
            happening()
        with self.lock:
            self.calls[operation] += 1
            queued = self.faults.get((operation, key))
            fault = queued.pop(0) if queued else None
        if fault is not None:
            self._observe(operation, fault)
            raise fault
        try:
            yield
        except BaseException as error:
            self._observe(operation, error)
            raise
        with self.lock:
            lost = self.lost_replies.pop((operation, key), None)
        self._observe(operation, lost)
        if lost is not None:
            raise lost

    def _observe(self, operation: str, error: BaseException | None) -> None:
        if self.observer is None:
            return
        outcome = CallOutcome.OK
        if isinstance(error, ProviderError):
            outcome = CallOutcome.PERMANENT if isinstance(error, PermanentProviderError) else CallOutcome.TRANSIENT
        self.observer(ApiCall(operation, outcome, 0.0, self.now(), error=str(error) if error else None))

    def _read_invoice(self, invoice_id: str) -> FakeInvoice:
        with self._call("invoice.get", invoice_id):
            return self.invoices[invoice_id]

    def _reverse(self, invoice_id: str) -> None:
        with self._call("invoice.reverse", invoice_id):
            invoice = self.invoices[invoice_id]
            if invoice.reversals:
                raise ProviderRefused(
                    f"invoice {invoice_id} is already reversed", operation="invoice.reverse", status_code=409
                )
            invoice.reversals += 1
            invoice.balance = Decimal("0")

    def _read_job(self, reference: str) -> FakeJob | None:
        with self._call("job.get", reference):
            job = self.jobs.get(reference)
            if job is None:
                return None
            if job.walk:
                job.status = job.walk.pop(0)
            if job.status == "done" and job.request.get("server_side") and not job.reversed_itself:
                job.reversed_itself = True
                for invoice in self._selected(job.request["billing"], job.request.get("party_id")):
                    if invoice.skip_reason() is None:
                        invoice.reversals += 1
                        invoice.balance = Decimal("0")
            return job

    def _selected(self, billing: str, party_id: str | None) -> list[FakeInvoice]:
        return [
            invoice
            for invoice in self.invoices.values()
            if invoice.billing == billing and (party_id is None or invoice.party_id == party_id)
        ]

    # --- open and plan ------------------------------------------------------------------------------

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        unknown = set(selector) - _SELECTOR_KEYS
        key = selector.get("billing")
        if unknown or not isinstance(key, str) or not key:
            raise RunRefused(f"bad selector: give a billing (and a party_id); not {sorted(unknown) or 'this'}")
        if set(options) - _OPTION_KEYS:
            raise RunRefused(f"bad {self.title} option: {', '.join(sorted(set(options) - _OPTION_KEYS))}")
        with self._call("billing.get", key):
            billing = self.billings.get(key)
        if billing is None:
            raise RunRefused(f"no billing {key!r} on the {self.title} platform")
        if not billing.closed:
            raise RunRefused(f"billing {key} is still open: only a closed billing can be reversed and rebilled")
        party = selector.get("party_id")
        scope = f"{self.name}:{key}"
        return Opening(
            selection=Selection(
                scope=scope,
                guard_key=scope + (f":party:{party}" if party else ""),
                label=f"billing {key} ({billing.cycle})" + (f" for party {party}" if party else ""),
                selector={"billing": key, **({"party_id": party} if party else {})},
                whole=party is None,
            ),
            options=dict(options),
            state={"cycle": billing.cycle},
            item_actions=not options.get("server_side", False),
        )

    def prepare_run(self, run: Run) -> Preparation:
        batch = f"batch-{run.id[:8]}"
        with self._call("batch.open", run.id):
            self.batches_opened[run.id] += 1
        return Preparation(state={"batch": batch}, observation=Observation(batch, "open", "Open"))

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        chosen = self._selected(run.selection.selector["billing"], run.selection.selector.get("party_id"))
        offset = cursor
        while offset < len(chosen):
            with self._call("invoice.list", str(offset)):
                page = chosen[offset : offset + self.page_size]
            following = offset + len(page)
            yield PlanPage(
                items=tuple(_planned(invoice) for invoice in page),
                cursor=offset,
                next_cursor=following if following < len(chosen) else None,
            )
            offset = following

    # --- act ----------------------------------------------------------------------------------------

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        settled: dict[int, ItemOutcome] = {}
        for item in items:
            invoice = self._read_invoice(item.invoice.invoice_id)
            if invoice.reversals:
                settled[item.id] = ItemOutcome(
                    ItemState.REVERSED, reason="confirmed reversed by reading the invoice", settled_by_read=True
                )
            elif invoice.payments:
                settled[item.id] = ItemOutcome(ItemState.SKIPPED, reason=PAID_SINCE_PLANNING, settled_by_read=True)
        return settled

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        send: list[Item] = []
        decided: dict[int, ItemOutcome] = {}
        for item in items:
            with self._call("invoice.check", item.invoice.invoice_id):
                invoice = self.invoices[item.invoice.invoice_id]
            if invoice.skip_reason() is None:
                send.append(item)
            elif invoice.payments:
                decided[item.id] = ItemOutcome(ItemState.SKIPPED, reason=PAID_SINCE_PLANNING)
            else:
                decided[item.id] = ItemOutcome(ItemState.SKIPPED, reason="reversed outside the run")
        return Prepared(send=tuple(send), request=tuple(item.invoice.invoice_id for item in send), decided=decided)

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        for item in prepared.send:
            self._reverse(item.invoice.invoice_id)
            outcomes[item.id] = ItemOutcome(ItemState.REVERSED, result_ref=f"CM-{item.invoice.invoice_id}")
        return outcomes

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        for item in prepared.send:
            with self._call("invoice.preview", item.invoice.invoice_id):
                new_amount = self.invoices[item.invoice.invoice_id].amount + self.price_change
            outcomes[item.id] = ItemOutcome(ItemState.PREVIEWED, new_amount=new_amount)
        return outcomes

    # --- follow -------------------------------------------------------------------------------------

    def follow(self, run: Run, view: FollowView) -> Decision:
        steps = {step.key: step for step in view.steps()}
        rebill = steps.get(REBILL)
        if rebill is None or rebill.phase is StepPhase.RELEASED:
            return Decision(Send(REBILL, REBILL, self._rebill_request(run)))
        job = self._read_job(run.id)
        if job is None:
            return Decision(Watch())
        observation = Observation(job.job_id, job.status, STATUS_LABELS[job.status])
        state: dict[str, Any] = {"job": job.job_id, "held": True if job.status == "held" else None}
        if job.status == "done":
            return Decision(Finish(RunState.COMPLETED), observation, state, self._rebilled(run, view))
        if job.status == "failed":
            reason = f"job {job.job_id} failed on the {self.title} platform"
            return Decision(Finish(RunState.FAILED, ReasonCode.BILLING_FAILED, reason), observation, state)
        if job.status == "waiting":
            notice = f"the {self.title} platform queues job {job.job_id} behind other work"
            return Decision(Watch(), observation, state, notice=notice)
        release = steps.get(RELEASE)
        if job.status == "held" and (release is None or release.phase is StepPhase.RELEASED):
            if not run.provider_options.get("release_held"):
                reason = (
                    f"job {job.job_id} is held for review on the {self.title} platform: release it there, "
                    f"then `rebill retry {run.id}`"
                )
                return Decision(
                    Finish(RunState.NEEDS_ATTENTION, ReasonCode.AWAITING_OPERATOR, reason), observation, state
                )
            return Decision(Send(RELEASE, RELEASE, {"job": job.job_id}), observation, state)
        return Decision(Watch(), observation, state)

    def _rebill_request(self, run: Run) -> dict[str, Any]:
        selector = run.selection.selector
        return {
            "billing": selector["billing"],
            "party_id": selector.get("party_id"),
            "reference": run.id,
            "server_side": bool(run.provider_options.get("server_side")),
        }

    def _rebilled(self, run: Run, view: FollowView) -> list[tuple[int, ItemOutcome]]:
        """What the finished job says about each invoice: its rebill invoice, or (when the job
        reversed the invoices itself) whether it reversed it."""
        outcomes: list[tuple[int, ItemOutcome]] = []
        if run.item_actions:
            for item in view.items(states={ItemState.REVERSED}):
                rebill = ItemOutcome(
                    ItemState.REVERSED,
                    reason=item.reason,
                    rebill_ref=f"R-{item.invoice.invoice_id}",
                    new_amount=item.invoice.amount + self.price_change,
                )
                outcomes.append((item.id, rebill))
            return outcomes
        for item in view.items(states={ItemState.PENDING}):
            if self._read_invoice(item.invoice.invoice_id).reversals:
                outcomes.append((item.id, ItemOutcome(ItemState.REVERSED, settled_by_read=True)))
            else:
                outcomes.append((item.id, ItemOutcome(ItemState.SKIPPED, reason="left open by the platform's job")))
        return outcomes

    def send_step(self, run: Run, step: Step) -> StepResult:
        if step.kind == RELEASE:
            with self._call("job.release", str(step.request["job"])):
                self.jobs[run.id].released = True
            return StepResult(Settlement.APPLIED, ref=str(step.request["job"]))
        with self._call("job.create", str(step.request["billing"])):
            job = FakeJob(f"job-{len(self.jobs) + 1}", run.id, dict(step.request), list(self.job_script))
            self.jobs[run.id] = job
        return StepResult(Settlement.APPLIED, ref=job.job_id, state={"job": job.job_id})

    def settle_step(self, run: Run, step: Step) -> StepResult:
        if step.kind == RELEASE:
            released = self.jobs[run.id].released
            return StepResult(Settlement.APPLIED if released else Settlement.NOT_APPLIED)
        job = self._read_job(run.id)
        if job is None or job.status == "queued":
            return StepResult(Settlement.UNKNOWN)  # no sign of it yet: it may still show up
        return StepResult(Settlement.APPLIED, ref=job.job_id, state={"job": job.job_id})

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        return [{"step": REBILL, **self._rebill_request(run)}]

    # --- operators ----------------------------------------------------------------------------------

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        cycle, name = str(choice["cycle"]), choice.get("run_name")
        with self._call("billing.list", cycle):
            billings = list(self.billings.values())
        candidates = [
            billing
            for billing in billings
            if billing.cycle == cycle and billing.closed and billing.rebill_of is None
            if name is None or billing.name == name
        ]
        if not candidates:
            return ScheduledSelection(None, reason=f"no billing found for cycle {cycle!r}")
        latest = max(candidates, key=lambda billing: billing.billed_on)
        done = next(
            (
                f"billing {latest.key} was already reverse-and-rebilled on the platform: billing {other.key} rebills it"
                for other in billings
                if other.rebill_of == latest.key and other.closed
            ),
            None,
        )
        return ScheduledSelection({"billing": latest.key}, key=latest.key, done_on_platform=done)

    def summarize(self, run: Run) -> Mapping[str, Any]:
        return {"billing": run.selection.selector["billing"], "job": run.provider_state.get("job")}

    def check(self) -> str:
        return f"{self.title}: {len(self.billings)} billing(s)"


@dataclass
class FakeBulkProvider(FakeProvider):
    """The fake platform acting on a whole chunk per call (one reversal batch, named after the chunk)."""

    name: str = "fake-bulk"
    title: str = "Fake bulk"
    unit: ActionUnit = ActionUnit.CHUNK
    reversal_batches: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def batch_code(run_id: str, chunk_seq: int | None) -> str:
        """Named after the chunk's number in the run, so a batch whose reply was lost is found by reading."""
        assert chunk_seq is not None, "the core numbers the items of a whole-chunk unit"
        return f"rr-{run_id}-{chunk_seq}"

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        code = self.batch_code(run.id, items[0].chunk_seq)
        with self._call("chunk.get", code):
            reversed_ids = set(self.reversal_batches.get(code, ()))
        return {
            item.id: ItemOutcome(
                ItemState.REVERSED, reason=f"found in reversal batch {code}", settled_by_read=True, result_ref=code
            )
            for item in items
            if item.invoice.invoice_id in reversed_ids
        }

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        code = self.batch_code(run.id, prepared.send[0].chunk_seq)
        ids = [item.invoice.invoice_id for item in prepared.send]
        with self._call("chunk.reverse", code):
            if any(self.invoices[invoice_id].reversals for invoice_id in ids):
                raise ProviderRefused(f"batch {code} holds a reversed invoice", operation="chunk.reverse")
            for invoice_id in ids:
                self.invoices[invoice_id].reversals += 1
                self.invoices[invoice_id].balance = Decimal("0")
            self.reversal_batches.setdefault(code, []).extend(ids)
        return {item.id: ItemOutcome(ItemState.REVERSED, result_ref=code) for item in prepared.send}


def _planned(invoice: FakeInvoice) -> PlannedItem:
    neutral = Invoice(
        invoice_id=invoice.invoice_id,
        amount=invoice.amount,
        balance=invoice.balance,
        number=invoice.invoice_id,
        party_id=invoice.party_id,
        details={"billing": invoice.billing},
    )
    reason = invoice.skip_reason()
    return PlannedItem.eligible(neutral) if reason is None else PlannedItem.skipped(neutral, reason)


@dataclass
class FakeProviders:
    """The `Providers` port over a few fakes."""

    by_name: dict[str, BillingProvider]

    def get(self, name: str) -> BillingProvider:
        provider = self.by_name.get(name)
        if provider is None:
            raise ConfigurationError(f"no provider {name!r} is configured here")
        return provider

    def names(self) -> list[str]:
        return list(self.by_name)


@dataclass
class FakeDispatcher:
    """Records messages; `deliver` runs them through the services as a worker would."""

    sent: list[tuple[str, tuple[Any, ...], float]] = field(default_factory=list)
    copies: int = 1  # >1: every message is delivered that many times, as an at-least-once broker may

    def _queue(self, name: str, args: tuple[Any, ...], countdown: float) -> None:
        self.sent.extend([(name, args, countdown)] * self.copies)

    def plan(self, run_id: str) -> None:
        self._queue("plan", (run_id,), 0)

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None:
        self._queue("reverse_chunk", (run_id, chunk_id), countdown)

    def rebill(self, run_id: str, *, countdown: float = 0) -> None:
        self._queue("rebill", (run_id,), countdown)

    def poll(self, run_id: str, *, countdown: float = 0) -> None:
        self._queue("poll", (run_id,), countdown)

    def deliver(self, ctx: Context, *, clock: FakeClock | None = None, limit: int = 10_000) -> int:
        """Run every message (and those they send) in order; countdowns advance the fake clock."""
        handlers: dict[str, Callable[..., None]] = {
            "plan": lambda run_id: planning.plan_run(ctx, run_id),
            "reverse_chunk": lambda run_id, chunk_id: reversal.process_chunk(ctx, run_id, chunk_id),
            "rebill": lambda run_id: follow_up.follow(ctx, run_id),
            "poll": lambda run_id: follow_up.follow(ctx, run_id),
        }
        delivered = 0
        while self.sent and delivered < limit:
            self.sent.sort(key=lambda message: message[2])
            name, args, countdown = self.sent.pop(0)
            if clock is not None and countdown:
                clock.advance(countdown)
                self.sent = [(n, a, max(0.0, c - countdown)) for n, a, c in self.sent]
            handlers[name](*args)
            delivered += 1
        return delivered

    def count(self, name: str) -> int:
        return sum(1 for sent in self.sent if sent[0] == name)

    def chunks(self) -> list[int]:
        """The chunk ids of the reverse_chunk messages waiting, in order."""
        return [args[1] for name, args, _ in self.sent if name == "reverse_chunk"]
