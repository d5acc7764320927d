"""EnergyCAP runs in a test deployment: a fresh account period per run with its corrected bills, and
"exactly once" read from the simulator's own counters (reversals per original, batches per code)."""

from __future__ import annotations

import itertools
import math
import uuid
from pathlib import Path
from typing import Any

from orchestrator.adapters.providers.energycap.provider import batch_code, run_prefix
from orchestrator.domain.run import Run
from simulators.energycap import EnergyCapState, SeededPeriod, write_corrected_bills
from tests.support.stack import Stack

# Even months only: seeding a period also fills the month before it, which no test then selects.
_PERIODS = (year * 100 + month for year in itertools.count(2001) for month in (2, 4, 6, 8, 10, 12))


def energycap(stack: Stack) -> EnergyCapState:
    state: EnergyCapState = stack.platform("energycap")
    return state


def seed_period(stack: Stack, bills: int) -> tuple[SeededPeriod, Path]:
    """A period no other test selects, and a corrected bill for each of its eligible bills."""
    state = energycap(stack)
    period = state.seed_period(bills, seed=uuid.uuid4().int % 1_000_000, account_period=next(_PERIODS))
    corrected = stack.directory / f"corrected-{period.account_period}.csv"
    write_corrected_bills(state, period, corrected)
    return period, corrected


def assert_reversed_once(stack: Stack, period: SeededPeriod, run: Run) -> dict[str, Any]:
    """Every eligible bill reversed exactly once, nothing else touched, one batch per chunk."""
    counters = energycap(stack).counters()
    eligible = {str(bill_id) for bill_id in period.eligible_ids}
    reversals: dict[str, int] = counters["reversals"]
    assert {bill: reversals.get(bill, 0) for bill in eligible} == dict.fromkeys(eligible, 1)
    assert not ({str(bill_id) for bill_id in period.bill_ids} - eligible) & set(reversals)
    assert not eligible & set(counters["duplicate_reversals"])
    chunks = math.ceil(len(eligible) / run.options.chunk_size)
    assert batches_of(counters, run, imports=False) == {batch_code(run.id, n): 1 for n in range(chunks)}
    return counters


def batches_of(counters: dict[str, Any], run: Run, *, imports: bool) -> dict[str, int]:
    """The run's reversal batches (or its import batches) and how many batches each code made."""
    prefix = f"RB-{run_prefix(run.id)}-"
    return {
        code: made
        for code, made in counters["batches"].items()
        if code.startswith(prefix) and code.startswith(prefix + "I") is imports
    }


def imports_of(counters: dict[str, Any], run: Run) -> list[dict[str, Any]]:
    """The run's imports as the simulator ran them (the file, then each re-import of kickouts)."""
    return [entry for entry in counters["imports"] if entry["code"].startswith(f"RB-{run_prefix(run.id)}-I")]
