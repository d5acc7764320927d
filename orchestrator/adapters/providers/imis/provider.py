"""iMIS behind the `BillingProvider` port.

- open: the original BillingLog must exist and be Completed (2); the scope is the billing, a single
  contact's run holds only its part of it.
- prepare_run: POST a 'Reversing invoices' (5) BillingLog under our own key; a lost reply is settled
  by reading it (a 409 means it exists after all).
- plan: InvoiceSummary pages of the billing (of the contact), each invoice PENDING when open with
  no payments, else SKIPPED with why.
- act: settle = read the InvoiceSummary; prepare = Can(Cash)InvoiceBeReversed; apply =
  ProcessCashReversal / ProcessAccrualReversal.
- follow: step `rebill` (one TaskAdhocRequest with the bill-generation action, or both actions in
  native mode), then the progress BillingLog watched 5 -> 1 -> 2; at 4 (unposted batch) step
  `post_batch`, or the run waits for an operator when posting is off. An unknown rebill is settled
  by a sign of it on the progress log; an unknown post by reading the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.providers.imis.api import ImisApi
from orchestrator.adapters.providers.imis.model import (
    AccountingMethod,
    BatchStatus,
    BillingLog,
    BillingLogStatus,
    ImisInvoice,
    Rebill,
    Reversal,
    ServerSideReversal,
    SkipReason,
)
from orchestrator.adapters.providers.imis.options import ImisKept, ImisOptions, ImisSelector, RunMode
from orchestrator.adapters.providers.run_request import parse_run_request
from orchestrator.domain.billing import Invoice
from orchestrator.domain.errors import (
    ProviderNotFound,
    ProviderRefused,
    RunRefused,
    TransientProviderError,
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

REBILL = "rebill"
POST_BATCH = "post_batch"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rebill_run_name(cycle_name: str, party_id: str | None) -> str:
    """The seed page's naming: `Rebill: <cycle>` and `Rebill: <cycle> for <party>`."""
    return f"Rebill: {cycle_name}" + (f" for {party_id}" if party_id else "")


def to_item_invoice(invoice: ImisInvoice) -> Invoice:
    """The neutral invoice the ledger keeps; what a reversal needs later rides along in `details`."""
    return Invoice(
        invoice_id=invoice.invoice_id,
        amount=invoice.amount,
        balance=invoice.balance,
        number=str(invoice.number) if invoice.number is not None else None,
        party_id=invoice.party_id,
        party_name=invoice.party_name,
        details={"accounting_method": int(invoice.accounting_method), "number": invoice.number},
    )


def planned(invoice: ImisInvoice) -> PlannedItem:
    skip = invoice.skip_reason()
    neutral = to_item_invoice(invoice)
    return PlannedItem.eligible(neutral) if skip is None else PlannedItem.skipped(neutral, skip.value)


def _from_item(item: Item) -> ImisInvoice:
    invoice = item.invoice
    number = invoice.details.get("number")
    return ImisInvoice(
        invoice_id=invoice.invoice_id,
        accounting_method=AccountingMethod(invoice.details.get("accounting_method", AccountingMethod.CASH)),
        amount=invoice.amount,
        balance=invoice.balance,
        number=int(number) if number is not None else None,
        party_id=invoice.party_id,
        party_name=invoice.party_name,
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ImisProvider:
    """The `BillingProvider` port over one iMIS tenant (thread-safe, stateless besides its client)."""

    name = "imis"
    title = "iMIS"
    unit = ActionUnit.ITEM
    previews_items = False

    def __init__(self, api: ImisApi, *, defaults: ImisOptions, now: Callable[[], datetime] = _utc_now) -> None:
        self._api = api
        self._defaults = defaults
        self._now = now

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._api!r})"

    # --- open and plan ---------------------------------------------------------------------------------

    def open(self, selector: Mapping[str, Any], options: Mapping[str, Any], run: RunOptions) -> Opening:
        chosen = parse_run_request(ImisSelector, selector, "billing")
        imis_options = parse_run_request(ImisOptions, {**self._defaults.model_dump(), **options}, "iMIS option")
        original = self._check_original(chosen.billing_log)
        key, party = chosen.billing_log, chosen.party_id
        if party is not None and not self._api.has_invoices(key, party_id=party):
            # Refused here, dry run or not: a run would create a tracking log and end with nothing to do.
            raise RunRefused(
                f"party {party} has no invoice in BillingLog {key} ({original.run_name or original.cycle_name}): "
                "nothing to reverse or rebill for it (check the party id)"
            )
        scope = f"imis:{key}"
        label = f"BillingLog {key} ({original.run_name or original.cycle_name})" + (
            f" for party {party}" if party else ""
        )
        tracking = str(uuid.uuid4()) if imis_options.tracking_log and not run.dry_run else None
        return Opening(
            selection=Selection(
                scope=scope,
                guard_key=scope + (f":party:{party}" if party else ""),
                label=label,
                selector=chosen.model_dump(mode="json", exclude_none=True),
                whole=party is None,
            ),
            options=imis_options.model_dump(mode="json"),
            state=ImisKept(original=original.to_json(), tracking_log_key=tracking).model_dump(mode="json"),
            item_actions=imis_options.mode is RunMode.ORCHESTRATED,
        )

    def _check_original(self, key: str) -> BillingLog:
        """The original billing, or RunRefused saying why it cannot be reversed and rebilled."""
        try:
            original = self._api.get_billing_log(key)
        except ProviderNotFound:
            raise RunRefused(f"no BillingLog {key} on this iMIS tenant") from None
        if original.status is not BillingLogStatus.COMPLETED:
            raise RunRefused(
                f"BillingLog {key} ({original.run_name or original.cycle_name}) is "
                f"{original.status.label} ({int(original.status)}), not Completed (2): "
                "only a completed billing can be reversed and rebilled"
            )
        return original

    def prepare_run(self, run: Run) -> Preparation:
        """The tracking log under our own key; a lost reply is settled by reading it."""
        kept = _kept(run)
        key = kept.tracking_log_key
        if key is None or kept.tracking_log_created:
            return Preparation()
        try:
            self._api.get_billing_log(key)
        except ProviderNotFound:
            original = BillingLog.from_json(kept.original)
            try:
                self._api.create_tracking_log(
                    original, key=key, run_name=rebill_run_name(original.cycle_name, _selector(run).party_id)
                )
            except ProviderRefused:
                self._api.get_billing_log(key)  # a 409: it exists after all; anything else re-raises
        status = BillingLogStatus.REVERSING
        return Preparation(
            state={"tracking_log_created": True},
            observation=Observation(
                subject=key, code=str(int(status)), label=status.label, note="tracking log created"
            ),
        )

    def iter_plan(self, run: Run, *, cursor: int) -> Iterator[PlanPage]:
        chosen = _selector(run)
        for page in self._api.iter_invoice_pages(chosen.billing_log, party_id=chosen.party_id, start_offset=cursor):
            yield PlanPage(
                items=tuple(planned(invoice) for invoice in page.invoices),
                cursor=page.offset,
                next_cursor=page.next_offset,
            )

    # --- act ---------------------------------------------------------------------------------------------

    def one_invoice_at_a_time(self) -> AbstractContextManager[None]:
        return self._api.one_invoice_at_a_time()

    def settle(self, run: Run, items: Sequence[Item]) -> Mapping[int, ItemOutcome]:
        """What each invoice says now: reversed, paid meanwhile, or still open (left to do)."""
        settled: dict[int, ItemOutcome] = {}
        for item in items:
            outcome = _settle_by_reading(self._api.get_invoice(item.invoice.invoice_id))
            if outcome is not None:
                settled[item.id] = outcome
        return settled

    def prepare(self, run: Run, items: Sequence[Item]) -> Prepared:
        options = _options(run)
        send: list[Item] = []
        reversals: list[Reversal] = []
        decided: dict[int, ItemOutcome] = {}
        for item in items:
            invoice = _from_item(item)
            if not self._api.can_reverse(invoice):
                decided[item.id] = _why_not_reversible(self._api.get_invoice(invoice.invoice_id), item)
                continue
            send.append(item)
            reversals.append(
                Reversal(
                    invoice_id=invoice.invoice_id,
                    invoice_number=invoice.number,
                    accounting_method=invoice.accounting_method,
                    adjustment_date=options.adjustment_date or self._now().date(),
                    reason=options.adjustment_reason,
                    do_not_cancel_membership=options.do_not_cancel_membership,
                )
            )
        return Prepared(send=tuple(send), request=tuple(reversals), decided=decided)

    def apply(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        for item, reversal in zip(prepared.send, prepared.request, strict=True):
            self._api.reverse(reversal)
            outcomes[item.id] = ItemOutcome(ItemState.REVERSED)
        return outcomes

    def preview(self, run: Run, prepared: Prepared) -> Mapping[int, ItemOutcome]:
        return {item.id: ItemOutcome(ItemState.PREVIEWED) for item in prepared.send}

    # --- follow ------------------------------------------------------------------------------------------

    def follow(self, run: Run, view: FollowView) -> Decision:
        kept = _kept(run)
        steps = {step.key: step for step in view.steps()}
        rebill = steps.get(REBILL)
        if rebill is None or rebill.phase is StepPhase.RELEASED:
            return self._send_rebill(run, view, kept)
        state: dict[str, Any] = {}
        key = kept.rebill_log_key or (kept.tracking_log_key if _options(run).tracking_log else None)
        if key is None:
            key = self._discover_progress_log(kept)
            if key is None:
                return Decision(Watch())
            state["rebill_log_key"] = key
        billing_log = self._api.get_billing_log(key)
        observation = Observation(
            subject=key, code=str(int(billing_log.status)), label=billing_log.status.label, note=billing_log.information
        )
        if billing_log.batch_id and billing_log.batch_id != kept.batch_id:
            state["batch_id"] = billing_log.batch_id
        return Decision(
            self._judge(run, kept, billing_log, steps), observation, state, self._verified(run, view, billing_log)
        )

    def _send_rebill(self, run: Run, view: FollowView, kept: ImisKept) -> Decision:
        state: dict[str, Any] = {}
        if not kept.tracking_log_key:
            # Without a tracking log iMIS names the progress log: remember what existed before.
            original_key = str(kept.original["key"])
            state["known_log_keys"] = [log.key for log in self._api.find_billing_logs(original_key=original_key)]
        try:
            body = self._submit_body(run, view)
        except RunRefused as refused:
            return Decision(Finish(RunState.FAILED, ReasonCode.REBILL_REFUSED, str(refused)))
        return Decision(Send(REBILL, REBILL, body), state=state)

    def _judge(
        self, run: Run, kept: ImisKept, billing_log: BillingLog, steps: Mapping[str, Step]
    ) -> Send | Watch | Finish:
        status = billing_log.status
        described = f"BillingLog {billing_log.key} is {status.label} ({int(status)})"
        if status is BillingLogStatus.COMPLETED:
            return Finish(RunState.COMPLETED)
        if status in (BillingLogStatus.FAILED, BillingLogStatus.BATCH_DELETED):
            detail = f": {billing_log.information}" if billing_log.information else ""
            return Finish(RunState.FAILED, ReasonCode.BILLING_FAILED, f"{described}{detail}")
        if status is BillingLogStatus.UNPOSTED_BATCH and not kept.batch_posted and POST_BATCH not in steps:
            if not _options(run).post_unposted_batch:
                return Finish(
                    RunState.NEEDS_ATTENTION,
                    ReasonCode.AWAITING_OPERATOR,
                    f"{described}: post batch {billing_log.batch_id} in iMIS (posting was not enabled for this "
                    f"run), then `rebill retry {run.id}` to follow it to the end",
                )
            if billing_log.batch_id:
                return Send(POST_BATCH, POST_BATCH, {"batch_id": billing_log.batch_id})
        return Watch()

    def _verified(self, run: Run, view: FollowView, billing_log: BillingLog) -> list[tuple[int, ItemOutcome]]:
        """Native mode: the server reversed the invoices itself; read them back once it completed."""
        if billing_log.status is not BillingLogStatus.COMPLETED or _options(run).mode is not RunMode.NATIVE:
            return []
        chosen = _selector(run)
        planned_items = {item.invoice.invoice_id: item for item in view.items(states={ItemState.PENDING})}
        outcomes: list[tuple[int, ItemOutcome]] = []
        for page in self._api.iter_invoice_pages(chosen.billing_log, party_id=chosen.party_id):
            for invoice in page.invoices:
                item = planned_items.pop(invoice.invoice_id, None)
                if item is None:
                    continue
                if invoice.payment_amount or invoice.pending_payment_amount or invoice.balance > 0:
                    outcomes.append(
                        (item.id, ItemOutcome(ItemState.SKIPPED, reason="left open by the server-side task"))
                    )
                else:
                    outcomes.append((item.id, ItemOutcome(ItemState.REVERSED, settled_by_read=True)))
        for item in planned_items.values():
            outcomes.append((item.id, ItemOutcome(ItemState.SKIPPED, reason="no longer listed in the billing")))
        return outcomes

    def _discover_progress_log(self, kept: ImisKept) -> str | None:
        """Without a tracking log the server created one: the new log pointing at the original billing."""
        known = set(kept.known_log_keys or ())
        for found in self._api.find_billing_logs(original_key=str(kept.original["key"])):
            if found.key not in known:
                return found.key
        return None

    def send_step(self, run: Run, step: Step) -> StepResult:
        if step.kind == POST_BATCH:
            return self._post_batch(str(step.request["batch_id"]))
        task_id = self._api.submit_body(dict(step.request))
        kept = _kept(run)
        state = {"rebill_log_key": kept.tracking_log_key} if kept.tracking_log_key else {}
        return StepResult(Settlement.APPLIED, ref=task_id, state=state)

    def _post_batch(self, batch_id: str) -> StepResult:
        """Post the rebill's batch once: read its status first, so a lost reply never posts it twice."""
        if self._api.get_batch(batch_id).status is not BatchStatus.POSTED:
            self._api.post_batch(batch_id)
        return StepResult(Settlement.APPLIED, ref=batch_id, state={"batch_posted": True})

    def settle_step(self, run: Run, step: Step) -> StepResult:
        if step.kind == POST_BATCH:
            batch_id = str(step.request["batch_id"])
            if self._api.get_batch(batch_id).status is BatchStatus.POSTED:
                return StepResult(Settlement.APPLIED, ref=batch_id, state={"batch_posted": True})
            return StepResult(Settlement.NOT_APPLIED)
        log_key = self._sign_of_rebill(_kept(run))
        if log_key is None:
            return StepResult(Settlement.UNKNOWN)
        return StepResult(Settlement.APPLIED, state={"rebill_log_key": log_key})

    def _sign_of_rebill(self, kept: ImisKept) -> str | None:
        """Was the rebill applied although no reply came? Only the progress log can say."""
        try:
            if kept.tracking_log_key:
                tracking = self._api.get_billing_log(kept.tracking_log_key)
                moved = tracking.status is not BillingLogStatus.REVERSING or tracking.batch_id
                return kept.tracking_log_key if moved else None
            return self._discover_progress_log(kept)
        except (TransientProviderError, ProviderNotFound):
            return None

    def describe_follow_up(self, run: Run, view: FollowView) -> list[dict[str, Any]]:
        return [self._submit_body(run, view)]

    def _submit_body(self, run: Run, view: FollowView) -> dict[str, Any]:
        kept = _kept(run)
        options = _options(run)
        chosen = _selector(run)
        original = BillingLog.from_json(kept.original)
        rebill = Rebill(
            original=original,
            run_name=rebill_run_name(original.cycle_name, chosen.party_id),
            tracking_log_key=kept.tracking_log_key,
            auto_post_batch=options.automatically_post_batch,
            party_id=chosen.party_id,
        )
        reversal = self._native_reversal(run, view) if options.mode is RunMode.NATIVE else None
        return self._api.preview_submit(rebill=rebill, reversal=reversal)

    def _native_reversal(self, run: Run, view: FollowView) -> ServerSideReversal:
        """Native mode: the whole billing by key, or the single contact's planned invoices by id."""
        chosen = _selector(run)
        if chosen.party_id is None:
            return ServerSideReversal(billing_key=chosen.billing_log)
        options = _options(run)
        today = self._now().date()
        return ServerSideReversal(
            invoices=tuple(
                Reversal(
                    invoice_id=invoice.invoice_id,
                    invoice_number=invoice.number,
                    accounting_method=invoice.accounting_method,
                    adjustment_date=options.adjustment_date or today,
                    reason=options.adjustment_reason,
                    do_not_cancel_membership=options.do_not_cancel_membership,
                )
                for invoice in (_from_item(item) for item in view.items(states={ItemState.PENDING}))
            )
        )

    # --- operators ---------------------------------------------------------------------------------------

    def summarize(self, run: Run) -> Mapping[str, Any]:
        kept = _kept(run)
        chosen = _selector(run)
        return {
            "billing_log_key": chosen.billing_log,
            "billing_cycle": kept.original.get("cycle_name"),
            "party_id": chosen.party_id,
            "mode": _options(run).mode.value,
            "tracking_log_key": kept.tracking_log_key,
            "rebill_log_key": kept.rebill_log_key or (kept.tracking_log_key if _options(run).tracking_log else None),
            "batch_id": kept.batch_id,
            "batch_posted": kept.batch_posted,
        }

    def choose_scheduled(self, choice: Mapping[str, Any]) -> ScheduledSelection:
        """The latest completed original billing of a cycle (or the one named by its run name), unless
        the tenant shows it was already reverse-and-rebilled."""
        cycle, run_name = str(choice["cycle"]), choice.get("run_name")
        described = (
            f"the latest completed billing of cycle {cycle!r}"
            if run_name is None
            else f"the completed billing {run_name!r} of cycle {cycle!r}"
        )
        candidates = [
            found
            for found in self._api.billing_logs_of_cycle(cycle)
            if found.status is BillingLogStatus.COMPLETED
            and found.original_key is None  # a rebill's own log is the result, not something to redo
            and found.party_id is None
            and (run_name is None or found.run_name == run_name)
        ]
        if not candidates:
            return ScheduledSelection(None, reason=f"no billing found: {described} does not exist")
        billing = max(candidates, key=lambda found: (found.billing_date or _EPOCH, found.effective_date or _EPOCH))
        done = next(
            (
                f"billing {billing.key} ({billing.run_name or billing.cycle_name}) was already "
                f"reverse-and-rebilled on the tenant: completed BillingLog {other.key} "
                f"({other.run_name or other.cycle_name}) points at it"
                for other in self._api.find_billing_logs(original_key=billing.key)
                if other.status is BillingLogStatus.COMPLETED
            ),
            None,
        )
        return ScheduledSelection({"billing_log": billing.key}, key=billing.key, done_on_platform=done)

    def check(self) -> str:
        return self._api.describe_tenant()


def _kept(run: Run) -> ImisKept:
    return ImisKept.model_validate(dict(run.provider_state))


def _options(run: Run) -> ImisOptions:
    return ImisOptions.model_validate(dict(run.provider_options))


def _selector(run: Run) -> ImisSelector:
    return ImisSelector.model_validate(dict(run.selection.selector))


def _settle_by_reading(current: ImisInvoice) -> ItemOutcome | None:
    """After an unknown outcome: what the invoice says now, or None when it is still to reverse."""
    if current.payment_amount or current.pending_payment_amount:
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.PAID_SINCE_PLANNING.value, settled_by_read=True)
    if current.balance <= 0:
        return ItemOutcome(
            ItemState.REVERSED,
            reason="confirmed reversed by reading the invoice after an unknown outcome",
            settled_by_read=True,
        )
    return None


def _why_not_reversible(current: ImisInvoice, item: Item) -> ItemOutcome:
    if current.payment_amount or current.pending_payment_amount:
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.PAID_SINCE_PLANNING.value)
    if current.balance <= 0:
        if item.claimed_before:
            return ItemOutcome(
                ItemState.REVERSED,
                reason="confirmed reversed by reading the invoice after an unknown outcome",
                settled_by_read=True,
            )
        return ItemOutcome(ItemState.SKIPPED, reason=SkipReason.REVERSED_OUTSIDE_RUN.value)
    return ItemOutcome(
        ItemState.FAILED,
        reason="the platform says it cannot be reversed although it is open with no payments",
    )


if TYPE_CHECKING:
    from orchestrator.services.ports import BillingProvider

    def _conforms_to_the_port(provider: ImisProvider) -> BillingProvider:
        return provider  # mypy proves ImisProvider satisfies BillingProvider
