"""The reverse-and-rebill task (`TaskDefinition/_execute` TaskAdhocRequest), run in the background.

`TaskRunner.submit` checks the request (`BadRequest`, or `Conflict` while another task runs on the
named billing log), records the task and starts it on a daemon thread. Its progress billing log (the
one the request names, else a new one) walks these statuses, one step every `task_step_seconds`:

    5 REVERSING        (with a reverse action) every open, unpaid invoice of the original billing, or
                       each listed one, is reversed; a refusal is recorded on the task and counted
    1 PROCESSING       the bill run: an Open batch is on the log, then filled with one draft per party
                       to bill again (Ready)
    2 COMPLETED        the batch was posted (automatically, or later by BatchSummary Post)
    4 UNPOSTED_BATCH   the batch waits for BatchSummary Post

`Faults.rebill_outcome` may end the bill run otherwise: "fail" at 3 FAILED (the batch's PostingError
set), "batch_deleted" at 6 BATCH_DELETED, "stall" leaves it at 1 for good. A task with a reverse
action only has no progress log; closing the state cancels the tasks where they are.

Who is billed again: with an original billing, each party billed in it whose every invoice there
was reversed (a party with a paid invoice left as-is is not); for one party, that party; otherwise
everyone billed in the cycle who owes nothing in it. Each gets the products of their invoices in the
original billing, else of their latest invoice of the cycle (else dues of 250.00).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from simulators.imis.commands import BillGeneration, ReverseAction, TaskRequest
from simulators.imis.entities import (
    BATCH_DELETED,
    CASH,
    FAILED,
    PROCESSING,
    REVERSING,
    UNPOSTED_BATCH,
    Batch,
    BillingLog,
    Invoice,
    InvoiceDraft,
    Line,
    TaskRecord,
)
from simulators.imis.errors import BadRequest, Conflict, Refused
from simulators.imis.store import TaskStore


class TaskRunner:
    """Runs the tasks of one state, each on its own daemon thread, under the state's lock."""

    def __init__(self, state: TaskStore) -> None:
        self._state = state
        self._stop = threading.Event()

    def submit(self, request: TaskRequest) -> str:
        """Validate and start a reverse-and-rebill task in the background; returns its TaskLogId."""
        state = self._state
        with state.lock:
            if request.reverse is None and request.generate is None:
                raise BadRequest("The task has no actions.", "Actions")
            original_key = self._validate(request)
            task = TaskRecord(state.new_guid(), request, None, original_key)
            gen = request.generate
            if gen is not None:
                log = self._progress_log(gen, original_key, REVERSING if request.reverse else PROCESSING)
                task.progress_log_key = log.key
                log.information = None
                if request.reverse is None:
                    self._start_generation(task)
                task.rebill = {
                    "task_log_id": task.task_log_id,
                    "original_key": gen.original_key or original_key,
                    "progress_log_key": log.key,
                    "party_id": gen.party_id,
                    "auto_post": gen.auto_post,
                    "with_reverse_action": request.reverse is not None,
                    "invoices_created": 0,
                    "outcome": None,
                }
                state.count_rebill(task.rebill)
            state.tasks[task.task_log_id] = task
            thread = threading.Thread(
                target=self._run, args=(task,), name=f"imis-task-{task.task_log_id[:8]}", daemon=True
            )
            task.thread = thread
            thread.start()
            return task.task_log_id

    def stop(self) -> None:
        """Cancel every task at its next step (the thread ends; its status becomes Cancelled)."""
        self._stop.set()

    def resume(self) -> None:
        """Let tasks submitted from now on run again."""
        self._stop.clear()

    def wait(self, timeout: float | None = 10.0) -> bool:
        """Join every task thread; True when none is still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state.lock:
            threads = [t.thread for t in self._state.tasks.values() if t.thread is not None]
        for thread in threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        return not any(t.is_alive() for t in threads)

    # ---------------------------------------------------------------- validation

    def _validate(self, request: TaskRequest) -> str | None:
        """Raise BadRequest for a malformed task; return the original billing's key (if any)."""
        state = self._state
        original_key: str | None = None
        rev = request.reverse
        if rev is not None:
            if (rev.original_key is None) == (not rev.invoice_ids):
                raise BadRequest(
                    "ReverseInvoice needs either OriginalBillingLogKey or ListOfInvoiceActionDuesReversalData, "
                    "not both and not neither.",
                    "OriginalBillingLogKey",
                )
            if rev.original_key is not None:
                original_key = self._known_log(rev.original_key, "OriginalBillingLogKey").key
            for invoice_id in rev.invoice_ids:
                invoice = state.invoices.get(invoice_id)
                if invoice is None:
                    raise BadRequest(f"Invoice '{invoice_id}' was not found.", "ListOfInvoiceActionDuesReversalData")
                original_key = original_key or invoice.billing_log_key
        gen = request.generate
        if gen is not None:
            if not gen.cycle_name:
                raise BadRequest("BillGenerationData.BillingCycleId is required.", "BillingCycleId")
            if not any(log.cycle_name == gen.cycle_name for log in state.billing_logs.values()):
                raise BadRequest(f"Billing cycle '{gen.cycle_name}' was not found.", "BillingCycleId")
            if gen.original_key is not None:
                original = self._known_log(gen.original_key, "AdditionalOption.OriginalBillingLogKey")
                if rev is not None and rev.original_key is not None and rev.original_key.lower() != original.key:
                    raise BadRequest(
                        "ReverseInvoice.OriginalBillingLogKey and AdditionalOption.OriginalBillingLogKey differ.",
                        "OriginalBillingLogKey",
                    )
                if original.cycle_name != gen.cycle_name:
                    raise BadRequest(
                        f"BillingCycleId '{gen.cycle_name}' is not the cycle of the original billing "
                        f"('{original.cycle_name}').",
                        "BillingCycleId",
                    )
                original_key = original.key
            if gen.party_id is not None and gen.party_id not in state.parties:
                raise BadRequest(f"Contact '{gen.party_id}' was not found.", "IndividualBillingPartyId")
            if gen.billing_log_key is not None:
                busy = [
                    t
                    for t in state.tasks.values()
                    if t.progress_log_key == gen.billing_log_key.lower() and t.status == "Running"
                ]
                if busy:
                    raise Conflict(
                        f"BillingLog {gen.billing_log_key} is in use by task {busy[0].task_log_id}.",
                        "BillingLogKey",
                    )
        return original_key

    def _known_log(self, key: str, field_name: str) -> BillingLog:
        log = self._state.billing_logs.get(key.lower())
        if log is None:
            raise BadRequest(f"BillingLog '{key}' was not found.", field_name)
        return log

    def _progress_log(self, gen: BillGeneration, original_key: str | None, status: int) -> BillingLog:
        """The log the task reports progress on (the named one, else a new one), set to `status`."""
        state = self._state
        original = state.billing_logs.get(original_key) if original_key else None
        if gen.billing_log_key is not None:
            existing = state.billing_logs.get(gen.billing_log_key.lower())
            if existing is not None:
                if existing.original_key is None:
                    existing.original_key = original_key
                state.set_status(existing, status)
                return existing
        method = original.accounting_method if original else self._cycle_method(gen.cycle_name)
        return state.add_billing_log(
            BillingLog(
                key=(gen.billing_log_key or state.new_guid()).lower(),
                cycle_name=gen.cycle_name,
                status=status,
                seq=state.next_seq(),
                run_name=gen.run_name,
                billing_type="I" if gen.party_id else "A",
                billing_date=datetime.now(UTC),
                effective_date=gen.effective_date or (original.effective_date if original else None),
                accounting_method=method,
                party_id=gen.party_id,
                auto_pay_option=gen.auto_pay_option,
                original_key=original_key,
            )
        )

    def _cycle_method(self, cycle_name: str) -> int:
        for log in self._state.billing_logs.values():
            if log.cycle_name == cycle_name:
                return log.accounting_method
        return CASH

    # ---------------------------------------------------------------- the steps

    def _run(self, task: TaskRecord) -> None:
        request = task.request
        lock = self._state.lock
        try:
            if request.reverse is not None:
                if self._stop.wait(self._state.faults.settings.task_step_seconds):
                    task.status = "Cancelled"
                    return
                with lock:
                    self._reverse(task, request.reverse)
                    if request.generate is None:
                        task.status = "Completed"
                        return
                    self._start_generation(task)
            if request.generate is not None:
                if self._stop.wait(self._state.faults.settings.task_step_seconds):
                    task.status = "Cancelled"
                    return
                with lock:
                    self._generate(task, request.generate)
        except Exception as exc:  # pragma: no cover - a bug in the simulator; make it visible
            task.status = "Crashed"
            task.refused.append({"invoice_id": "", "message": f"simulator error: {exc!r}"})
            raise

    def _reverse(self, task: TaskRecord, action: ReverseAction) -> None:
        state = self._state
        if action.original_key is not None:
            targets = [i for i in state.invoices_of(action.original_key) if i.is_open_unpaid]
        else:
            targets = [state.invoices[i] for i in action.invoice_ids]
        for invoice in targets:
            try:
                state.reverse_open_invoice(invoice, "ReverseInvoice")
            except Refused as exc:
                task.refused.append({"invoice_id": invoice.invoice_id, "message": exc.message})
                continue
            task.reversed_invoice_ids.append(invoice.invoice_id)

    def _start_generation(self, task: TaskRecord) -> None:
        """Status 1, and an Open batch that the bill run fills (BatchId is on the log from now on)."""
        state = self._state
        log = state.billing_logs[task.progress_log_key or ""]
        state.set_status(log, PROCESSING)
        batch = Batch(state.new_batch_id(), log.key, "Open")
        state.batches[batch.batch_id] = batch
        log.batch_id = batch.batch_id
        task.batch_id = batch.batch_id

    def _generate(self, task: TaskRecord, gen: BillGeneration) -> None:
        state = self._state
        log = state.billing_logs[task.progress_log_key or ""]
        batch = state.batches[task.batch_id or ""]
        outcome = state.faults.settings.rebill_outcome
        rebill = task.rebill or {}
        rebill["outcome"] = outcome
        if outcome == "stall":  # the log stays at 1 and the batch Open, forever
            task.status = "Stalled"
            return
        if outcome == "fail":
            reason = "Billing failed: the bill generation process stopped (simulated)."
            batch.posting_error = reason
            state.set_status(log, FAILED, reason)
            task.status = "Failed"
            return
        batch.drafts = self._rebill_drafts(gen, task.original_key, log)
        batch.status = "Ready"
        if outcome == "batch_deleted":
            batch.status = "Deleted"
            state.set_status(log, BATCH_DELETED, f"Batch {batch.batch_id} was deleted without invoices being created.")
            task.status = "BatchDeleted"
            return
        if gen.auto_post:
            state.post_batch(batch.batch_id)
            task.status = "Completed"
        else:
            state.set_status(log, UNPOSTED_BATCH, f"Batch {batch.batch_id} must be posted.")
            task.status = "AwaitingPost"

    def _rebill_drafts(self, gen: BillGeneration, original_key: str | None, log: BillingLog) -> list[InvoiceDraft]:
        """Who gets a new renewal invoice, and for what (the products of their reference invoices)."""
        state = self._state
        reference: dict[str, list[Invoice]] = {}
        if original_key is not None:
            for invoice in state.invoices_of(original_key):
                reference.setdefault(invoice.bill_to, []).append(invoice)
        if gen.original_key is not None:
            # Only IDs billed in the original billing, and only those whose invoices there were all
            # reversed (a party with a paid or part-paid invoice left as-is is not billed again).
            parties = [p for p, invoices in reference.items() if invoices and all(i.reversed for i in invoices)]
        elif gen.party_id is not None:
            parties = [gen.party_id]
        else:
            # An unrestricted renewal run: everyone billed in this cycle who owes nothing in it.
            owing: set[str] = set()
            seen: dict[str, None] = {}
            for other in state.billing_logs.values():
                if other.cycle_name != gen.cycle_name or other.key == log.key:
                    continue
                for invoice in state.invoices_of(other.key):
                    seen.setdefault(invoice.bill_to)
                    if not invoice.reversed and invoice.balance > 0:
                        owing.add(invoice.bill_to)
            parties = [p for p in seen if p not in owing]
        if gen.party_id is not None:
            parties = [p for p in parties if p == gen.party_id]
        effective = gen.effective_date or log.effective_date or datetime.now(UTC)
        drafts = []
        for party in parties:
            lines = [line for invoice in reference.get(party, []) for line in invoice.lines]
            if not lines:
                lines = self._latest_cycle_lines(party, gen.cycle_name)
            drafts.append(
                InvoiceDraft(
                    party,
                    tuple(Line(x.product_code, x.description, x.unit_price, x.quantity) for x in lines),
                    log.accounting_method,
                    f"{gen.cycle_name} {effective:%Y} (rebill)",
                    effective,
                )
            )
        return drafts

    def _latest_cycle_lines(self, party: str, cycle_name: str) -> list[Line]:
        state = self._state
        for invoice in reversed(list(state.invoices.values())):
            log = state.billing_logs.get(invoice.billing_log_key or "")
            if invoice.bill_to == party and log is not None and log.cycle_name == cycle_name:
                return invoice.lines
        return [Line("DUES", "Membership dues", Decimal("250.00"))]
