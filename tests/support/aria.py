"""Aria runs in tests: a bill run of its own, the corrections, and the check that every eligible invoice
was rebilled exactly once with the corrected amounts, by the simulator's own state and counters."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from orchestrator.domain.run import Item, ItemState
from simulators.aria import AriaState, SeededRun, seed_bill_run
from simulators.aria.state import Invoice

#: Corrected rates of three of the six services the simulator seeds (by client_service_id and by service_no).
CORRECTED_RATES = {"PLAN-BASE": Decimal("49.995"), "SEATS": Decimal("11.125"), "SMS": Decimal("0.0125")}
CORRECTIONS_CSV = "service,rate_per_unit,units\nPLAN-BASE,49.995,\n10002,11.125,\nSMS,0.0125,\n"
REASON_CODE = 2


def write_corrections(directory: Path) -> Path:
    path = directory / "aria-corrections.csv"
    path.write_text(CORRECTIONS_CSV)
    return path


def fresh_bill_date() -> date:
    """A bill date no other test of the session uses (a bill date is one run's scope)."""
    return date(2030, 1, 1) + timedelta(days=uuid.uuid4().int % 20_000)


def seed(state: AriaState, invoices: int) -> SeededRun:
    """A bill run of `invoices` originals on a bill date of its own."""
    return seed_bill_run(state, invoices=invoices, seed=uuid.uuid4().int % 1_000_000, bill_date=fresh_bill_date())


def run_options(corrections: Path, *more: str) -> list[str]:
    """`rebill run` arguments for an Aria run of the seeded bill run's date (given before these)."""
    return ["--corrections", str(corrections), "--reason-code", str(REASON_CODE), *more]


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def corrected_amount(original: Invoice) -> Decimal:
    """What the rebill of `original` must bill: each charge line units x (corrected) rate half-up to
    cents, plus tax at the original's rate on their total (the contract's rounding)."""
    charges = sum(
        (
            cents(line.units * CORRECTED_RATES.get(line.service.client_service_id, line.rate_per_unit))
            for line in original.lines
            if not line.service.is_tax
        ),
        Decimal("0.00"),
    )
    tax = cents(charges * original.tax_rate) if original.tax_rate is not None else Decimal("0.00")
    return charges + tax


def expected_reasons(seeded: SeededRun) -> dict[str, str | None]:
    """Invoice number -> why a run leaves it alone (None: to rebill)."""
    reasons: dict[int, str | None] = dict.fromkeys(seeded.eligible)
    reasons |= dict.fromkeys(seeded.voided, "voided")
    reasons |= dict.fromkeys(seeded.rebilled, "already_rebilled")
    reasons |= dict.fromkeys((*seeded.paid, *seeded.part_paid), "paid")
    return {str(number): reason for number, reason in reasons.items()}


def assert_rebilled_once(
    state: AriaState, seeded: SeededRun, items: Iterable[Item], *, run_id: str, before: dict[str, Any]
) -> dict[str, Any]:
    """Each eligible invoice rebilled exactly once with the corrected amounts and recorded so in the
    ledger; nothing else rebilled; no second rebill even attempted since `before` (the counters then)."""
    counters = state.counters()
    mine = {str(number) for number in seeded.invoice_nos}
    rebills = {number: count for number, count in counters["rebills"].items() if number in mine}
    assert rebills == {str(number): 1 for number in seeded.eligible}
    assert counters["duplicate_attempts"] == before["duplicate_attempts"]
    assert counters["ineligible_attempts"] == before["ineligible_attempts"]

    by_invoice = {item.invoice.invoice_id: item for item in items}
    assert set(by_invoice) == mine
    reasons = expected_reasons(seeded)
    with state.lock:
        for number, item in by_invoice.items():
            reason = reasons[number]
            if reason is not None:
                assert (item.state, item.reason) == (ItemState.SKIPPED, reason), number
                continue
            original = state.invoices[int(number)]
            assert original.rb_no is not None
            rebill = state.invoices[original.rb_no]
            assert item.state is ItemState.REVERSED, (number, item.state, item.reason, item.last_error)
            assert item.rebill_ref == str(original.rb_no)
            assert item.new_amount == rebill.amount == corrected_amount(original)
            assert item.invoice.amount == original.amount
            assert rebill.qualifiers == (("run_id", run_id),)
            assert rebill.created_by == "rebill"
    return counters


def wait_until_rebilled(state: AriaState, seeded: SeededRun, count: int, *, timeout: float = 120) -> None:
    """Until the simulator has applied at least `count` rebills of the seeded run's invoices."""
    mine = {str(number) for number in seeded.invoice_nos}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(n for number, n in state.counters()["rebills"].items() if number in mine) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} rebills within {timeout} s")
