"""What planning reads for a batch of invoices, and the verdict each gets from what it read: no I/O here.

Planning (`provider.py`, `iter_plan`) reads the selection's invoices page by page (`selection`), and
for each batch of at most 200 of them, in this order (`BatchReading`):

1. their lines (`InvoiceLine WHERE InvoiceId IN (…)`): the billing schedules of each invoice;
2. every line on those schedules (`InvoiceLine WHERE BillingScheduleId IN (…)`, 200 schedules a query):
   every invoice on them;
3. the other invoices among those (`Invoice WHERE Id IN (…)`: `Status`, `PostedDate`);

then gives each invoice of the batch the contract's verdict (`eligibility.skip_reason`). Each step
names the queries to run (a query's pages are the caller's to follow) and takes their records; the
provider runs them through its client, and the benchmark's bare loop (`ops/bench/salesforce.py`)
runs the same queries through its own, so both make the same calls and reach the same verdicts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from orchestrator.adapters.providers.salesforce.eligibility import INVOICE_FIELDS, SkipReason, skip_reason
from orchestrator.adapters.providers.salesforce.soql import (
    INVOICE,
    INVOICE_LINE,
    MAX_IN_VALUES,
    Condition,
    Query,
    select,
    select_in,
)
from orchestrator.adapters.providers.salesforce.wire import InvoiceLineRecord, InvoiceRecord

__all__ = ["LINE_FIELDS", "ON_SCHEDULE_FIELDS", "BatchReading", "Verdict", "batches", "selection"]

#: What a line tells planning: the invoice it is on and its billing schedule.
LINE_FIELDS = ("Id", "InvoiceId", "BillingScheduleId")
#: What planning reads of the other invoices on a schedule (rule 5).
ON_SCHEDULE_FIELDS = ("Id", "Status", "PostedDate")


def selection(condition: Condition) -> Query[InvoiceRecord]:
    """The selection's invoices with what their verdicts need, ordered by Id (a rerun pages them alike)."""
    return select(INVOICE, *INVOICE_FIELDS).where(condition).order_by_id()


def batches(records: Sequence[InvoiceRecord]) -> Iterator[Sequence[InvoiceRecord]]:
    """`records` in runs of at most 200, in order: one `BatchReading` each."""
    for start in range(0, len(records), MAX_IN_VALUES):
        yield records[start : start + MAX_IN_VALUES]


@dataclass(frozen=True, slots=True)
class Verdict:
    """An invoice of the batch, its billing schedules, every invoice on them (itself included) when
    read, and why it is skipped (None: eligible)."""

    invoice: InvoiceRecord
    schedules: list[str]
    seen: list[str]
    reason: SkipReason | None


class BatchReading:
    """The three reads of one batch of invoices, in order, then their verdicts:

        reading = BatchReading(batch)
        lines = run(reading.lines_of_invoices())
        on_schedules = run(reading.lines_on_schedules(lines))
        verdicts = reading.verdicts(run(reading.other_invoices(on_schedules)))

    where `run` returns every record of each query (all its pages).
    """

    def __init__(self, batch: Sequence[InvoiceRecord]) -> None:
        self.batch = tuple(batch)
        self._read = {invoice.Id: invoice for invoice in self.batch if invoice.Id}
        self._schedules_of: dict[str, set[str]] = {}
        self._on_schedule: dict[str, set[str]] = {}

    def lines_of_invoices(self) -> list[Query[InvoiceLineRecord]]:
        """1: the lines of the batch's invoices."""
        return select_in(INVOICE_LINE, "InvoiceId", list(self._read), *LINE_FIELDS)

    def lines_on_schedules(self, lines: Iterable[InvoiceLineRecord]) -> list[Query[InvoiceLineRecord]]:
        """2, from the records of 1: every line on the schedules those lines are on."""
        self._schedules_of = _grouped((line.InvoiceId, line.BillingScheduleId) for line in lines)
        schedules = sorted(set().union(*self._schedules_of.values()))
        return select_in(INVOICE_LINE, "BillingScheduleId", schedules, *LINE_FIELDS)

    def other_invoices(self, lines: Iterable[InvoiceLineRecord]) -> list[Query[InvoiceRecord]]:
        """3, from the records of 2: the invoices on those schedules that are not in the batch."""
        self._on_schedule = _grouped((line.BillingScheduleId, line.InvoiceId) for line in lines)
        others = sorted(set().union(*self._on_schedule.values()) - self._read.keys())
        return select_in(INVOICE, "Id", others, *ON_SCHEDULE_FIELDS)

    def verdicts(self, others: Iterable[InvoiceRecord]) -> list[Verdict]:
        """From the records of 3: each invoice of the batch, in order, with its verdict."""
        read = {**self._read, **{other.Id: other for other in others if other.Id}}
        found: list[Verdict] = []
        for invoice in self.batch:
            schedules = sorted(self._schedules_of.get(invoice.Id or "", ()))
            seen = sorted(set().union(*(self._on_schedule.get(schedule, set()) for schedule in schedules)))
            reason = skip_reason(invoice, (read[other] for other in seen if other in read))
            found.append(Verdict(invoice, schedules, seen, reason))
        return found


def _grouped(pairs: Iterable[tuple[str | None, str | None]]) -> dict[str, set[str]]:
    """key -> its values, from (key, value) pairs (a line's invoice and schedule, either way round)."""
    found: dict[str, set[str]] = defaultdict(set)
    for key, value in pairs:
        if key and value:
            found[key].add(value)
    return found
