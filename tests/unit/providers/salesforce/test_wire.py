"""Reading what Salesforce sends: tolerant of extras and nulls, exact with money, strict with floats."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pydantic
import pytest

from orchestrator.adapters.providers.http import decode_json
from orchestrator.adapters.providers.salesforce.wire import (
    ApiUsage,
    AsyncResponse,
    BillingScheduleRecord,
    FieldKind,
    InvoiceLineRecord,
    InvoiceRecord,
    QueryPage,
    RecoveryResults,
    TokenResponse,
    error_items,
    parse_limit_info,
)

PAGE = b"""{"totalSize": 1512, "done": false, "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-200",
 "records": [{"attributes": {"type": "Invoice", "url": "/services/data/v62.0/sobjects/Invoice/3tt5g00000000G9AAI"},
              "Id": "3tt5g00000000G9AAI", "Status": "Posted", "Balance": 321.52, "TotalAmountWithTax": 321.52,
              "PostedDate": "2025-10-01T06:00:00.000+0000", "InvoiceDate": "2025-10-01", "DueDate": null,
              "SettlementStatus": "Unsettled", "NetPaymentsApplied": 0}]}"""


def test_a_query_page_as_the_contract_shows_it() -> None:
    page = QueryPage[InvoiceRecord].model_validate(decode_json(PAGE))
    assert (page.totalSize, page.done, page.nextRecordsUrl) == (
        1512,
        False,
        "/services/data/v62.0/query/01gD0000002HU6KIAW-200",
    )
    [record] = page.records
    assert record.attributes is not None
    assert record.attributes.type == "Invoice"
    assert record.Id == "3tt5g00000000G9AAI"
    assert record.Balance == Decimal("321.52")
    assert isinstance(record.Balance, Decimal)
    assert record.NetPaymentsApplied == 0
    assert record.PostedDate == datetime(2025, 10, 1, 6, tzinfo=UTC)
    assert record.InvoiceDate == date(2025, 10, 1)
    assert record.DueDate is None
    assert record.InvoiceNumber is None  # not selected


def test_last_page_and_null_records() -> None:
    page = QueryPage[InvoiceLineRecord].model_validate({"totalSize": 0, "done": True, "records": None})
    assert (page.records, page.nextRecordsUrl) == ([], None)


@pytest.mark.parametrize(
    "moment", ["2025-10-01T06:00:00.000+0000", "2025-10-01T06:00:00Z", "2025-10-01T08:00:00+02:00"]
)
def test_date_times_in_any_offset_form(moment: str) -> None:
    assert InvoiceRecord.model_validate({"PostedDate": moment}).PostedDate == datetime(2025, 10, 1, 6, tzinfo=UTC)


def test_money_from_numeric_strings_but_never_from_floats() -> None:
    assert BillingScheduleRecord.model_validate({"BilledAmount": "10.10"}).BilledAmount == Decimal("10.10")
    with pytest.raises(pydantic.ValidationError, match="float"):
        InvoiceRecord.model_validate(json.loads('{"Balance": 0.1}'))


def test_field_kinds_come_from_the_models() -> None:
    kinds = InvoiceRecord.field_kinds()
    assert kinds["Id"] is FieldKind.ID
    assert kinds["BillingAccountId"] is FieldKind.ID
    assert kinds["Status"] is FieldKind.TEXT
    assert kinds["Balance"] is FieldKind.CURRENCY
    assert kinds["InvoiceDate"] is FieldKind.DATE
    assert kinds["PostedDate"] is FieldKind.DATETIME
    assert "attributes" not in kinds
    assert set(InvoiceLineRecord.field_kinds()) == {
        "Id", "InvoiceId", "BillingScheduleId", "Name", "Type", "LineAmount", "TaxAmount", "InvoiceLineStartDate",
        "InvoiceLineEndDate",
    }  # fmt: skip
    assert set(BillingScheduleRecord.field_kinds()) == {"Id", "BillingAccountId", "Status", "BilledAmount"}


def test_async_response_and_recovery_results() -> None:
    ok = AsyncResponse.model_validate({"success": True, "requestIdentifier": "ae6f", "errors": None, "extra": 1})
    assert (ok.success, ok.requestIdentifier, ok.errors) == (True, "ae6f", [])
    results = RecoveryResults.model_validate(
        {
            "recoveryResults": [
                {
                    "invoiceId": "3tt",
                    "invoiceStatus": "Posted",
                    "success": True,
                    "invoiceErrors": None,
                    "billingSchedules": [{"billingScheduleId": "44b", "billingScheduleStatus": "ReadyForInvoicing"}],
                }
            ]
        }
    )
    [result] = results.recoveryResults
    assert (result.invoiceStatus, result.invoiceErrors) == ("Posted", [])
    assert result.billingSchedules[0].billingScheduleStatus == "ReadyForInvoicing"


@pytest.mark.parametrize(
    ("payload", "described"),
    [
        ([{"message": "m", "errorCode": "INVALID_INPUT", "fields": None}], ["INVALID_INPUT: m"]),
        ({"message": "only a message"}, ["only a message"]),
        ("<html>", []),
        ([1, "x", {"errorCode": "NOT_FOUND"}], ["NOT_FOUND"]),
    ],
)
def test_error_items(payload: object, described: list[str]) -> None:
    assert [item.describe() for item in error_items(payload)] == described


def test_the_token_is_a_secret() -> None:
    token = TokenResponse.model_validate(
        {"access_token": "00D!secret-token", "instance_url": "https://x.my.salesforce.com", "issued_at": "1"}
    )
    assert "secret-token" not in repr(token)
    assert token.access_token.get_secret_value() == "00D!secret-token"
    with pytest.raises(pydantic.ValidationError):
        TokenResponse.model_validate({"token_type": "Bearer"})


@pytest.mark.parametrize(
    ("header", "usage"),
    [
        ("api-usage=18/5000", ApiUsage(used=18, allocation=5000)),
        ("api-usage=25/5000, per-app-api-usage=17/250(appName=sample-app)", ApiUsage(used=25, allocation=5000)),
        ("per-app-api-usage=17/250(appName=x), api-usage=3/100", ApiUsage(used=3, allocation=100)),
        ("per-app-api-usage=17/250(appName=x)", None),
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_limit_info(header: str | None, usage: ApiUsage | None) -> None:
    assert parse_limit_info(header) == usage


def test_usage_share() -> None:
    assert ApiUsage(used=90, allocation=100).share == 0.9
    assert ApiUsage(used=0, allocation=0).share == 1.0
