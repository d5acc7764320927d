"""Planning's reads for a batch of invoices and the verdicts they give (verdicts.py), over records in memory.

`answer` plays the org: it runs each query the reading names over a handful of records (every query
of the reading is `field IN (…)`), so each case checks both which ids are read and the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from orchestrator.adapters.providers.salesforce.eligibility import INVOICE_FIELDS, SkipReason
from orchestrator.adapters.providers.salesforce.soql import INVOICE, Query, eq
from orchestrator.adapters.providers.salesforce.verdicts import BatchReading, Verdict, batches, selection
from orchestrator.adapters.providers.salesforce.wire import InvoiceLineRecord, InvoiceRecord, Record

EARLIER, MIDDLE, LATER = "2025-09-01T06:00:00.000+0000", "2025-10-01T06:00:00.000+0000", "2025-11-01T06:00:00.000+0000"


def invoice(invoice_id: str, **fields: Any) -> InvoiceRecord:
    """A Posted invoice, open to void (nothing paid or credited, balance = total), posted in October."""
    values: dict[str, Any] = {
        "Id": invoice_id,
        "Status": "Posted",
        "PostedDate": MIDDLE,
        "TotalAmountWithTax": Decimal("120.00"),
        "Balance": Decimal("120.00"),
        "NetPaymentsApplied": Decimal("0.00"),
        "NetCreditsApplied": Decimal("0.00"),
    }
    return InvoiceRecord.model_validate({**values, **fields})


def line(invoice_id: str, schedule: str) -> InvoiceLineRecord:
    return InvoiceLineRecord(Id=f"3tl-{invoice_id}-{schedule}", InvoiceId=invoice_id, BillingScheduleId=schedule)


def answer(queries: Sequence[Query[Any]], records: Sequence[Record]) -> list[Any]:
    """What the org returns for `queries` (each `field IN (…)`), from `records` of the queried object."""
    found: list[Any] = []
    for query in queries:
        (condition,) = query.conditions
        assert condition.op == "IN"
        kind = query.sobject.record
        found += [r for r in records if isinstance(r, kind) and getattr(r, condition.field) in condition.values]
    return found


def read(batch: Sequence[InvoiceRecord], org: Sequence[Record]) -> list[Verdict]:
    """The three reads of a batch against `org`, in order, then the verdicts."""
    reading = BatchReading(batch)
    lines = answer(reading.lines_of_invoices(), org)
    on_schedules = answer(reading.lines_on_schedules(lines), org)
    return reading.verdicts(answer(reading.other_invoices(on_schedules), org))


OTHER = "3tt-other"


@pytest.mark.parametrize(
    ("mine", "other", "reason"),
    [
        ({}, None, None),
        ({"Status": "Voided"}, None, SkipReason.NOT_POSTED),
        ({"Status": "Void In Progress"}, None, SkipReason.NOT_POSTED),
        ({"Status": "Draft"}, None, SkipReason.NOT_POSTED),
        ({"NetPaymentsApplied": Decimal("20.00"), "Balance": Decimal("100.00")}, None, SkipReason.PAID),
        ({"NetCreditsApplied": Decimal("5.00"), "Balance": Decimal("115.00")}, None, SkipReason.CREDITED),
        ({"Balance": Decimal("100.00")}, None, SkipReason.BALANCE_MISMATCH),
        ({}, {"PostedDate": LATER}, SkipReason.NOT_LATEST_ON_SCHEDULE),
        ({}, {"PostedDate": LATER, "Status": "Void In Progress"}, SkipReason.NOT_LATEST_ON_SCHEDULE),
        # Only a later invoice still Posted or voiding counts; an earlier one (paid, say) never does.
        ({}, {"PostedDate": LATER, "Status": "Voided"}, None),
        ({}, {"PostedDate": LATER, "Status": "Canceled"}, None),
        ({}, {"PostedDate": EARLIER}, None),
        ({}, {"PostedDate": EARLIER, "NetPaymentsApplied": Decimal("120.00"), "Balance": Decimal("0.00")}, None),
        # The first failing rule is the reason.
        ({"Status": "Voided", "NetPaymentsApplied": Decimal("1.00")}, {"PostedDate": LATER}, SkipReason.NOT_POSTED),
        ({"NetPaymentsApplied": Decimal("1.00"), "NetCreditsApplied": Decimal("1.00")}, None, SkipReason.PAID),
        ({"Balance": Decimal("1.00")}, {"PostedDate": LATER}, SkipReason.BALANCE_MISMATCH),
    ],
)
def test_the_contract_s_verdict(mine: dict[str, Any], other: dict[str, Any] | None, reason: SkipReason | None) -> None:
    org: list[Record] = [invoice("3tt-mine", **mine), line("3tt-mine", "44b-1"), line("3tt-mine", "44b-2")]
    if other is not None:
        org += [invoice(OTHER, **other), line(OTHER, "44b-2")]
    (verdict,) = read([org[0]], org)  # type: ignore[list-item]
    assert verdict.reason is reason
    assert verdict.schedules == ["44b-1", "44b-2"]
    assert verdict.seen == sorted(["3tt-mine"] + ([OTHER] if other is not None else []))


def test_an_invoice_of_the_batch_is_not_read_again_and_counts_on_the_schedule_it_shares() -> None:
    earlier, later = invoice("3tt-a"), invoice("3tt-b", PostedDate=LATER)
    untouched = invoice("3tt-c")
    org: list[Record] = [earlier, later, untouched, line("3tt-a", "44b-1"), line("3tt-b", "44b-1")]
    reading = BatchReading([earlier, later, untouched])
    lines = answer(reading.lines_of_invoices(), org)
    on_schedules = answer(reading.lines_on_schedules(lines), org)
    assert reading.other_invoices(on_schedules) == []  # both invoices on 44b-1 are in the batch
    verdicts = reading.verdicts([])
    assert [(v.invoice.Id, v.reason) for v in verdicts] == [
        ("3tt-a", SkipReason.NOT_LATEST_ON_SCHEDULE),
        ("3tt-b", None),
        ("3tt-c", None),  # no lines: no schedule, nothing more to read
    ]
    assert verdicts[2].schedules == verdicts[2].seen == []


def test_the_reads_name_200_ids_a_query_sorted_and_only_what_is_needed() -> None:
    batch = [invoice(f"3tt-{n:03d}") for n in range(200)]
    reading = BatchReading(batch)
    (lines_query,) = reading.lines_of_invoices()
    assert lines_query.soql.startswith("SELECT Id, InvoiceId, BillingScheduleId FROM InvoiceLine WHERE InvoiceId IN (")
    assert lines_query.conditions[0].values == tuple(i.Id for i in batch)
    lines = [line(i.Id or "", f"44b-{i.Id}-{s}") for i in batch for s in range(3)]  # 600 schedules
    on_schedules = reading.lines_on_schedules(lines)
    assert [len(q.conditions[0].values) for q in on_schedules] == [200, 200, 200]
    named = [v for q in on_schedules for v in q.conditions[0].values]
    assert named == sorted({str(x.BillingScheduleId) for x in lines})
    others = reading.other_invoices([*lines, line("3tt-z", "44b-3tt-000-0"), line("3tt-y", "44b-3tt-001-0")])
    assert [q.soql for q in others] == ["SELECT Id, Status, PostedDate FROM Invoice WHERE Id IN ('3tt-y', '3tt-z')"]


def test_the_selection_is_ordered_by_id_with_what_the_verdicts_need() -> None:
    query = selection(eq("InvoiceBatchRunId", "7Bk5g00000000aAAAA"))
    assert query.sobject is INVOICE
    assert query.fields == INVOICE_FIELDS
    assert query.soql.endswith("WHERE InvoiceBatchRunId = '7Bk5g00000000aAAAA' ORDER BY Id ASC")


@pytest.mark.parametrize(("size", "runs"), [(0, []), (1, [1]), (200, [200]), (201, [200, 1]), (450, [200, 200, 50])])
def test_batches_of_200_in_order(size: int, runs: list[int]) -> None:
    records = [invoice(f"3tt-{n:03d}") for n in range(size)]
    cut = list(batches(records))
    assert [len(batch) for batch in cut] == runs
    assert [r for batch in cut for r in batch] == records
