"""Deterministic seed data: one bill run's invoices over many accounts, and an older one.

`seed_bill_run(state, invoices=N, seed=S, bill_date=D)` gives the same accounts, numbers, lines and
amounts for the same arguments on a fresh state. The bill date's originals are mixed the way a real
run is (roughly): most open and unpaid (eligible), some paid or part-paid, some voided, some already
rebilled (with their `R` invoice); every account has two or more of them, every invoice two or more
charge lines with 3-decimal rates (some usage lines 4), and about half a state-tax line. Every account
also has an invoice of the month before, paid or open, which no run of `bill_date` may touch.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from simulators.aria.state import FIRST_REBILL_NO, Account, AriaState, Invoice, Line, Service, cents

DEFAULT_BILL_DATE = date(2025, 10, 1)
TAX_RATE = Decimal("0.0825")
SEEDED_REASON_CD = 1

Kind = Literal["open", "paid", "part_paid", "voided", "rebilled"]

#: Share of the bill date's originals of each kind besides `open` (each at least one from 8 invoices).
_SHARES: tuple[tuple[Kind, float], ...] = (
    ("paid", 0.08),
    ("part_paid", 0.04),
    ("voided", 0.03),
    ("rebilled", 0.03),
)


@dataclass(frozen=True, slots=True)
class _Priced:
    service: Service
    rate_range: tuple[int, int]  # in thousandths (ten-thousandths when `fine`)
    units_range: tuple[int, int]
    fine: bool = False  # a 4-decimal rate
    fractional_units: bool = False  # units with one decimal (GB)


CATALOGUE: tuple[_Priced, ...] = (
    _Priced(Service(10001, "PLAN-BASE", "Base plan, monthly", 1), (29_000, 99_000), (1, 1)),
    _Priced(Service(10002, "SEATS", "Named seats", 1), (8_000, 15_000), (1, 40)),
    _Priced(Service(10003, "SUPPORT", "Premium support", 1), (9_000, 49_000), (1, 1)),
    _Priced(Service(10004, "API-CALLS", "API calls (per thousand)", 6), (90, 250), (10, 900)),
    _Priced(Service(10005, "STORAGE-GB", "Storage, GB-month", 6), (15, 45), (10, 5_000), fractional_units=True),
    _Priced(Service(10006, "SMS", "Text messages", 6), (75, 390), (50, 4_000), fine=True),
)
TAX_SERVICE = Service(400, "TAX-STATE", "State sales tax", 2)


@dataclass(frozen=True, slots=True)
class SeededRun:
    """What `seed_bill_run` created, for tests to plan and check against (numbers ascending)."""

    seed: int
    bill_date: date
    older_bill_date: date
    acct_nos: tuple[int, ...]
    invoice_nos: tuple[int, ...]  # the bill date's originals (no R invoices)
    eligible: tuple[int, ...]
    paid: tuple[int, ...]
    part_paid: tuple[int, ...]
    voided: tuple[int, ...]
    rebilled: tuple[int, ...]  # originals rebilled before the run
    rebill_invoice_nos: tuple[int, ...]  # their R invoices, dated `bill_date` too
    older_invoice_nos: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bill_date"] = self.bill_date.isoformat()
        data["older_bill_date"] = self.older_bill_date.isoformat()
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}


def seed_bill_run(state: AriaState, *, invoices: int, seed: int, bill_date: date = DEFAULT_BILL_DATE) -> SeededRun:
    """Add `invoices` originals dated `bill_date` (plus one older invoice per account) to `state`.

    Seeding again into the same state adds another, independent set (numbers never collide).
    """
    if invoices < 0:
        raise ValueError("invoices must not be negative")
    with state.lock:
        attempt = 0
        while (plan := _plan(state, invoices, seed, bill_date, attempt)) is None:
            attempt += 1
        return _apply(state, plan, seed, bill_date)


@dataclass(frozen=True, slots=True)
class _Plan:
    accounts: tuple[Account, ...]
    owners: tuple[int, ...]  # per original: index into accounts
    numbers: tuple[int, ...]  # per original, ascending
    older_numbers: tuple[int, ...]  # per account
    kinds: tuple[Kind, ...]
    rng: random.Random


def _plan(state: AriaState, n: int, seed: int, bill_date: date, attempt: int) -> _Plan | None:
    rng = random.Random(f"aria-run:{seed}:{bill_date.isoformat()}:{attempt}")
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(min(rng.choice((2, 2, 3)), n - sum(sizes)))
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes.pop()
        sizes[-1] += 1
    acct_base = rng.randrange(1_000_000, 9_000_000 - len(sizes))
    accounts = tuple(
        Account(acct_base + i, f"ACCT-{acct_base + i}", 6_000_000 + acct_base + i) for i in range(len(sizes))
    )
    number_base = rng.randrange(10_000_000, FIRST_REBILL_NO - 2 * (n + len(sizes)) - 10)
    older_numbers = tuple(range(number_base, number_base + len(sizes)))
    numbers = tuple(range(number_base + len(sizes), number_base + len(sizes) + n))
    if any(a.acct_no in state.accounts or a.billing_group_no in _groups(state) for a in accounts) or any(
        number in state.invoices for number in (*older_numbers, *numbers)
    ):
        return None
    owners = [i for i, size in enumerate(sizes) for _ in range(size)]
    rng.shuffle(owners)
    kinds: list[Kind] = []
    for kind, share in _SHARES:
        count = round(n * share)
        kinds += [kind] * (max(count, 1) if n >= 8 else count)
    kinds += ["open"] * (n - len(kinds))
    rng.shuffle(kinds)
    return _Plan(accounts, tuple(owners), numbers, older_numbers, tuple(kinds), rng)


def _groups(state: AriaState) -> set[int]:
    return {account.billing_group_no for account in state.accounts.values()}


def _apply(state: AriaState, plan: _Plan, seed: int, bill_date: date) -> SeededRun:
    rng = plan.rng
    older_date = _month_before(bill_date)
    for account in plan.accounts:
        state.add_account(account)
    older: list[int] = []
    for account, number in zip(plan.accounts, plan.older_numbers, strict=True):
        invoice = state.add_invoice(_invoice(rng, number, account, older_date))
        if rng.random() < 0.7:
            state.pay(number, invoice.amount, paid_date=older_date + timedelta(days=rng.randint(3, 25)))
        older.append(number)
    by_kind: dict[Kind, list[int]] = {"open": [], "paid": [], "part_paid": [], "voided": [], "rebilled": []}
    rebills: list[int] = []
    for owner, number, kind in zip(plan.owners, plan.numbers, plan.kinds, strict=True):
        invoice = state.add_invoice(_invoice(rng, number, plan.accounts[owner], bill_date))
        by_kind[kind].append(number)
        if kind == "paid":
            state.pay(number, invoice.amount, paid_date=bill_date + timedelta(days=rng.randint(1, 20)))
        elif kind == "part_paid":
            state.pay(number, cents(invoice.amount * Decimal(rng.randint(10, 90)) / 100))
        elif kind == "voided":
            state.void(number)
        elif kind == "rebilled":
            rates = [_bump(rng, line) for line in invoice.lines if not line.service.is_tax]
            rebills.append(
                state.rebill_now(
                    number, reason_cd=SEEDED_REASON_CD, comments="rebilled before the run", rates=rates
                ).invoice_no
            )
    return SeededRun(
        seed=seed,
        bill_date=bill_date,
        older_bill_date=older_date,
        acct_nos=tuple(account.acct_no for account in plan.accounts),
        invoice_nos=plan.numbers,
        eligible=tuple(by_kind["open"]),
        paid=tuple(by_kind["paid"]),
        part_paid=tuple(by_kind["part_paid"]),
        voided=tuple(by_kind["voided"]),
        rebilled=tuple(by_kind["rebilled"]),
        rebill_invoice_nos=tuple(sorted(rebills)),
        older_invoice_nos=tuple(older),
    )


def _invoice(rng: random.Random, number: int, account: Account, bill_date: date) -> Invoice:
    priced = sorted(rng.sample(CATALOGUE, rng.randint(2, 4)), key=lambda p: p.service.service_no)
    lines = [_line(rng, line_no, p) for line_no, p in enumerate(priced, start=1)]
    tax_rate = None
    if rng.random() < 0.5:
        tax_rate = TAX_RATE
        taxable = sum((line.amount for line in lines), Decimal(0))
        lines.append(Line(len(lines) + 1, TAX_SERVICE, Decimal(1), cents(taxable * TAX_RATE)))
    return Invoice(number, account, bill_date, lines, tax_rate=tax_rate)


def _line(rng: random.Random, line_no: int, priced: _Priced) -> Line:
    scale = Decimal("0.0001") if priced.fine else Decimal("0.001")
    rate = Decimal(rng.randint(*priced.rate_range)) * scale
    units = Decimal(rng.randint(*priced.units_range))
    if priced.fractional_units:
        units = Decimal(rng.randint(priced.units_range[0] * 10, priced.units_range[1] * 10)) / 10
    return Line(line_no, priced.service, units, rate)


def _bump(rng: random.Random, line: Line) -> Decimal:
    """A corrected rate a little off the original (what an earlier rebill changed)."""
    return (line.rate_per_unit * Decimal(rng.randint(90, 110)) / 100).quantize(line.rate_per_unit)


def _month_before(day: date) -> date:
    first = day.replace(day=1) - timedelta(days=1)
    return first.replace(day=min(day.day, 28))
