"""A corrected-bills file for a seeded period: what a user would hand to a reverse-and-rebill run.

One row per eligible bill of the period (not void, not a reversal, not reversed yet), same account,
meter, billing period and dates, the cost times `factor` split into two lines that add up to it:

    write_corrected_bills(state, seeded, Path("corrected.csv"))
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

from simulators.energycap.state import CENT, EnergyCapState, SeededPeriod

HEADER = (
    "accountCode",
    "meterCode",
    "billingPeriod",
    "beginDate",
    "endDate",
    "totalCost",
    "lineCaption1",
    "lineCost1",
    "lineCaption2",
    "lineCost2",
)


def corrected_bills_csv(state: EnergyCapState, seeded: SeededPeriod, *, factor: Decimal = Decimal("0.95")) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    with state.lock:
        for bill_id in seeded.eligible_ids:
            bill = state.bills[bill_id]
            total = (bill.total_cost * factor).quantize(CENT)
            energy = (total * Decimal("0.7")).quantize(CENT)
            writer.writerow(
                (
                    bill.account.account_code,
                    bill.meters[0].meter_code,
                    bill.billing_period,
                    bill.begin_date.isoformat(),
                    bill.end_date.isoformat(),
                    total,
                    "Energy",
                    energy,
                    "Delivery",
                    total - energy,
                )
            )
    return buffer.getvalue()


def write_corrected_bills(
    state: EnergyCapState, seeded: SeededPeriod, path: Path, *, factor: Decimal = Decimal("0.95")
) -> int:
    """Write the file; returns how many bills it holds."""
    path.write_text(corrected_bills_csv(state, seeded, factor=factor), encoding="utf-8")
    return len(seeded.eligible_ids)
