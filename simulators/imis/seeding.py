"""Deterministic seed data: a completed billing of N invoices (plus older ones), and the seed pages' examples.

`seed_billing(state, invoices=N, seed=S)` gives the same keys, ids, parties and amounts for the same
arguments on a fresh state; seeding the same seed again in one state adds another, independent
billing (new keys, numbers and parties). The billing is mixed the way a real one is: about 10% paid,
5% part-paid, the rest open and unpaid; about one party in forty has two invoices in it; a cash
billing of ten invoices or more has about 2% legacy `CASH:<party>:<guid>` invoice ids. Each older
billing of the cycle (a year apart) bills a tenth as many of the same parties (two at least), some
still open: no reverse-and-rebill of the new billing may touch them.

`seed_examples(state)` loads `examples.py`, the data every example body of the seed pages refers to.
Both are `ImisState` methods too (`state.seed_billing(invoices=2000, seed=1)`); they hold its lock.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from simulators.imis import examples
from simulators.imis.entities import (
    ACCOUNTING_METHODS,
    CASH,
    CENT,
    COMPLETED,
    UNPOSTED_BATCH,
    ZERO,
    Batch,
    BillingLog,
    Invoice,
    InvoiceDraft,
    Line,
    ScheduledPayment,
    Source,
    guid,
)
from simulators.imis.errors import Conflict
from simulators.imis.store import SeedingStore

DEFAULT_CYCLE = examples.CYCLE
DEFAULT_EFFECTIVE_DATE = examples.EFFECTIVE_DATE

_PRICES = (Decimal("95.00"), Decimal("120.00"), Decimal("150.00"), Decimal("185.50"), Decimal("250.00"))
_FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
_LAST = ("Nguyen", "Smith", "Garcia", "Okafor", "Kowalski", "Haddad", "Larsen", "Moreau", "Tanaka", "Reyes")


@dataclass(frozen=True, slots=True)
class SeededBilling:
    """What `seed_billing` / `seed_examples` created, for tests to plan against."""

    original_key: str
    other_keys: tuple[str, ...]
    invoice_ids: tuple[str, ...]
    cycle_name: str
    open_count: int
    paid_count: int
    part_paid_count: int
    accounting_method: int = CASH
    seed: int | None = None
    open_invoice_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()
    # Parties whose every invoice of the billing is open and unpaid: the ones a full
    # reverse-and-rebill bills again.
    rebill_party_ids: tuple[str, ...] = ()
    # Open invoices of the older billings: no reverse-and-rebill of `original_key` may touch them.
    other_open_invoice_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------
# seed_billing
# --------------------------------------------------------------------------------------------


def seed_billing(
    state: SeedingStore,
    invoices: int,
    seed: int,
    cycle_name: str = DEFAULT_CYCLE,
    accounting_method: int | str = CASH,
    effective_date: datetime = DEFAULT_EFFECTIVE_DATE,
    other_billings: int = 1,
) -> SeededBilling:
    """Add one completed billing of `invoices` invoices (plus `other_billings` older ones) to `state`."""
    if invoices < 0 or other_billings < 0:
        raise ValueError("invoices and other_billings must not be negative")
    method = _accounting_method(accounting_method)
    with state.lock:
        attempt = 0
        while True:
            plan = _plan_billing(state, invoices, seed, attempt, method, effective_date, other_billings)
            if plan is not None:
                break
            attempt += 1
        return _apply_billing_plan(state, plan, seed, cycle_name, method)


@dataclass(slots=True)
class _PlannedInvoice:
    invoice_id: str
    number: int
    party_id: str
    lines: list[Line]
    status: Literal["open", "paid", "part"]
    payment: Decimal


@dataclass(slots=True)
class _PlannedLog:
    key: str
    effective_date: datetime
    invoices: list[_PlannedInvoice]


def _plan_billing(
    state: SeedingStore,
    n: int,
    seed: int,
    attempt: int,
    method: int,
    effective_date: datetime,
    other_billings: int,
) -> tuple[_PlannedLog, list[_PlannedLog], dict[str, str]] | None:
    """The billing `seed` gives at `attempt`, or None when a key, party or number of it is taken."""
    rng = random.Random(f"imis-billing:{seed}:{attempt}")
    original_key = guid(rng)
    other_keys = [guid(rng) for _ in range(other_billings)]
    if original_key in state.billing_logs or any(k in state.billing_logs for k in other_keys):
        return None
    doubles = 0 if n < 4 else max(1, n // 40)
    party_count = n - doubles
    party_base = rng.randrange(100_000, 90_000_000)
    party_ids = [str(party_base + i) for i in range(party_count)]
    if any(p in state.parties for p in party_ids):
        return None
    names = {p: _name(rng) for p in party_ids}
    owners = party_ids + rng.sample(party_ids, doubles)
    rng.shuffle(owners)
    paid = round(n * 0.10)
    part = round(n * 0.05)
    if n >= 3:
        paid, part = max(paid, 1), max(part, 1)
    statuses: list[Literal["open", "paid", "part"]] = ["paid"] * paid
    statuses += ["part"] * part
    statuses += ["open"] * (n - paid - part)
    rng.shuffle(statuses)
    older_sizes = [max(2, n // 10) for _ in other_keys]
    total = n + sum(older_sizes)
    number_base = rng.randrange(10_000, 2_000_000_000 - total)
    numbers = list(range(number_base, number_base + total))
    if any(state.invoice_id_for_number(num) is not None or str(num) in state.invoices for num in numbers):
        return None
    legacy = 0
    if method == CASH and n >= 10:
        legacy = max(1, round(n * 0.02))
    legacy_positions = set(rng.sample(range(n), legacy))
    planned: list[_PlannedInvoice] = []
    for i in range(n):
        party = owners[i]
        number = numbers[i]
        invoice_id = f"CASH:{party}:{guid(rng)}" if i in legacy_positions else str(number)
        lines = _dues_lines(rng)
        amount = sum((line.total for line in lines), ZERO)
        status = statuses[i]
        payment = ZERO
        if status == "paid":
            payment = amount
        elif status == "part":
            payment = (amount * Decimal(rng.randint(10, 90)) / 100).quantize(CENT)
        planned.append(_PlannedInvoice(invoice_id, number, party, lines, status, payment))
    original = _PlannedLog(original_key, effective_date, planned)
    others: list[_PlannedLog] = []
    cursor = n
    for j, key in enumerate(other_keys):
        size = older_sizes[j]
        pool = (
            party_ids
            if len(party_ids) >= size
            else party_ids + [str(party_base + party_count + k) for k in range(size - len(party_ids))]
        )
        for extra in pool:
            names.setdefault(extra, _name(rng))
        chosen = rng.sample(pool, size)
        older: list[_PlannedInvoice] = []
        for k, party in enumerate(chosen):
            number = numbers[cursor]
            cursor += 1
            lines = _dues_lines(rng)
            amount = sum((line.total for line in lines), ZERO)
            is_open = k == 0 or rng.random() < 0.3
            older.append(
                _PlannedInvoice(
                    str(number),
                    number,
                    party,
                    lines,
                    "open" if is_open else "paid",
                    ZERO if is_open else amount,
                )
            )
        others.append(_PlannedLog(key, _years_before(effective_date, j + 1), older))
    if any(p in state.parties for p in names):
        return None
    return original, others, names


def _apply_billing_plan(
    state: SeedingStore,
    plan: tuple[_PlannedLog, list[_PlannedLog], dict[str, str]],
    seed: int,
    cycle_name: str,
    method: int,
) -> SeededBilling:
    original, others, names = plan
    for party_id, name in names.items():
        state.ensure_party(party_id, name)
    other_open: list[str] = []
    # Older billings first, so creation order (and therefore list order) is chronological.
    for older in reversed(others):
        _create_seeded_log(state, older, cycle_name, method)
        other_open += [p.invoice_id for p in older.invoices if p.status == "open"]
    _create_seeded_log(state, original, cycle_name, method)
    by_party: dict[str, list[_PlannedInvoice]] = {}
    for p in original.invoices:
        by_party.setdefault(p.party_id, []).append(p)
    return SeededBilling(
        original_key=original.key,
        other_keys=tuple(o.key for o in others),
        invoice_ids=tuple(p.invoice_id for p in original.invoices),
        cycle_name=cycle_name,
        open_count=sum(p.status == "open" for p in original.invoices),
        paid_count=sum(p.status == "paid" for p in original.invoices),
        part_paid_count=sum(p.status == "part" for p in original.invoices),
        accounting_method=method,
        seed=seed,
        open_invoice_ids=tuple(p.invoice_id for p in original.invoices if p.status == "open"),
        party_ids=tuple(by_party),
        rebill_party_ids=tuple(party for party, items in by_party.items() if all(p.status == "open" for p in items)),
        other_open_invoice_ids=tuple(other_open),
    )


def _create_seeded_log(state: SeedingStore, planned: _PlannedLog, cycle_name: str, method: int) -> BillingLog:
    billing_date = planned.effective_date - timedelta(days=17, hours=-9)
    batch_id = state.new_batch_id()
    log = state.add_billing_log(
        BillingLog(
            key=planned.key,
            cycle_name=cycle_name,
            status=COMPLETED,
            seq=state.next_seq(),
            run_name=f"{cycle_name} {planned.effective_date:%Y-%m}",
            billing_type="A",
            billing_date=billing_date,
            effective_date=planned.effective_date,
            accounting_method=method,
            auto_pay_option=0,
            batch_id=batch_id,
        ),
        at=billing_date,
    )
    batch = Batch(batch_id, log.key, "Posted", posted_at=billing_date)
    state.batches[batch_id] = batch
    for p in planned.invoices:
        invoice = state.add_invoice(
            Invoice(
                invoice_id=p.invoice_id,
                number=p.number,
                accounting_method=method,
                source=Source.DUES,
                bill_to=p.party_id,
                sold_to=p.party_id,
                lines=p.lines,
                billing_log_key=log.key,
                invoice_date=billing_date,
                due_date=planned.effective_date,
                description=f"{cycle_name} {planned.effective_date:%Y}",
                seq=state.next_seq(),
                payment_amount=p.payment,
            )
        )
        batch.drafts.append(
            InvoiceDraft(p.party_id, tuple(p.lines), method, invoice.description, planned.effective_date)
        )
        batch.invoice_ids.append(invoice.invoice_id)
    return log


def _accounting_method(value: int | str) -> int:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ACCOUNTING_METHODS:
            return ACCOUNTING_METHODS[lowered]
        if lowered.isdigit():
            value = int(lowered)
        else:
            raise ValueError(f"accounting method must be cash/accrual or 0/1, not {value!r}")
    if value not in ACCOUNTING_METHODS.values():
        raise ValueError(f"accounting method must be 0 (cash) or 1 (accrual), not {value!r}")
    return value


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _dues_lines(rng: random.Random) -> list[Line]:
    lines = [Line("DUES", "Membership dues", rng.choice(_PRICES))]
    if rng.random() < 0.3:
        lines.append(Line("JOUR", "Journal subscription", Decimal("45.00")))
    return lines


def _years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


# --------------------------------------------------------------------------------------------
# seed_examples
# --------------------------------------------------------------------------------------------


def seed_examples(state: SeedingStore, invoice_8158: Literal["cash", "accrual", "order"] = "cash") -> SeededBilling:
    """Create exactly what the seed pages' examples refer to (`examples.py`), once per state.

    `invoice_8158` picks which kind invoice 8158 is: the adjusting page sends every Process* example
    for it, whatever its kind.
    """
    with state.lock:
        if any(billing.key in state.billing_logs for billing in examples.BILLINGS):
            raise Conflict("seed_examples() was already called on this simulator")
        chosen = examples.INVOICE_8158.get(invoice_8158)
        if chosen is None:
            raise ValueError(f"invoice_8158 must be cash, accrual or order, not {invoice_8158!r}")
        for party_id, name in examples.PARTIES:
            state.ensure_party(party_id, name)
        for billing in examples.BILLINGS:
            _create_example_log(state, billing)
        for example in examples.INVOICES:
            _create_example_invoice(state, chosen if example.invoice_id == chosen.invoice_id else example)
        original = examples.ORIGINAL_BILLING
        in_billing = state.invoices_of(original.key)
        parties = tuple(dict.fromkeys(i.bill_to for i in in_billing))
        return SeededBilling(
            original_key=original.key,
            other_keys=tuple(older.key for older in examples.OLDER_BILLINGS),
            invoice_ids=tuple(i.invoice_id for i in in_billing),
            cycle_name=original.cycle_name,
            open_count=sum(i.is_open_unpaid for i in in_billing),
            paid_count=sum(i.balance <= 0 for i in in_billing),
            part_paid_count=sum(0 < i.payment_amount < i.amount for i in in_billing),
            accounting_method=original.accounting_method,
            seed=None,
            open_invoice_ids=tuple(i.invoice_id for i in in_billing if i.is_open_unpaid),
            party_ids=parties,
            rebill_party_ids=tuple(p for p in parties if all(i.is_open_unpaid for i in in_billing if i.bill_to == p)),
            other_open_invoice_ids=tuple(
                i.invoice_id
                for older in examples.OLDER_BILLINGS
                for i in state.invoices_of(older.key)
                if i.is_open_unpaid
            ),
        )


def _create_example_log(state: SeedingStore, billing: examples.ExampleBilling) -> None:
    """The billing's log, and its batch: Posted (the log completed) or Ready (the log at Status 4)."""
    unposted = billing.unposted
    batch_id = state.new_batch_id() if unposted is None else unposted.batch_id
    log = state.add_billing_log(
        BillingLog(
            key=billing.key,
            cycle_name=billing.cycle_name,
            status=COMPLETED if unposted is None else UNPOSTED_BATCH,
            seq=state.next_seq(),
            run_name=f"{billing.cycle_name} {billing.effective_date:%Y-%m}",
            billing_type="A",
            billing_date=billing.billed_at,
            effective_date=billing.effective_date,
            accounting_method=billing.accounting_method,
            auto_pay_option=0,
            batch_id=batch_id,
            information=None if unposted is None else f"Batch {batch_id} must be posted.",
        ),
        at=billing.billed_at,
    )
    if unposted is None:
        state.batches[batch_id] = Batch(batch_id, log.key, "Posted", posted_at=billing.billed_at)
        return
    state.batches[batch_id] = Batch(
        batch_id,
        log.key,
        "Ready",
        drafts=[
            InvoiceDraft(
                party_id,
                tuple(_line(line) for line in unposted.lines),
                billing.accounting_method,
                unposted.description,
                billing.effective_date,
            )
            for party_id in unposted.party_ids
        ],
    )


def _create_example_invoice(state: SeedingStore, example: examples.ExampleInvoice) -> None:
    state.add_invoice(
        Invoice(
            invoice_id=example.invoice_id,
            number=example.number if example.number is not None else int(example.invoice_id),
            accounting_method=example.accounting_method,
            source=example.source,
            bill_to=example.party_id,
            sold_to=example.party_id,
            lines=[_line(line) for line in example.lines],
            billing_log_key=example.billing_log_key,
            invoice_date=example.invoice_date,
            due_date=example.due_date,
            description=example.description,
            seq=state.next_seq(),
            shipping=example.shipping,
            handling=example.handling,
            payment_amount=example.paid,
            pending_payment_amount=example.pending,
            schedule=[ScheduledPayment(s.scheduled_payment_id, s.amount, s.due_date) for s in example.schedule],
        )
    )


def _line(example: examples.ExampleLine) -> Line:
    return Line(example.product_code, example.description, example.unit_price, example.quantity)
