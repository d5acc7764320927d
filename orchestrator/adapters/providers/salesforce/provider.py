"""Salesforce Revenue Cloud Billing behind the `BillingProvider` port.

- open: an invoice batch run or a billing account (18-character ids), refused when it holds no
  invoice or none is Posted; the generate dates are fixed here (default: today in the org's zone).
- plan: the selection's invoices ordered by Id, page by page as the org pages them
  (`nextRecordsUrl`); per 200 of them their lines, every invoice on their billing schedules and
  those invoices' status, so each gets the contract's verdict (`verdicts.py`, `eligibility.py`),
  and those 200 are a plan page at once. The cursor counts the invoices consumed: an expired
  locator (or a resumed plan) runs the query again and skips them.
  Each item keeps its schedules and the invoices seen on them: any other invoice found there later
  is a new one.
- act: settle = read `Invoice.Status` (Void In Progress or Voided: applied); apply = void, its
  request identifier kept; a refusal is read before it is believed.
- follow: the voided invoices watched in bulk until every one is Voided (one stuck in Void In
  Progress too long asks for an operator); steps `generate/0001`, ... for their schedules, 200 at
  most each, sorted, each with its own correlationId; the new invoices found through the schedules'
  lines until they reach the asked status; a schedule in Error recovered by steps
  `recover/<schedule>/<n>`, one per request, until the run's attempts are spent.
- limits: before any write and every follow-up tick the org's API usage is checked (`usage.py`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from orchestrator.adapters.providers.run_request import parse_run_request
from orchestrator.adapters.providers.salesforce.client import SalesforceClient
from orchestrator.adapters.providers.salesforce.eligibility import (
    ERROR,
    INVOICE_FIELDS,
    POSTED,
    PROCESSING,
    VOID_IN_PROGRESS,
    VOIDED,
    VOIDING,
    SkipReason,
    open_to_void,
)
from orchestrator.adapters.providers.salesforce.errors import QueryLocatorExpired
from orchestrator.adapters.providers.salesforce.options import (
    SalesforceKept,
    SalesforceOptions,
    SalesforceSelector,
)
from orchestrator.adapters.providers.salesforce.soql import (
    BILLING_SCHEDULE,
    INVOICE,
    INVOICE_LINE,
    Condition,
    Query,
    SObject,
    count,
    eq,
    in_batches,
    select_in,
)
from orchestrator.adapters.providers.salesforce.usage import UsageGate
from orchestrator.adapters.providers.salesforce.verdicts import LINE_FIELDS, BatchReading, batches, selection
from orchestrator.adapters.providers.salesforce.wire import (
    InvoiceRecord,
    Record,
)
from orchestrator.domain.billing import Invoice
from orchestrator.domain.errors import ProviderRefused, RunRefused
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
from orchestrator.services.ports import (
    ActionUnit,
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

GENERATE = "generate"
RECOVER = "recover"
#: Times in a row a query's locator may expire before planning gives up (each rerun skips what was read).
_LOCATOR_RERUNS = 3
#: Ids named in a reason before "and N more".
_NAMED = 10
_REF_LENGTH = 200  # the ledger's column

R = TypeVar("R", bound=Record)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SalesforceProvider:
    """The `BillingProvider` port over one org (thread-safe: the client and the usage gate are)."""

    name = "salesforce"
    title = "Salesforce"
    unit = ActionUnit.ITEM
    previews_items = False

    def __init__(
        self,
        client: SalesforceClient,
        *,
        usage_pause_at: float = 0.9,
        time_zone: ZoneInfo | None = None,
        generate_settle_seconds: float = 10.0,
        usage_recheck_seconds: float = 30.0,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._gate = UsageGate(client, pause_at=usage_pause_at, recheck_seconds=usage_recheck_seconds, clock=monotonic)
        self._zone = time_zone or ZoneInfo("UTC")
        self._generate_settle = timedelta(seconds=generate_settle_seconds)
        self._now = now

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    # --- open and plan ---------------------------------------------------------------------------------

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        chosen = parse_run_request(SalesforceSelector, selector, "selection")
        asked = parse_run_request(SalesforceOptions, options, "Salesforce option")
        target = asked.target_date or self._now().astimezone(self._zone).date()
        fixed = asked.model_copy(update={"target_date": target, "invoice_date": asked.invoice_date or target})
        condition = _selection(chosen)
        if chosen.invoice_batch_run is not None:
            scope, what = f"salesforce:run:{chosen.invoice_batch_run}", f"invoice batch run {chosen.invoice_batch_run}"
        else:
            scope, what = f"salesforce:account:{chosen.billing_account}", f"billing account {chosen.billing_account}"
        with self._gate.pausing():
            total = self._client.count(count(INVOICE).where(condition))
            if total == 0:
                raise RunRefused(f"no invoice of {what} on this Salesforce org")
            posted = self._client.count(count(INVOICE).where(condition, eq("Status", POSTED)))
        if posted == 0:
            raise RunRefused(f"none of the {total} invoice(s) of {what} is Posted: there is nothing to void")
        return Opening(
            selection=Selection(
                scope=scope,
                guard_key=scope,
                label=f"{what} ({total} invoices, {posted} posted)",
                selector=chosen.model_dump(mode="json", exclude_none=True),
            ),
            options=fixed.model_dump(mode="json"),
        )

    def prepare_run(self, run: Run) -> Preparation:
        return Preparation()  # nothing must exist on the org before the voids

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        """A plan page per 200 invoices of the selection from `cursor` on, each yielded as soon as its lines
        and schedules are read (a query page of 2,000 records is not read whole first); an expired locator
        reruns the query from the start and skips what was already consumed (the order by Id makes that
        the same invoices)."""
        query = selection(_selection(_selector(run)))
        reruns = 0
        while True:
            consumed = 0
            try:
                with self._gate.pausing():
                    for page in self._client.query(query):
                        start, consumed = consumed, consumed + len(page.records)
                        at = max(cursor, start)
                        for batch in batches(page.records[at - start :]):
                            end = at + len(batch)
                            last = page.done and end == consumed
                            yield PlanPage(items=self._verdicts(batch), cursor=at, next_cursor=None if last else end)
                            at = cursor = end
                            reruns = 0
                return
            except QueryLocatorExpired:
                reruns += 1
                if reruns > _LOCATOR_RERUNS:
                    raise

    def _verdicts(self, batch: Sequence[InvoiceRecord]) -> tuple[PlannedItem, ...]:
        """Each invoice of a batch (200 at most) with its verdict, from its lines and its schedules' other
        invoices (`verdicts.py` says what to read)."""
        reading = BatchReading(batch)
        lines = self._run(reading.lines_of_invoices())
        on_schedules = self._run(reading.lines_on_schedules(lines))
        verdicts = reading.verdicts(self._run(reading.other_invoices(on_schedules)))
        return tuple(_planned(v.invoice, v.schedules, v.seen, v.reason) for v in verdicts)

    # --- act ---------------------------------------------------------------------------------------------

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return self._client.one_slot()

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        """What each invoice says now: voiding (applied), still Posted and open (void it), or left alone."""
        with self._gate.sending():
            current = {invoice.Id: invoice for invoice in self._invoices([i.invoice.invoice_id for i in items])}
        settled: dict[int, ItemOutcome] = {}
        for item in items:
            outcome = _read_back(current.get(item.invoice.invoice_id))
            if outcome is not None:
                settled[item.id] = outcome
        return settled

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        # Nothing to read: Salesforce refuses a void that is no longer allowed, and a refusal is read back.
        return Prepared(send=tuple(items))

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        for item in prepared.send:
            with self._gate.sending():
                try:
                    reply = self._client.void(item.invoice.invoice_id)
                except ProviderRefused as refused:
                    outcomes[item.id] = self._after_refusal(item, refused)
                    continue
            outcomes[item.id] = ItemOutcome(ItemState.REVERSED, result_ref=reply.requestIdentifier)
        return outcomes

    def _after_refusal(self, item: Item, refused: ProviderRefused) -> ItemOutcome:
        """A refused void is read back: already voiding (applied), no longer open (skipped), else FAILED."""
        current = next(iter(self._invoices([item.invoice.invoice_id])), None)
        outcome = _read_back(current)
        if outcome is not None:
            return outcome
        return ItemOutcome(ItemState.FAILED, reason=refused.message, error=refused.readable())

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        return {item.id: ItemOutcome(ItemState.PREVIEWED) for item in prepared.send}

    # --- follow ------------------------------------------------------------------------------------------

    def follow(self, run: Run, view: FollowView) -> Decision:
        with self._gate.sending():
            voided = list(view.items(states={ItemState.REVERSED}))
            if not voided:
                return Decision(Finish(RunState.COMPLETED, reason="no invoice was voided: nothing to generate"))
            kept = _kept(run)
            state: dict[str, Any] = {}
            observation: Observation | None = None
            if not kept.voids_done:
                watching, observation = self._watch_voids(run, kept, voided)
                if watching is not None:
                    return watching
                state = {"voids_done": True, "void_pending": None, "void_watch_since": None}
            send = self._next_generate(run, voided, view.steps())
            if send is not None:
                return Decision(send, observation=observation, state=state)
            decision = self._watch_new_invoices(run, kept, voided, view.steps())
            return Decision(
                decision.action, decision.observation, {**state, **decision.state}, decision.items, decision.notice
            )

    def _watch_voids(
        self, run: Run, kept: SalesforceKept, voided: Sequence[Item]
    ) -> tuple[Decision | None, Observation]:
        """Read the voids not yet seen Voided, 200 per query; a Decision while any is not Voided."""
        now = self._now()
        since = kept.void_watch_since or now
        pending = kept.void_pending if kept.void_pending is not None else [i.invoice.invoice_id for i in voided]
        status = {invoice.Id: invoice.Status for invoice in self._invoices(pending, "Id", "Status")}
        waiting = [invoice for invoice in pending if status.get(invoice) == VOID_IN_PROGRESS]
        astray = {
            invoice: status.get(invoice) or "missing" for invoice in pending if status.get(invoice) not in VOIDING
        }
        done = len(voided) - len(waiting) - len(astray)
        observation = Observation(
            subject="voids",
            code=VOIDED if done == len(voided) else VOID_IN_PROGRESS,
            label=f"{done} of {len(voided)} voided invoices Voided",
        )
        if astray:
            named = _named([f"{invoice} ({status})" for invoice, status in sorted(astray.items())])
            return Decision(
                Finish(
                    RunState.NEEDS_ATTENTION,
                    ReasonCode.AWAITING_OPERATOR,
                    f"{len(astray)} voided invoice(s) are neither Void In Progress nor Voided: {named}; check them "
                    f"in Salesforce, then `rebill retry {run.id}` to go on",
                ),
                observation,
                {"void_pending": sorted(astray) + waiting, "void_watch_since": None},
            ), observation
        if not waiting:
            return None, observation
        stuck_after = _options(run).void_stuck_after_seconds
        if (now - since).total_seconds() > stuck_after:
            return Decision(
                Finish(
                    RunState.NEEDS_ATTENTION,
                    ReasonCode.AWAITING_OPERATOR,
                    f"{len(waiting)} invoice(s) still Void In Progress after {stuck_after:g} s: {_named(waiting)}; "
                    f"check them in Salesforce, then `rebill retry {run.id}` to watch them again",
                ),
                observation,
                {"void_pending": waiting, "void_watch_since": None},
            ), observation
        return Decision(
            Watch(), observation, {"void_pending": waiting, "void_watch_since": since.isoformat()}
        ), observation

    def _next_generate(self, run: Run, voided: Sequence[Item], steps: Sequence[Step]) -> Send | None:
        """The first generate call not sent yet (or known not applied), or None when all were sent."""
        sent = {step.key: step for step in steps}
        for key, schedules in _generate_calls(voided):
            step = sent.get(key)
            if step is None or step.phase is StepPhase.RELEASED:
                attempt = 1 if step is None else step.attempts + 1
                request = {
                    **self._generate_body(run, key, schedules, attempt),
                    "invoicesBefore": sorted(_seen_on(voided, set(schedules))),
                }
                return Send(key, GENERATE, request)
        return None

    def _generate_body(self, run: Run, key: str, schedules: Sequence[str], attempt: int) -> dict[str, Any]:
        """The generate call's body as Salesforce gets it: never an account or a billing transaction."""
        options = _options(run)
        return {
            "billingScheduleIds": list(schedules),
            "action": options.action,
            "invoiceDate": _date(options.invoice_date).isoformat(),
            "targetDate": _date(options.target_date).isoformat(),
            "correlationId": f"rebill/{run.id}/{key}/{attempt}",
        }

    def _watch_new_invoices(
        self, run: Run, kept: SalesforceKept, voided: Sequence[Item], steps: Sequence[Step]
    ) -> Decision:
        """The new invoices on the voided invoices' schedules, until each reached the asked status."""
        options = _options(run)
        every = {schedule for item in voided for schedule in _schedules(item)}
        pending = [item for item in voided if item.rebill_ref is None and _schedules(item)]
        watched = sorted({schedule for item in pending for schedule in _schedules(item)})
        seen = _seen_by_schedule(pending)
        schedule_status = {s.Id: s.Status for s in self._records_in(BILLING_SCHEDULE, "Id", watched, "Id", "Status")}
        new_on: dict[str, set[str]] = defaultdict(set)
        for line in self._records_in(INVOICE_LINE, "BillingScheduleId", watched):
            if line.BillingScheduleId and line.InvoiceId and line.InvoiceId not in seen[line.BillingScheduleId]:
                new_on[line.BillingScheduleId].add(line.InvoiceId)
        new = {
            str(invoice.Id): invoice
            for invoice in self._invoices(sorted(set().union(*new_on.values())), "Id", "InvoiceNumber", "Status")
        }
        done: set[str] = set()
        errored: set[str] = set()
        waiting: set[str] = set()
        for schedule in watched:
            statuses = {new[i].Status for i in new_on.get(schedule, ()) if i in new}
            if schedule_status.get(schedule) == ERROR or ERROR in statuses:
                errored.add(schedule)
            elif statuses and statuses == {options.action}:
                done.add(schedule)
            elif statuses or schedule_status.get(schedule) == PROCESSING:
                waiting.add(schedule)
        outcomes = [
            (item.id, _rebilled(item, sorted({i for s in _schedules(item) for i in new_on[s]}), new))
            for item in pending
            if all(schedule in done for schedule in _schedules(item))
        ]
        unbilled = len(watched) - len(done)
        observation = Observation(
            subject="new invoices",
            code=options.action if not unbilled else (ERROR if errored else PROCESSING),
            label=f"{len(every) - unbilled} of {len(every)} billing schedules on a new {options.action} invoice"
            + (f", {len(errored)} in Error" if errored else ""),
        )
        if not unbilled:
            return Decision(Finish(RunState.COMPLETED), observation, items=outcomes)
        recovering = self._recover(run, kept, errored, steps)
        if isinstance(recovering, Send):
            return Decision(recovering, observation, items=outcomes)
        missing = set(watched) - done - errored - waiting
        if recovering or waiting or (missing and not self._generate_settled(steps)):
            return Decision(Watch(), observation, items=outcomes)
        return Decision(
            self._attention(run, kept, errored, missing),
            observation,
            {"attention_rounds": kept.attention_rounds + 1},
            outcomes,
        )

    def _recover(self, run: Run, kept: SalesforceKept, errored: set[str], steps: Sequence[Step]) -> Send | bool:
        """The next recover step for a schedule in Error, or whether one waits for its turn (spaced by the
        poll interval); False when every errored schedule spent its attempts (granted anew by each retry)."""
        budget = run.options.max_attempts * (kept.attention_rounds + 1)
        now = self._now()
        spacing = timedelta(seconds=run.options.poll_interval_seconds)
        waiting = False
        for schedule in sorted(errored):
            tried = [step for step in steps if step.key.startswith(f"{RECOVER}/{schedule}/")]
            if sum(step.attempts for step in tried) >= budget:
                continue
            if tried and now - max(step.claimed_at for step in tried) < spacing:
                waiting = True
                continue
            released = next((step.key for step in tried if step.phase is StepPhase.RELEASED), None)
            key = released or f"{RECOVER}/{schedule}/{len(tried) + 1}"
            return Send(key, RECOVER, {"billingScheduleId": schedule})
        return waiting

    def _generate_settled(self, steps: Sequence[Step]) -> bool:
        """Every generate call went out long enough ago that a schedule still idle was skipped by it."""
        claimed = [step.claimed_at for step in steps if step.kind == GENERATE]
        return bool(claimed) and self._now() - max(claimed) >= self._generate_settle

    def _attention(self, run: Run, kept: SalesforceKept, errored: set[str], missing: set[str]) -> Finish:
        parts = []
        if errored:
            described = [
                f"{s} ({kept.recover_errors[s]})" if kept.recover_errors.get(s) else s for s in sorted(errored)
            ]
            parts.append(
                f"{len(errored)} billing schedule(s) still in Error after {run.options.max_attempts} recover "
                f"attempt(s) each: {_named(described)}"
            )
        if missing:
            parts.append(
                f"Salesforce made no new invoice for {len(missing)} billing schedule(s) of voided invoices "
                f"(generate found nothing unbilled on them): {_named(sorted(missing))}"
            )
        return Finish(
            RunState.NEEDS_ATTENTION,
            ReasonCode.AWAITING_OPERATOR,
            "; ".join(parts) + f". Fix them in Salesforce, then `rebill retry {run.id}` to follow them again",
        )

    def send_step(self, run: Run, step: Step) -> StepResult:
        with self._gate.sending():
            if step.kind == RECOVER:
                return self._send_recover(run, str(step.request["billingScheduleId"]))
            body = step.request
            reply = self._client.generate(
                list(body["billingScheduleIds"]),
                correlation_id=str(body["correlationId"]),
                invoice_date=date.fromisoformat(str(body["invoiceDate"])),
                target_date=date.fromisoformat(str(body["targetDate"])),
                action="Draft" if body["action"] == "Draft" else "Posted",
            )
        return StepResult(Settlement.APPLIED, ref=reply.requestIdentifier)

    def _send_recover(self, run: Run, schedule: str) -> StepResult:
        """Recover one schedule still in Error (read first: it may have been recovered meanwhile)."""
        if not self._in_error(schedule):
            return StepResult(Settlement.NOT_APPLIED)
        try:
            result = self._client.recover(schedule)
        except ProviderRefused:
            if not self._in_error(schedule):
                return StepResult(Settlement.NOT_APPLIED)
            raise
        errors = dict(_kept(run).recover_errors)
        if result.success:
            errors.pop(schedule, None)
        else:
            errors[schedule] = "; ".join(e.describe() for e in result.invoiceErrors) or "recovery failed"
        return StepResult(Settlement.APPLIED, ref=result.invoiceId, state={"recover_errors": errors})

    def settle_step(self, run: Run, step: Step) -> StepResult:
        with self._gate.sending():
            if step.kind == RECOVER:
                # A recover makes no second invoice: while the schedule is still in Error, sending it again is safe.
                applied = not self._in_error(str(step.request["billingScheduleId"]))
                return StepResult(Settlement.APPLIED if applied else Settlement.NOT_APPLIED)
            return self._settle_generate(step)

    def _settle_generate(self, step: Step) -> StepResult:
        """Applied when a schedule it named is Processing (or in Error) or carries an invoice that was not
        there before; not applied when all stay idle and bare for the settle pause after it was sent."""
        schedules = [str(s) for s in step.request["billingScheduleIds"]]
        before = {str(i) for i in step.request.get("invoicesBefore", ())}
        status = self._records_in(BILLING_SCHEDULE, "Id", schedules, "Id", "Status")
        if any(schedule.Status in (PROCESSING, ERROR) for schedule in status):
            return StepResult(Settlement.APPLIED)
        if any(line.InvoiceId not in before for line in self._records_in(INVOICE_LINE, "BillingScheduleId", schedules)):
            return StepResult(Settlement.APPLIED)
        if self._now() - step.claimed_at < self._generate_settle:
            return StepResult(Settlement.UNKNOWN)  # read again after a pause: the org may lag
        return StepResult(Settlement.NOT_APPLIED)

    def _in_error(self, schedule: str) -> bool:
        found = self._records_in(BILLING_SCHEDULE, "Id", [schedule], "Id", "Status")
        return any(record.Status in (ERROR, PROCESSING) for record in found)

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        """The generate calls the follow-up would send for the eligible invoices (first attempts)."""
        eligible = list(view.items(states={ItemState.PENDING, ItemState.PREVIEWED, ItemState.REVERSED}))
        return [
            {"key": key, **self._generate_body(run, key, schedules, 1)} for key, schedules in _generate_calls(eligible)
        ]

    # --- operators ---------------------------------------------------------------------------------------

    def summarize(self, run: Run) -> Mapping[str, Any]:
        chosen, options, kept = _selector(run), _options(run), _kept(run)
        return {
            "invoice_batch_run": chosen.invoice_batch_run,
            "billing_account": chosen.billing_account,
            "action": options.action,
            "invoice_date": _date(options.invoice_date).isoformat(),
            "target_date": _date(options.target_date).isoformat(),
            "voids_done": kept.voids_done,
            "voids_pending": len(kept.void_pending or ()),
            "recover_errors": dict(kept.recover_errors),
        }

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        return ScheduledSelection(
            None,
            reason="scheduled runs are not supported for Salesforce yet: start them with "
            "`rebill run --provider salesforce --invoice-batch-run ID`",
        )

    def check(self) -> str:
        with self._gate.pausing():
            self._client.count(count(INVOICE).limit(1))
        usage = self._client.usage
        said = f"; API usage {usage.used}/{usage.allocation} ({usage.share:.0%})" if usage else ""
        return f"Salesforce {self._client.base_url}: token accepted, invoices readable{said}"

    # --- reading -----------------------------------------------------------------------------------------

    def _invoices(self, ids: Sequence[str], *fields: str) -> list[InvoiceRecord]:
        return self._records_in(INVOICE, "Id", ids, *(fields or INVOICE_FIELDS))

    def _records_in(self, sobject: SObject[R], field: str, values: Sequence[str], *fields: str) -> list[R]:
        """Every record whose `field` is one of `values`, 200 values per query."""
        return self._run(select_in(sobject, field, values, *(fields or LINE_FIELDS)))

    def _run(self, queries: Iterable[Query[R]]) -> list[R]:
        """Every record of each query, in order (a small query whose locator expired is simply run again)."""
        return [record for query in queries for record in self._all(query)]

    def _all(self, query: Query[R]) -> list[R]:
        for rerun in range(_LOCATOR_RERUNS + 1):
            try:
                return list(self._client.records(query))
            except QueryLocatorExpired:
                if rerun == _LOCATOR_RERUNS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


# --- pure helpers --------------------------------------------------------------------------------------


def _selection(chosen: SalesforceSelector) -> Condition:
    if chosen.invoice_batch_run is not None:
        return eq("InvoiceBatchRunId", chosen.invoice_batch_run)
    return eq("BillingAccountId", chosen.billing_account)


def _planned(invoice: InvoiceRecord, schedules: list[str], seen: list[str], reason: SkipReason | None) -> PlannedItem:
    """The neutral invoice the ledger keeps: its billing schedules and the invoices on them when planned
    (any other invoice found there later is a new one) ride along in `details`."""
    neutral = Invoice(
        invoice_id=invoice.Id or "",
        amount=invoice.TotalAmountWithTax or Decimal("0.00"),
        balance=invoice.Balance or Decimal("0.00"),
        number=invoice.InvoiceNumber,
        party_id=invoice.BillingAccountId,
        details={"schedules": schedules, "seen": seen},
    )
    return PlannedItem.eligible(neutral) if reason is None else PlannedItem.skipped(neutral, reason.value)


def _read_back(current: InvoiceRecord | None) -> ItemOutcome | None:
    """What an invoice read after an uncertain or refused void says; None when it is still to void."""
    if current is None:
        return ItemOutcome(ItemState.FAILED, reason="the invoice is no longer on the Salesforce org")
    if current.Status in VOIDING:
        return ItemOutcome(
            ItemState.REVERSED,
            reason=f"confirmed voided by reading the invoice ({current.Status})",
            settled_by_read=True,
        )
    reason = open_to_void(current)
    if reason is None:
        return None
    return ItemOutcome(ItemState.SKIPPED, reason=reason.value, settled_by_read=True)


def _schedules(item: Item) -> list[str]:
    return [str(schedule) for schedule in item.invoice.details.get("schedules", ())]


def _seen_by_schedule(items: Iterable[Item]) -> dict[str, set[str]]:
    """Schedule -> the invoices on it when its voided invoices were planned."""
    seen: dict[str, set[str]] = defaultdict(set)
    for item in items:
        for schedule in _schedules(item):
            seen[schedule].update(str(invoice) for invoice in item.invoice.details.get("seen", ()))
    return seen


def _seen_on(items: Iterable[Item], schedules: set[str]) -> set[str]:
    seen = _seen_by_schedule(item for item in items if schedules.intersection(_schedules(item)))
    return set().union(*(seen[schedule] for schedule in schedules))


def _generate_calls(items: Iterable[Item]) -> list[tuple[str, tuple[str, ...]]]:
    """The items' billing schedules, sorted, 200 per generate call, each call keyed `generate/NNNN`."""
    schedules = sorted({schedule for item in items for schedule in _schedules(item)})
    return [(f"{GENERATE}/{number:04d}", batch) for number, batch in enumerate(in_batches(schedules), start=1)]


def _rebilled(item: Item, invoices: Sequence[str], new: Mapping[str, InvoiceRecord]) -> ItemOutcome:
    """The voided item, now with the new invoice(s) on its schedules (all else kept as it was)."""
    described = ", ".join(f"{i} ({new[i].InvoiceNumber})" if i in new and new[i].InvoiceNumber else i for i in invoices)
    return ItemOutcome(
        ItemState.REVERSED,
        reason=item.reason,
        error=item.last_error,
        settled_by_read=item.settled_by_read,
        rebill_ref=described[:_REF_LENGTH],
    )


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_NAMED])
    return shown + (f" and {len(ids) - _NAMED} more" if len(ids) > _NAMED else "")


def _date(value: date | None) -> date:
    assert value is not None, "the dates are fixed when the run opens"
    return value


def _kept(run: Run) -> SalesforceKept:
    return SalesforceKept.model_validate(dict(run.provider_state))


def _options(run: Run) -> SalesforceOptions:
    return SalesforceOptions.model_validate(dict(run.provider_options))


def _selector(run: Run) -> SalesforceSelector:
    return SalesforceSelector.model_validate(dict(run.selection.selector))


if TYPE_CHECKING:
    from orchestrator.services.ports import BillingProvider

    def _conforms_to_the_port(provider: SalesforceProvider) -> BillingProvider:
        return provider  # mypy proves SalesforceProvider satisfies BillingProvider
