"""The SOQL builder: what it writes for each part of the subset, how it quotes, and what it will not write."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from orchestrator.adapters.providers.salesforce.soql import (
    BILLING_SCHEDULE,
    INVOICE,
    INVOICE_LINE,
    Query,
    count,
    eq,
    gt,
    in_batches,
    is_in,
    lt,
    ne,
    quote,
    select,
    select_in,
)
from orchestrator.adapters.providers.salesforce.wire import Record

RUN = "7Bk5g00000000aAAAA"


@pytest.mark.parametrize(
    ("query", "soql"),
    [
        (select(INVOICE, "Id"), "SELECT Id FROM Invoice"),
        (
            select(INVOICE, "Id", "Status", "Balance", "TotalAmountWithTax", "PostedDate")
            .where(eq("InvoiceBatchRunId", RUN), eq("Status", "Posted"))
            .order_by_id(),
            "SELECT Id, Status, Balance, TotalAmountWithTax, PostedDate FROM Invoice "
            f"WHERE InvoiceBatchRunId = '{RUN}' AND Status = 'Posted' ORDER BY Id ASC",
        ),
        (
            select(INVOICE_LINE, "Id", "InvoiceId", "BillingScheduleId").where(is_in("InvoiceId", ["3ttA", "3ttB"])),
            "SELECT Id, InvoiceId, BillingScheduleId FROM InvoiceLine WHERE InvoiceId IN ('3ttA', '3ttB')",
        ),
        (
            count(INVOICE).where(eq("InvoiceBatchRunId", RUN)),
            f"SELECT COUNT() FROM Invoice WHERE InvoiceBatchRunId = '{RUN}'",
        ),
        (
            select(BILLING_SCHEDULE, "Id").where(ne("Status", None)),
            "SELECT Id FROM BillingSchedule WHERE Status != null",
        ),
        (select(INVOICE, "Id").where(eq("Description", None)), "SELECT Id FROM Invoice WHERE Description = null"),
        (
            select(INVOICE, "Id").where(
                gt("Balance", 0), lt("Balance", Decimal("1E+3")), ne("NetPaymentsApplied", Decimal("0.00"))
            ),
            "SELECT Id FROM Invoice WHERE Balance > 0 AND Balance < 1000 AND NetPaymentsApplied != 0.00",
        ),
        (
            select(INVOICE, "Id").where(is_in("Balance", [Decimal("-1.5"), 2])),
            "SELECT Id FROM Invoice WHERE Balance IN (-1.5, 2)",
        ),
        (
            select(INVOICE, "Id").order_by_id(descending=True).limit(5),
            "SELECT Id FROM Invoice ORDER BY Id DESC LIMIT 5",
        ),
        (select(INVOICE, "Id").limit(0), "SELECT Id FROM Invoice LIMIT 0"),
    ],
)
def test_writes_the_subset(query: Query[Record], soql: str) -> None:
    assert query.soql == soql
    assert str(query) == soql


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("plain", "'plain'"),
        ("it's", "'it\\'s'"),
        ("back\\slash", "'back\\\\slash'"),
        ("\\'", "'\\\\\\''"),
        ("x' OR Id != '", "'x\\' OR Id != \\''"),
        ("line\nbreak\r\ttab", "'line\\nbreak\\r\\ttab'"),
        ('"double"', "'\"double\"'"),
        ("", "''"),
        ("Ünïcode ✓", "'Ünïcode ✓'"),
    ],
)
def test_quote(text: str, literal: str) -> None:
    assert quote(text) == literal


def test_a_value_cannot_leave_its_literal() -> None:
    hostile = "x' OR Status != 'y"
    soql = select(INVOICE, "Id").where(eq("Description", hostile)).soql
    assert soql == "SELECT Id FROM Invoice WHERE Description = 'x\\' OR Status != \\'y'"
    assert soql.count(" OR ") == 1  # inside the literal only: the contract test parses it with the simulator


@pytest.mark.parametrize(
    "build",
    [
        lambda: select(INVOICE),  # no field
        lambda: select(INVOICE, "status"),  # not canonical case
        lambda: select(INVOICE, "InvoiceId"),  # another object's field
        lambda: select(INVOICE, "Invoice.Status"),
        lambda: select(INVOICE, "Id", "Id"),
        lambda: select(INVOICE, "Id").where(eq("InvoiceDate", "2025-11-01")),  # dates are not filtered
        lambda: select(INVOICE, "Id").where(ne("PostedDate", None)),
        lambda: select(INVOICE, "Id").where(gt("Status", 5)),  # > < on currency only
        lambda: select(INVOICE, "Id").where(eq("Status", 5)),  # text takes strings
        lambda: select(INVOICE, "Id").where(eq("Id", 5)),
        lambda: select(INVOICE, "Id").where(eq("Balance", "5")),  # currency takes numbers
        lambda: eq("Balance", 1.5),  # type: ignore[arg-type]  # never a float: the type says so, and so must the runtime
        lambda: eq("Balance", True),  # nor a bool
        lambda: eq("Balance", Decimal("NaN")),
        lambda: gt("Balance", None),  # type: ignore[arg-type]  # null only with = and !=, at run time too
        lambda: is_in("Id", []),
        lambda: is_in("Id", [f"3tt{i}" for i in range(201)]),
        lambda: is_in("Id", ["a", None]),  # type: ignore[list-item]  # null in a list, on purpose: refused at run time
        lambda: select(INVOICE, "Id").limit(-1),
    ],
)
def test_refuses_what_is_outside(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message is specific; the table is about refusing
        build()


def test_queries_are_values() -> None:
    base = select(INVOICE, "Id")
    narrowed = base.where(eq("Status", "Posted"))
    assert base.soql == "SELECT Id FROM Invoice"
    assert narrowed.soql == "SELECT Id FROM Invoice WHERE Status = 'Posted'"
    assert narrowed == select(INVOICE, "Id").where(eq("Status", "Posted"))
    assert count(INVOICE).is_count
    assert not base.is_count


def test_two_hundred_values_is_the_most_in_one_in() -> None:
    values = [f"3tt{i:015d}" for i in range(200)]
    assert select(INVOICE, "Id").where(is_in("Id", values)).soql.count("'3tt") == 200


def test_in_batches() -> None:
    values = [str(i) for i in range(450)]
    batches = list(in_batches(values))
    assert [len(b) for b in batches] == [200, 200, 50]
    assert [v for b in batches for v in b] == values
    assert list(in_batches(values[:3], size=2)) == [("0", "1"), ("2",)]
    assert list(in_batches([])) == []
    with pytest.raises(ValueError, match="200"):
        list(in_batches(values, size=201))


def test_select_in_one_query_per_200_values() -> None:
    values = [f"3tt{i:015d}" for i in range(450)]
    queries = select_in(INVOICE_LINE, "InvoiceId", values, "Id", "BillingScheduleId")
    assert [q.soql.count("'3tt") for q in queries] == [200, 200, 50]
    assert queries[2].soql == (
        "SELECT Id, BillingScheduleId FROM InvoiceLine WHERE InvoiceId IN ("
        + ", ".join(f"'{v}'" for v in values[400:])
        + ")"
    )
    assert select_in(INVOICE, "Id", [], "Id") == []
