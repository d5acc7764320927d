"""The simulated iMIS tenant: the store of its entities, its lock, and its rules; no HTTP.

Like moto's `models.py`, this module knows nothing about requests or JSON; `wire.py` renders and
parses, `app.py` routes. Everything is guarded by one re-entrant lock (`ImisState.lock`): the
objects the getters return are live, so read them while holding it. The methods without a lock of
their own (`add_invoice`, `set_status`...) are for the seeding and the task runner, which hold it.

Business rules in short:
- An invoice is *open with no payments* when nothing is paid or pending and the balance equals the
  invoice amount and is above zero; only those can be reversed.
- A reversal sets the balance to zero and marks the invoice reversed. A second reversal of the same
  invoice is refused (and counted), so is a reversal of an invoice with any payment or pending
  payment, and the cash operation on an accrual invoice (or the reverse).
- Posting a Ready batch creates its invoices and completes its billing log (Status 2) and its task.

The parts it is built from: `entities.py` (what it stores), `commands.py` (what it is asked),
`errors.py` (how it refuses), `filters.py` (the list queries), `seeding.py` with `examples.py` (seed
data), `tasks.py` (the reverse-and-rebill task, walking its billing log 5 -> 1 -> 2 in the background);
those two see this class only through the protocols of `store.py`, so they need not import it.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from simulators.common.counters import RequestCounters
from simulators.imis import seeding
from simulators.imis.commands import REVERSAL_OPERATIONS, InvoiceAction, LineAdjustment, TaskRequest
from simulators.imis.entities import (
    ACCRUAL,
    CASH,
    CENT,
    COMPLETED,
    ZERO,
    Batch,
    BillingLog,
    Invoice,
    Line,
    Party,
    Source,
    TaskRecord,
    guid,
)
from simulators.imis.errors import BadRequest, Conflict, InvalidGrant, NotFound, Refused
from simulators.imis.faults import FaultInjector, Faults
from simulators.imis.filters import BILLING_LOG_FILTERS, INVOICE_FILTERS, Filter, apply_filters
from simulators.imis.tasks import TaskRunner


class ImisState:
    """One simulated iMIS tenant. Thread-safe; background tasks run in daemon threads."""

    def __init__(
        self,
        username: str = "admin",
        password: str = "secret",  # noqa: S107 - the simulator's documented default login
        faults: Faults | None = None,
        rng_seed: int = 0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.rng_seed = rng_seed
        self.faults = FaultInjector(faults, rng or random.Random(rng_seed))
        self.lock = threading.RLock()
        self.traffic = RequestCounters()
        self._runner = TaskRunner(self)
        self._init_entities()
        self._init_counters()
        self._tokens: dict[str, float] = {}

    def _init_entities(self) -> None:
        self._ids = random.Random(f"imis-ids:{self.rng_seed}")
        self._seq = 0
        self._next_number = 500_000
        self._next_batch = 1
        self.parties: dict[str, Party] = {}
        self.invoices: dict[str, Invoice] = {}
        self._by_number: dict[int, Invoice] = {}
        self._by_log: dict[str, list[Invoice]] = {}
        self.billing_logs: dict[str, BillingLog] = {}
        self.batches: dict[str, Batch] = {}
        self.tasks: dict[str, TaskRecord] = {}

    def _init_counters(self) -> None:
        self._reversals: Counter[str] = Counter()
        self._refused_second = 0
        self._refused = 0
        self._rebills: list[dict[str, Any]] = []
        self._tokens_issued = 0

    # ---------------------------------------------------------------- lifecycle

    def close(self, timeout: float = 5.0) -> None:
        """Stop background tasks (they end where they are) and join their threads."""
        self._runner.stop()
        self.wait_for_tasks(timeout)

    def __enter__(self) -> ImisState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for_tasks(self, timeout: float | None = 10.0) -> bool:
        """Join every background task thread; True when none is still running."""
        return self._runner.wait(timeout)

    def reset(self) -> None:
        """Forget every entity and counter (tokens and fault settings are kept)."""
        self.close()
        with self.lock:
            self._init_entities()
            self.reset_counters()
            self._runner.resume()

    # ---------------------------------------------------------------- the store (callers hold the lock)

    def next_seq(self) -> int:
        """The next creation sequence number (every log and invoice takes one)."""
        self._seq += 1
        return self._seq

    def new_guid(self) -> str:
        with self.lock:
            return guid(self._ids)

    def _allocate_number(self) -> int:
        while self._next_number in self._by_number:
            self._next_number += 1
        number = self._next_number
        self._next_number += 1
        return number

    def ensure_party(self, party_id: str, name: str | None = None) -> Party:
        """The party, created (named `name`, else "Contact <id>") if it does not exist yet."""
        party = self.parties.get(party_id)
        if party is None:
            party = Party(party_id, name or f"Contact {party_id}")
            self.parties[party_id] = party
        return party

    def add_invoice(self, invoice: Invoice) -> Invoice:
        """Store and index the invoice; Conflict when its id or its number is taken."""
        if invoice.invoice_id in self.invoices:
            raise Conflict(f"Invoice {invoice.invoice_id} already exists")
        if invoice.number in self._by_number:
            raise Conflict(f"Invoice number {invoice.number} already exists")
        self.invoices[invoice.invoice_id] = invoice
        self._by_number[invoice.number] = invoice
        if invoice.billing_log_key is not None:
            self._by_log.setdefault(invoice.billing_log_key, []).append(invoice)
        return invoice

    def add_billing_log(self, log: BillingLog, at: datetime | None = None) -> BillingLog:
        """Store the log, its status recorded in its history `at` (default now); Conflict on a taken key."""
        if log.key in self.billing_logs:
            raise Conflict(f"A billing log with BillingLogKey {log.key} already exists", "BillingLogKey")
        log.history.append((log.status, at or datetime.now(UTC)))
        self.billing_logs[log.key] = log
        return log

    def set_status(self, log: BillingLog, status: int, information: str | None = None) -> None:
        """Move the log to `status` (its history records each change), with `information` if given."""
        log.status = status
        if information is not None:
            log.information = information
        if not log.history or log.history[-1][0] != status:
            log.history.append((status, datetime.now(UTC)))

    def invoices_of(self, billing_log_key: str) -> Sequence[Invoice]:
        """The invoices of a billing, in creation order (live: do not change the sequence)."""
        return self._by_log.get(billing_log_key.lower(), [])

    def new_batch_id(self) -> str:
        batch_id = f"BATCH-{self._next_batch:06d}"
        self._next_batch += 1
        return batch_id

    # ---------------------------------------------------------------- auth

    def issue_token(self, username: str, password: str) -> tuple[str, float]:
        """Returns (access_token, lifetime seconds); raises InvalidGrant."""
        if not secrets.compare_digest(username.encode(), self.username.encode()) or not (
            secrets.compare_digest(password.encode(), self.password.encode())
        ):
            raise InvalidGrant("The user name or password is incorrect.")
        lifetime = self.faults.settings.token_lifetime_seconds
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self.lock:
            if len(self._tokens) > 10_000:
                self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
            self._tokens[token] = now + lifetime
            self._tokens_issued += 1
        return token, lifetime

    def token_valid(self, token: str) -> bool:
        expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def expire_tokens(self) -> int:
        """Make every issued token invalid (the next call gets 401); returns how many there were."""
        with self.lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count

    # ---------------------------------------------------------------- counters

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self.traffic.snapshot(),
                "reversals": {k: v for k, v in self._reversals.items() if v > 0},
                "refused_second_reversals": self._refused_second,
                "refused_reversals": self._refused,
                "rebills": [dict(r) for r in self._rebills],
                "tokens_issued": self._tokens_issued,
            }

    def reset_counters(self) -> None:
        """Zero the counters and the concurrency peak; entities are kept."""
        with self.lock:
            self.traffic.reset()
            self._init_counters()

    # ---------------------------------------------------------------- seeding (seeding.py)

    # The seeding functions, called as methods: `state.seed_billing(invoices=2000, seed=1)`.
    seed_billing = seeding.seed_billing
    seed_examples = seeding.seed_examples

    # ---------------------------------------------------------------- reads

    def invoice(self, invoice_id: str) -> Invoice:
        with self.lock:
            found = self.invoices.get(invoice_id)
            if found is None:
                raise NotFound(f"Invoice '{invoice_id}' was not found.")
            return found

    def invoice_by_number(self, number: int) -> Invoice:
        with self.lock:
            found = self._by_number.get(number)
            if found is None:
                raise NotFound(f"No invoice has the reference number {number}.")
            return found

    def invoice_id_for_number(self, number: int) -> str | None:
        found = self._by_number.get(number)
        return None if found is None else found.invoice_id

    def billing_log(self, key: str) -> BillingLog:
        with self.lock:
            found = self.billing_logs.get(key) or self.billing_logs.get(key.lower())
            if found is None:
                raise NotFound(f"BillingLog '{key}' was not found.")
            return found

    def batch(self, batch_id: str) -> Batch:
        with self.lock:
            found = self.batches.get(batch_id)
            if found is None or found.status == "Deleted":
                raise NotFound(f"Batch '{batch_id}' was not found.")
            return found

    def find_invoices(
        self, filters: Sequence[Filter] = (), offset: int = 0, limit: int | None = None
    ) -> tuple[list[Invoice], int]:
        """Invoices matching every filter, in creation order: (page, total count)."""
        with self.lock:
            candidates: Iterable[Invoice] = self.invoices.values()
            rest = list(filters)
            for flt in filters:
                if flt.field.lower() == "billinglogkey" and flt.operation == "eq":
                    candidates = self._by_log.get(flt.values[0].lower(), [])
                    rest.remove(flt)  # answered by the index
                    break
            matched = apply_filters(candidates, rest, INVOICE_FILTERS, "InvoiceSummary")
            end = None if limit is None else offset + limit
            return matched[offset:end], len(matched)

    def find_billing_logs(
        self, filters: Sequence[Filter] = (), offset: int = 0, limit: int | None = None
    ) -> tuple[list[BillingLog], int]:
        with self.lock:
            matched = apply_filters(self.billing_logs.values(), filters, BILLING_LOG_FILTERS, "BillingLog")
            end = None if limit is None else offset + limit
            return matched[offset:end], len(matched)

    def billing_log_history(self, key: str) -> list[tuple[int, datetime]]:
        with self.lock:
            return list(self.billing_log(key).history)

    def dump_invoices(self, billing_log_key: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            if billing_log_key is None:
                return [i.dump() for i in self.invoices.values()]
            return [i.dump() for i in self._by_log.get(billing_log_key.lower(), [])]

    # ---------------------------------------------------------------- writes: billing logs, payments

    def create_billing_log(self, log: BillingLog) -> BillingLog:
        """POST /api/BillingLog: keeps a client-provided key, else generates one; 409 on a duplicate."""
        with self.lock:
            if not log.key:
                log.key = guid(self._ids)
            log.key = log.key.lower()
            log.seq = self.next_seq()
            if log.billing_date is None:
                log.billing_date = datetime.now(UTC)
            return self.add_billing_log(log)

    def apply_payment(self, invoice_id: str, amount: Decimal, *, pending: bool = False) -> Invoice:
        """Record a (pending) payment, e.g. one made after the client planned its run."""
        with self.lock:
            invoice = self.invoice(invoice_id)
            if invoice.reversed:
                raise Refused(f"Invoice {invoice_id} has been reversed; it cannot take payments.")
            if amount <= 0:
                raise BadRequest("amount must be positive", "amount")
            amount = amount.quantize(CENT)
            if pending:
                invoice.pending_payment_amount += amount
            else:
                invoice.payment_amount += amount
            invoice.record({"operation": "Payment", "amount": str(amount), "pending": pending})
            return invoice

    # ---------------------------------------------------------------- Invoice/_execute

    def can_cash_invoice_be_reversed(self, invoice_id: str) -> bool:
        with self.lock:
            invoice = self.invoice(invoice_id)
            return invoice.accounting_method == CASH and invoice.source == Source.DUES and invoice.is_open_unpaid

    def can_invoice_be_reversed(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.accounting_method == ACCRUAL and invoice.source == Source.DUES and invoice.is_open_unpaid

    def can_order_invoice_be_adjusted(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.source == Source.ORDER and not invoice.reversed

    def can_dues_invoice_be_adjusted(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.source == Source.DUES and not invoice.reversed and not invoice.written_off

    def can_invoice_be_refunded(self, number: int) -> bool:
        with self.lock:
            invoice = self.invoice_by_number(number)
            return invoice.accounting_method == ACCRUAL and invoice.balance < 0

    def reverse_open_invoice(self, invoice: Invoice, operation: str, action: InvoiceAction | None = None) -> None:
        """Reverse the invoice if it is open with no payments, else raise Refused (counted); `operation`
        names the reversal in the invoice's events."""
        with self.lock:
            try:
                self._check_reversible(invoice)
            except Refused:
                self._refused += 1
                raise
            self._reverse(invoice, operation, action)

    def _check_reversible(self, invoice: Invoice) -> None:
        if invoice.reversed:
            self._refused_second += 1
            raise Refused(f"Invoice {invoice.invoice_id} has already been reversed.")
        if invoice.payment_amount != 0:
            raise Refused(f"Invoice {invoice.invoice_id} cannot be reversed because payments have been applied to it.")
        if invoice.pending_payment_amount != 0:
            raise Refused(f"Invoice {invoice.invoice_id} cannot be reversed because it has pending payments.")
        if invoice.balance <= 0 or invoice.balance != invoice.amount:
            raise Refused(f"Invoice {invoice.invoice_id} has no open balance to reverse.")

    def _reverse(self, invoice: Invoice, operation: str, action: InvoiceAction | None) -> None:
        amount = invoice.balance
        invoice.credit_amount += amount
        invoice.reversed = True
        for scheduled in invoice.schedule:
            scheduled.reversed = True
        self._reversals[invoice.invoice_id] += 1
        invoice.record(_event(operation, action, amount=-amount))

    def reverse_invoice(self, operation: str, action: InvoiceAction) -> None:
        """ProcessCashReversal / ProcessAccrualReversal / ProcessOrderReversal /
        ProcessFundraisingReversal; raises Refused."""
        with self.lock:
            try:
                invoice = self.invoice(action.invoice_id)
            except NotFound as exc:
                self._refused += 1
                raise Refused(exc.message) from None
            try:
                self._check_kind_for_reversal(invoice, operation)
                partial = action.scheduled_payment_id is not None and not action.reverse_all
                if operation == "ProcessFundraisingReversal" and partial:
                    self._reverse_scheduled_payment(invoice, action)
                    return
            except Refused:
                self._refused += 1
                raise
            self.reverse_open_invoice(invoice, operation, action)

    def _check_kind_for_reversal(self, invoice: Invoice, operation: str) -> None:
        iid = invoice.invoice_id
        if operation == "ProcessCashReversal":
            if invoice.accounting_method != CASH:
                raise Refused(f"Invoice {iid} is an accrual invoice; use ProcessAccrualReversal.")
            if invoice.source != Source.DUES:
                raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
        elif operation == "ProcessAccrualReversal":
            if invoice.accounting_method != ACCRUAL:
                raise Refused(f"Invoice {iid} is a cash invoice; use ProcessCashReversal.")
            if invoice.source != Source.DUES:
                raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
        elif operation == "ProcessOrderReversal":
            if invoice.source != Source.ORDER:
                raise Refused(f"Invoice {iid} is not a commerce order invoice.")
        elif operation == "ProcessFundraisingReversal" and invoice.source != Source.FUNDRAISING:
            raise Refused(f"Invoice {iid} is not a fundraising invoice.")

    def _reverse_scheduled_payment(self, invoice: Invoice, action: InvoiceAction) -> None:
        if invoice.reversed:
            self._refused_second += 1
            raise Refused(f"Invoice {invoice.invoice_id} has already been reversed.")
        wanted = action.scheduled_payment_id
        scheduled = next((s for s in invoice.schedule if s.scheduled_payment_id == wanted), None)
        if scheduled is None:
            raise Refused(f"Invoice {invoice.invoice_id} has no scheduled payment '{wanted}'.")
        if scheduled.reversed:
            raise Refused(f"Scheduled payment {wanted} of invoice {invoice.invoice_id} is already reversed.")
        if invoice.balance < scheduled.amount:
            raise Refused(f"Scheduled payment {wanted} has already been paid.")
        scheduled.reversed = True
        invoice.credit_amount += scheduled.amount
        if all(s.reversed for s in invoice.schedule):
            invoice.reversed = True
            self._reversals[invoice.invoice_id] += 1
        invoice.record(_event("ProcessFundraisingReversal", action, amount=-scheduled.amount))

    def write_off(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.reversed:
                raise Refused(f"Invoice {invoice.invoice_id} has been reversed.")
            if invoice.balance <= 0:
                raise Refused(f"Invoice {invoice.invoice_id} has no balance to write off.")
            amount = invoice.balance
            invoice.credit_amount += amount
            invoice.written_off = True
            invoice.record(_event("ProcessWriteOff", action, amount=-amount))

    def record_refund(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            amount = action.refund_amount
            if amount is None or amount <= 0:
                raise Refused("RefundAmount must be a positive amount.")
            if not action.payment_method_id:
                raise Refused("PaymentMethodId is required for a refund.")
            if invoice.payment_amount < amount:
                raise Refused(
                    f"Invoice {invoice.invoice_id} has {invoice.payment_amount} in payments; "
                    f"{amount} cannot be refunded."
                )
            invoice.payment_amount -= amount
            invoice.refunded_amount += amount
            invoice.record(_event("ProcessRecordRefund", action, amount=amount))

    def adjust_invoice(self, operation: str, action: InvoiceAction) -> None:
        """ProcessCashAdjustment / ProcessAccrualAdjustment / ProcessOrderAdjustment."""
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            iid = invoice.invoice_id
            if operation == "ProcessOrderAdjustment":
                if invoice.source != Source.ORDER:
                    raise Refused(f"Invoice {iid} is not a commerce order invoice.")
            else:
                if invoice.source != Source.DUES:
                    raise Refused(f"Invoice {iid} is not a dues invoice ({invoice.source.value}).")
                wanted = CASH if operation == "ProcessCashAdjustment" else ACCRUAL
                if invoice.accounting_method != wanted:
                    other = "ProcessAccrualAdjustment" if wanted == CASH else "ProcessCashAdjustment"
                    kind = "an accrual" if wanted == CASH else "a cash"
                    raise Refused(f"Invoice {iid} is {kind} invoice; use {other}.")
            if invoice.reversed:
                raise Refused(f"Invoice {iid} has been reversed and cannot be adjusted.")
            if not action.lines and action.new_shipping is None and action.new_handling is None:
                raise Refused("No adjustments were given.")
            before = invoice.amount
            new_lines = [Line(x.product_code, x.description, x.unit_price, x.quantity) for x in invoice.lines]
            for adj in action.lines:
                _adjust_lines(new_lines, adj, iid)
            shipping, handling = invoice.shipping, invoice.handling
            if action.new_shipping is not None:
                _check_original("OriginalShipping", action.original_shipping, shipping)
                shipping = action.new_shipping
            if action.new_handling is not None:
                _check_original("OriginalHandling", action.original_handling, handling)
                handling = action.new_handling
            invoice.lines, invoice.shipping, invoice.handling = new_lines, shipping, handling
            invoice.record(_event(operation, action, amount=invoice.amount - before))

    def adjust_fundraising(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.source != Source.FUNDRAISING:
                raise Refused(f"Invoice {invoice.invoice_id} is not a fundraising invoice.")
            if invoice.reversed:
                raise Refused(f"Invoice {invoice.invoice_id} has been reversed and cannot be adjusted.")
            invoice.record(_event("ProcessFundraisingAdjustment", action, amount=ZERO))

    def update_event_bill_to(self, action: InvoiceAction) -> None:
        with self.lock:
            invoice = self._invoice_or_refuse(action.invoice_id)
            if invoice.source != Source.EVENT:
                raise Refused(f"Invoice {invoice.invoice_id} is not an event invoice.")
            new_id = action.new_bill_to_id
            if not new_id or new_id not in self.parties:
                raise Refused(f"Contact '{new_id}' was not found.")
            old = invoice.bill_to
            invoice.bill_to = new_id
            invoice.record(_event("UpdateEventInvoiceBillToId", action, amount=ZERO) | {"from": old, "to": new_id})

    def _invoice_or_refuse(self, invoice_id: str) -> Invoice:
        try:
            return self.invoice(invoice_id)
        except NotFound as exc:
            raise Refused(exc.message) from None

    def refuse_by_fault(self, operation: str, invoice_id: str) -> Refused:
        """`fail_invoices[...] == "refuse"`: the refusal to answer (counted like a real one)."""
        with self.lock:
            if operation in REVERSAL_OPERATIONS:
                self._refused += 1
        return Refused(f"Invoice {invoice_id} cannot be processed at this time (simulated refusal).")

    # ---------------------------------------------------------------- TaskDefinition/_execute (tasks.py)

    def submit_task(self, request: TaskRequest) -> str:
        """Validate and start a reverse-and-rebill task in the background; returns its TaskLogId."""
        return self._runner.submit(request)

    def count_rebill(self, rebill: dict[str, Any]) -> None:
        """Count a bill-generation task in the counters; the runner keeps `rebill` up to date."""
        self._rebills.append(rebill)

    # ---------------------------------------------------------------- batches

    def post_batch(self, batch_id: str) -> Batch:
        """BatchSummary Post: create the batch's invoices; raises Refused."""
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch.status == "Deleted":
                raise Refused(f"Batch '{batch_id}' was not found.")
            if batch.status == "Posted":
                raise Refused(f"Batch '{batch_id}' has already been posted.")
            if batch.status != "Ready":
                raise Refused(f"Batch '{batch_id}' is not ready to be posted ({batch.status}).")
            self._post(batch)
            return batch

    def _post(self, batch: Batch) -> None:
        now = datetime.now(UTC)
        for draft in batch.drafts:
            number = self._allocate_number()
            invoice = self.add_invoice(
                Invoice(
                    invoice_id=str(number),
                    number=number,
                    accounting_method=draft.accounting_method,
                    source=Source.DUES,
                    bill_to=draft.party_id,
                    sold_to=draft.party_id,
                    lines=[Line(x.product_code, x.description, x.unit_price, x.quantity) for x in draft.lines],
                    billing_log_key=batch.billing_log_key,
                    invoice_date=now,
                    due_date=draft.effective_date,
                    description=draft.description,
                    seq=self.next_seq(),
                )
            )
            batch.invoice_ids.append(invoice.invoice_id)
        batch.status = "Posted"
        batch.posted_at = now
        log = self.billing_logs.get(batch.billing_log_key or "")
        if log is not None:
            self.set_status(log, COMPLETED)
            log.information = None
        for task in self.tasks.values():
            if task.batch_id == batch.batch_id:
                task.status = "Completed"
                if task.rebill is not None:
                    task.rebill["invoices_created"] = len(batch.invoice_ids)


def _event(operation: str, action: InvoiceAction | None, *, amount: Decimal) -> dict[str, Any]:
    return {
        "operation": operation,
        "amount": str(amount),
        "adjustment_date": None if action is None else action.adjustment_date.isoformat(),
        "reason": None if action is None else action.reason,
        "at": datetime.now(UTC).isoformat(),
    }


def _check_original(name: str, given: Decimal | None, actual: Decimal) -> None:
    if given is not None and given != actual:
        raise Refused(f"{name} {given} does not match the invoice ({actual}).")


def _adjust_lines(lines: list[Line], adj: LineAdjustment, invoice_id: str) -> None:
    line = next((x for x in lines if x.product_code == adj.product_code), None)
    if adj.is_new_line:
        if adj.new_unit_price is None:
            raise Refused(f"NewUnitPrice is required for the new line {adj.product_code}.")
        lines.append(
            Line(adj.product_code, adj.product_name or adj.product_code, adj.new_unit_price, adj.new_quantity or 1)
        )
        return
    if line is None:
        raise Refused(f"Invoice {invoice_id} has no line with product code {adj.product_code}.")
    if adj.is_removed:
        lines.remove(line)
        return
    if adj.adjustment_price is not None:
        new_total = line.total + adj.adjustment_price
        line.unit_price = (new_total / line.quantity).quantize(CENT)
    else:
        _check_original(f"OriginalUnitPrice of {adj.product_code}", adj.original_unit_price, line.unit_price)
        if adj.new_unit_price is not None:
            line.unit_price = adj.new_unit_price
    if adj.new_quantity is not None:
        if adj.original_quantity is not None and adj.original_quantity != line.quantity:
            raise Refused(f"OriginalQuantity of {adj.product_code} does not match the invoice ({line.quantity}).")
        line.quantity = adj.new_quantity
    if line.unit_price < 0 or line.quantity < 0:
        raise Refused(f"The adjustment of {adj.product_code} would make the line negative.")
