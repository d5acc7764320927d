"""The SOQL subset: everything in it is accepted and means what the contract says; the rest is refused
with the contract's errorCode."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from simulators.salesforce import soql

BASE = "SELECT Id FROM Invoice"


def invoice(id_: str, **fields: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "id": id_,
        "number": f"INV-{id_}",
        "status": "Posted",
        "billing_account_id": "001000000000001AAA",
        "batch_run_id": None,
        "invoice_date": date(2025, 11, 1),
        "due_date": date(2025, 12, 1),
        "posted_date": datetime(2025, 11, 1, 6, tzinfo=UTC),
        "total_amount": Decimal("100.00"),
        "total_with_tax": Decimal("108.25"),
        "balance": Decimal("108.25"),
        "net_payments": Decimal("0.00"),
        "net_credits": Decimal("0.00"),
        "currency": "USD",
        "description": None,
    }
    values.update(fields)
    return SimpleNamespace(**values)


ROWS = [
    invoice("3tt5g000000000BAAA", status="Posted", batch_run_id="7Bk5g00000000aAAAA", description="Monthly"),
    invoice("3tt5g000000000AAAA", status="Voided", batch_run_id="7Bk5g00000000aAAAA", balance=Decimal("0.00")),
    invoice("3tt5g000000000aAAA", status="posted", batch_run_id="7Bk5g00000000AAAAA", description="It's late"),
    invoice("3tt5g000000000CAAA", status="Void In Progress", batch_run_id=None, balance=Decimal("50")),
]


def ids(text: str) -> list[str]:
    query = soql.parse(text)
    return [row.id for row in query.run(ROWS)]


class TestAccepted:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # `=` on text ignores case; on ids it is exact
            (f"{BASE} WHERE Status = 'POSTED'", ["3tt5g000000000BAAA", "3tt5g000000000aAAA"]),
            (f"{BASE} WHERE InvoiceBatchRunId = '7Bk5g00000000aAAAA'", ["3tt5g000000000BAAA", "3tt5g000000000AAAA"]),
            (f"{BASE} WHERE Id = '3tt5g000000000aaaa'", []),
            # `!=` matches nulls; `= null` / `!= null`
            (f"{BASE} WHERE InvoiceBatchRunId != '7Bk5g00000000aAAAA'", ["3tt5g000000000aAAA", "3tt5g000000000CAAA"]),
            (f"{BASE} WHERE Description != 'monthly'",
             ["3tt5g000000000AAAA", "3tt5g000000000aAAA", "3tt5g000000000CAAA"]),
            (f"{BASE} WHERE InvoiceBatchRunId = null", ["3tt5g000000000CAAA"]),
            (f"{BASE} WHERE Description != null", ["3tt5g000000000BAAA", "3tt5g000000000aAAA"]),
            # IN, case-blind on text, exact on ids
            (f"{BASE} WHERE Status IN ('voided', 'VOID IN PROGRESS')", ["3tt5g000000000AAAA", "3tt5g000000000CAAA"]),
            (f"{BASE} WHERE Id IN ('3tt5g000000000AAAA', '3tt5g000000000CAAB')", ["3tt5g000000000AAAA"]),
            # currency: bare numbers, > and <, = compares the value (50 = 50.00)
            (f"{BASE} WHERE Balance > 100", ["3tt5g000000000BAAA", "3tt5g000000000aAAA"]),
            (f"{BASE} WHERE Balance < 0.01", ["3tt5g000000000AAAA"]),
            (f"{BASE} WHERE Balance = 50.00", ["3tt5g000000000CAAA"]),
            (f"{BASE} WHERE Balance != 108.25 AND Balance > -1", ["3tt5g000000000AAAA", "3tt5g000000000CAAA"]),
            # escaped quotes and backslashes
            (f"{BASE} WHERE Description = 'it\\'s LATE'", ["3tt5g000000000aAAA"]),
            # ORDER BY Id (case-sensitive ids, both directions), LIMIT, keywords in any case
            (f"{BASE} ORDER BY Id",
             ["3tt5g000000000AAAA", "3tt5g000000000BAAA", "3tt5g000000000CAAA", "3tt5g000000000aAAA"]),
            (f"{BASE} ORDER BY id DESC LIMIT 2", ["3tt5g000000000aAAA", "3tt5g000000000CAAA"]),
            ("select id from INVOICE where STATUS = 'posted' and balance > 0 order by ID asc limit 1",
             ["3tt5g000000000BAAA"]),
            (f"{BASE} LIMIT 0", []),
        ],
    )  # fmt: skip
    def test_filters_order_and_limit(self, text: str, expected: list[str]) -> None:
        assert ids(text) == expected

    def test_without_order_by_every_match_comes_once(self) -> None:
        assert sorted(ids(BASE)) == sorted(row.id for row in ROWS)

    def test_an_index_narrows_the_records_but_never_the_answer(self) -> None:
        by_id = {row.id: row for row in ROWS}
        asked: list[tuple[str, tuple[str, ...]]] = []

        def seek(field: str, values: tuple[str, ...]) -> list[SimpleNamespace] | None:
            asked.append((field, values))
            return [by_id[v] for v in values if v in by_id] if field == "Id" else None

        query = soql.parse(
            f"{BASE} WHERE Status != 'Voided' AND Id IN ('3tt5g000000000CAAA', '3tt5g000000000BAAA', "
            "'3tt5g000000000CAAA', '3tt5g000000000AAAA') ORDER BY Id"
        )
        assert [r.id for r in query.run(ROWS, seek)] == ["3tt5g000000000BAAA", "3tt5g000000000CAAA"]
        assert [r.id for r in query.run(ROWS)] == ["3tt5g000000000BAAA", "3tt5g000000000CAAA"]
        assert asked == [
            ("Id", ("3tt5g000000000CAAA", "3tt5g000000000BAAA", "3tt5g000000000CAAA", "3tt5g000000000AAAA"))
        ]
        unindexed = soql.parse(f"{BASE} WHERE InvoiceBatchRunId = '7Bk5g00000000aAAAA'")
        assert len(unindexed.run(ROWS, seek)) == 2  # no index on that field here: every record is read

    def test_count_and_its_limit(self) -> None:
        query = soql.parse("SELECT COUNT() FROM Invoice WHERE Status != 'Voided' LIMIT 2")
        assert query.count
        assert len(query.run(ROWS)) == 2

    def test_projection_is_canonical_case_with_attributes_and_nulls(self) -> None:
        query = soql.parse("SELECT id, STATUS, balance, postedDate, InvoiceDate, description FROM invoice")
        record = query.project(ROWS[0], "/services/data/v62.0/sobjects/Invoice")
        assert record == {
            "attributes": {"type": "Invoice", "url": "/services/data/v62.0/sobjects/Invoice/3tt5g000000000BAAA"},
            "Id": "3tt5g000000000BAAA",
            "Status": "Posted",
            "Balance": Decimal("108.25"),
            "PostedDate": "2025-11-01T06:00:00.000+0000",
            "InvoiceDate": "2025-11-01",
            "Description": "Monthly",
        }
        assert query.project(ROWS[1], "")["Description"] is None

    def test_in_takes_two_hundred_values(self) -> None:
        values = ", ".join(f"'3tt5g{i:013d}'" for i in range(200))
        assert soql.parse(f"{BASE} WHERE Id IN ({values})").run(ROWS) == []

    @pytest.mark.parametrize(
        "text",
        [
            "SELECT Id, InvoiceId, BillingScheduleId, Name, Type, LineAmount, TaxAmount, InvoiceLineStartDate, "
            "InvoiceLineEndDate FROM InvoiceLine WHERE InvoiceId IN ('3tt5g000000000AAAA') AND LineAmount > 0",
            "SELECT Id, BillingAccountId, Status, BilledAmount FROM BillingSchedule WHERE Status != 'Processing'",
        ],
    )
    def test_the_other_objects(self, text: str) -> None:
        assert soql.parse(text).run([]) == []


class TestRefused:
    @pytest.mark.parametrize(
        ("text", "code"),
        [
            # outside the subset
            (f"{BASE} WHERE Status = 'Posted' OR Status = 'Voided'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE NOT Status = 'Posted'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status LIKE 'Post%'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Balance <= 5", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Balance >= 5", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Balance <> 5", "MALFORMED_QUERY"),
            (f"{BASE} WHERE (Status = 'Posted')", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status = 'Posted' AND (Balance > 5)", "MALFORMED_QUERY"),
            ("SELECT Invoice.Status FROM InvoiceLine", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Invoice.Status = 'Posted'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Id IN (SELECT InvoiceId FROM InvoiceLine)", "MALFORMED_QUERY"),
            ("SELECT Id, (SELECT Id FROM InvoiceLines) FROM Invoice", "MALFORMED_QUERY"),
            (f"{BASE} WHERE InvoiceDate = 2025-11-01", "MALFORMED_QUERY"),
            (f"{BASE} WHERE InvoiceDate = '2025-11-01'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE PostedDate > 5", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status > 'A'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status IN ('Posted', null)", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Balance > null", "MALFORMED_QUERY"),
            (f"{BASE} ORDER BY InvoiceNumber", "MALFORMED_QUERY"),
            (f"{BASE} ORDER BY Id NULLS FIRST", "MALFORMED_QUERY"),
            (f"{BASE} ORDER BY Id, Status", "MALFORMED_QUERY"),
            (f"{BASE} LIMIT 5 OFFSET 5", "MALFORMED_QUERY"),
            (f"{BASE} LIMIT 5 ORDER BY Id", "MALFORMED_QUERY"),
            (f"{BASE} LIMIT -1", "MALFORMED_QUERY"),
            (f"{BASE} LIMIT 1.5", "MALFORMED_QUERY"),
            (f"{BASE} GROUP BY Status", "MALFORMED_QUERY"),
            (f"{BASE} FOR UPDATE", "MALFORMED_QUERY"),
            # syntax
            ("SELECT FROM Invoice", "MALFORMED_QUERY"),
            ("SELECT * FROM Invoice", "MALFORMED_QUERY"),
            ("SELECT Id, FROM Invoice", "MALFORMED_QUERY"),
            ("SELECT Id Invoice", "MALFORMED_QUERY"),
            ("SELECT Id, COUNT() FROM Invoice", "MALFORMED_QUERY"),
            ("SELECT Id, Id FROM Invoice", "MALFORMED_QUERY"),
            (f"{BASE} WHERE", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status = 'Posted", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status = 'bad \\q escape'", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Status = :posted", "MALFORMED_QUERY"),
            (f"{BASE} WHERE Id IN ()", "MALFORMED_QUERY"),
            (f"{BASE};", "MALFORMED_QUERY"),
            ("DELETE FROM Invoice", "MALFORMED_QUERY"),
            ("", "MALFORMED_QUERY"),
            # fields: unknown, quoted number, unquoted string
            ("SELECT Id, Amount FROM Invoice", "INVALID_FIELD"),
            ("SELECT InvoiceId FROM Invoice", "INVALID_FIELD"),
            (f"{BASE} WHERE Foo = 'x'", "INVALID_FIELD"),
            (f"{BASE} WHERE Balance > '5'", "INVALID_FIELD"),
            (f"{BASE} WHERE Balance = 'abc'", "INVALID_FIELD"),
            (f"{BASE} WHERE Status = Posted", "INVALID_FIELD"),
            (f"{BASE} WHERE Id = 5", "INVALID_FIELD"),
            (f"{BASE} WHERE Status IN ('Posted', 5)", "INVALID_FIELD"),
            # objects
            ("SELECT Id FROM Account", "INVALID_TYPE"),
            ("SELECT Id FROM Invoice__c", "INVALID_TYPE"),
        ],
    )  # fmt: skip
    def test_refusal_code(self, text: str, code: str) -> None:
        with pytest.raises(soql.SoqlError) as refused:
            soql.parse(text)
        assert refused.value.error_code == code
        assert refused.value.message

    def test_in_refuses_more_than_two_hundred_values(self) -> None:
        values = ", ".join(f"'3tt5g{i:013d}'" for i in range(201))
        with pytest.raises(soql.SoqlError) as refused:
            soql.parse(f"{BASE} WHERE Id IN ({values})")
        assert refused.value.error_code == "MALFORMED_QUERY"
        assert "200" in refused.value.message
