"""The object-query builder: the decided subset, and nothing else."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from orchestrator.adapters.providers.aria.queries import InvoiceQuery, bill_run, one_invoice


def test_a_bill_run_leaves_rebill_invoices_out() -> None:
    assert bill_run(date(2025, 10, 1)).text == "bill_date = 2025-10-01 AND invoice_type_cd != R ORDER BY invoice_no ASC"


def test_a_bill_run_of_one_account() -> None:
    assert (
        bill_run(date(2025, 10, 1), acct_no=3100135).text
        == "bill_date = 2025-10-01 AND acct_no = 3100135 AND invoice_type_cd != R ORDER BY invoice_no ASC"
    )


def test_one_invoice() -> None:
    assert one_invoice(41000007).text == "invoice_no = 41000007 ORDER BY invoice_no ASC"


def test_descending_and_no_condition() -> None:
    assert InvoiceQuery(descending=True).text == "ORDER BY invoice_no DESC"


def test_a_query_is_immutable() -> None:
    base = InvoiceQuery()
    base.where("acct_no", 1)
    assert base.conditions == ()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("last_updated", "2025-10-01", "not a supported"),
        ("bill_date", "2025-10-01", "takes a date"),
        ("bill_date", datetime(2025, 10, 1), "takes a date"),
        ("acct_no", "3100135", "takes a int"),
        ("acct_no", True, "takes a int"),
        ("client_acct_id", "ACCT 1 OR 1=1", "cannot carry"),
        ("client_acct_id", "", "cannot carry"),
        ("invoice_type_cd", "R'", "cannot carry"),
    ],
)
def test_anything_else_is_refused(key: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InvoiceQuery().where(key, value)  # type: ignore[arg-type]  # ill-typed on purpose: refused at run time too
