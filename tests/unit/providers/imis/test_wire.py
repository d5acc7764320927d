"""Reading what iMIS sends: tolerant of versions, exact with money."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from orchestrator.adapters.providers.imis.api import to_batch, to_billing_log, to_invoice
from orchestrator.adapters.providers.imis.model import (
    AccountingMethod,
    AutoPayOption,
    BatchStatus,
    BillingLogStatus,
)
from orchestrator.adapters.providers.imis.wire import (
    BatchSummaryData,
    BillingLogData,
    ErrorsBody,
    InvoiceSummaryData,
    MonetaryAmountData,
    PagedResult,
    ServiceResponse,
    TokenResponse,
    decode_json,
    parse_batch_status,
    unwrap,
)

ASI = "Asi.Contracts"


def money(amount: str, *, assembly: str = ASI) -> str:
    return (
        f'{{"$type": "Asi.Soa.Core.DataContracts.MonetaryAmountData, {assembly}", "Amount": {amount},'
        f' "Currency": {{"$type": "Asi.Soa.Core.DataContracts.CurrencyData, {assembly}",'
        f' "CurrencyCode": "USD", "DecimalPositions": 2}}, "IsAmountDefined": true}}'
    )


def invoice_json(**overrides: str) -> str:
    fields = {
        "$type": '"Asi.Soa.Commerce.DataContracts.InvoiceSummaryData, Asi.Contracts"',
        "InvoiceId": '"8158"',
        "InvoiceNumber": "2317",
        "AccountingMethod": "0",
        "InvoiceAmount": money("95.00"),
        "Balance": money("95.00"),
        "PaymentAmount": money("0.00"),
        "PendingPaymentAmount": money("0"),
        "BillToParty": '{"$type": "Asi.Soa.Membership.DataContracts.PartySummaryData, Asi.Contracts",'
        ' "Id": "101", "PartyId": "101", "Name": "Jane Doe"}',
        "InvoiceDate": '"2025-09-09T15:32:43.8397624Z"',
        "BillingLogKey": '"a9f0db70-d684-481a-84cd-d8fa1cd8f404"',
    }
    fields.update(overrides)
    return "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"


def parse_invoice(text: str) -> InvoiceSummaryData:
    return InvoiceSummaryData.model_validate(decode_json(text))


class TestEnums:
    @pytest.mark.parametrize(
        ("raw", "status"),
        [
            ("5", BillingLogStatus.REVERSING),
            ('"5"', BillingLogStatus.REVERSING),
            ('"Reversing invoices"', BillingLogStatus.REVERSING),
            ('"ReversingInvoices"', BillingLogStatus.REVERSING),
            ('"reversing_invoices"', BillingLogStatus.REVERSING),
            ('"UnpostedBatch"', BillingLogStatus.UNPOSTED_BATCH),
            ('"Batch deleted"', BillingLogStatus.BATCH_DELETED),
            ('"Completed"', BillingLogStatus.COMPLETED),
            (
                '{"$type": "Asi.Soa.Commerce.DataContracts.BillingLogStatus, Asi.Contracts", "$value": 1}',
                BillingLogStatus.PROCESSING,
            ),
        ],
    )
    def test_status(self, raw: str, status: BillingLogStatus) -> None:
        log = BillingLogData.model_validate(decode_json(f'{{"BillingLogKey": "k", "Status": {raw}}}'))
        assert log.Status is status

    @pytest.mark.parametrize(
        ("raw", "method"),
        [
            ("0", AccountingMethod.CASH),
            ('"Cash"', AccountingMethod.CASH),
            ("1", AccountingMethod.ACCRUAL),
            ('"ACCRUAL"', AccountingMethod.ACCRUAL),
        ],
    )
    def test_accounting_method(self, raw: str, method: AccountingMethod) -> None:
        assert parse_invoice(invoice_json(AccountingMethod=raw)).AccountingMethod is method

    @pytest.mark.parametrize(
        ("raw", "option"),
        [
            ("0", AutoPayOption.NOT_DEFINED),
            ('"NotDefined"', AutoPayOption.NOT_DEFINED),
            ("1", AutoPayOption.BILL_ALL_CONTACTS),
            ('"BillAllContacts"', AutoPayOption.BILL_ALL_CONTACTS),
            ('"BillOnlyAutoPayEnrollments"', AutoPayOption.BILL_ONLY_AUTOPAY_ENROLLMENTS),
            ('"BillOnlyNonAutoPayContacts"', AutoPayOption.BILL_ONLY_NON_AUTOPAY_CONTACTS),
            ("3", AutoPayOption.BILL_ONLY_NON_AUTOPAY_CONTACTS),
        ],
    )
    def test_auto_pay_option(self, raw: str, option: AutoPayOption) -> None:
        log = BillingLogData.model_validate(
            decode_json(f'{{"BillingLogKey": "k", "Status": 2, "AutoPayOption": {raw}}}')
        )
        assert log.AutoPayOption is option

    @pytest.mark.parametrize("raw", ["9", '"Exploded"', "true", "1.5"])
    def test_unknown_values_are_refused(self, raw: str) -> None:
        with pytest.raises(pydantic.ValidationError, match="unknown BillingLogStatus"):
            BillingLogData.model_validate(decode_json(f'{{"BillingLogKey": "k", "Status": {raw}}}'))

    def test_batch_status(self) -> None:
        assert parse_batch_status("posted") is BatchStatus.POSTED
        assert parse_batch_status("Ready") is BatchStatus.READY
        assert parse_batch_status("Weird") is BatchStatus.UNKNOWN
        assert parse_batch_status(None) is BatchStatus.UNKNOWN


class TestMoney:
    def test_amounts_are_exact_decimals(self) -> None:
        invoice = parse_invoice(
            invoice_json(InvoiceAmount=money("0.3"), Balance=money("0.1"), PaymentAmount=money("0.2"))
        )
        assert invoice.Balance.value + invoice.PaymentAmount.value == invoice.InvoiceAmount.value
        assert invoice.InvoiceAmount.value == Decimal("0.3")

    def test_representation_is_kept(self) -> None:
        invoice = parse_invoice(invoice_json())
        assert str(invoice.InvoiceAmount.value) == "95.00"
        assert invoice.InvoiceAmount.Currency is not None
        assert invoice.InvoiceAmount.Currency.CurrencyCode == "USD"

    def test_a_long_fraction_is_not_rounded_through_float(self) -> None:
        invoice = parse_invoice(invoice_json(Balance=money("0.30000000000000004441")))
        assert invoice.Balance.value == Decimal("0.30000000000000004441")

    def test_large_amounts_keep_every_cent(self) -> None:
        invoice = parse_invoice(invoice_json(InvoiceAmount=money("12345678901234567.89")))
        assert invoice.InvoiceAmount.value == Decimal("12345678901234567.89")

    @pytest.mark.parametrize("raw", ["95.00", '"95.00"', '{"$type": "System.Decimal", "$value": 95.00}'])
    def test_bare_or_wrapped_amount(self, raw: str) -> None:
        assert parse_invoice(invoice_json(InvoiceAmount=raw)).InvoiceAmount.value == Decimal("95.00")

    def test_undefined_amount_counts_as_zero(self) -> None:
        invoice = parse_invoice(invoice_json(PendingPaymentAmount='{"Amount": null, "IsAmountDefined": false}'))
        assert invoice.PendingPaymentAmount.value == Decimal("0")

    def test_a_float_never_reaches_a_money_field(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="float"):
            MonetaryAmountData.model_validate({"Amount": 0.1})
        with pytest.raises(pydantic.ValidationError, match="float"):
            MonetaryAmountData.model_validate(json.loads('{"Amount": 0.1}'))

    def test_decode_json_refuses_nan(self) -> None:
        with pytest.raises(ValueError, match="NaN"):
            decode_json('{"Amount": NaN}')


class TestTolerance:
    def test_wrapped_primitives_and_other_assembly_names(self) -> None:
        text = invoice_json(
            **{
                "$type": '"Asi.Soa.Commerce.DataContracts.InvoiceSummaryData, Asi.Contracts.V10"',
                "InvoiceId": '{"$type": "System.String, mscorlib", "$value": "CASH:23415:a9f0db70"}',
                "InvoiceNumber": '{"$type": "System.Int32", "$value": 2317}',
                "InvoiceAmount": money("95.00", assembly="Asi.Contracts.Legacy"),
            }
        )
        invoice = parse_invoice(text)
        assert invoice.InvoiceId == "CASH:23415:a9f0db70"
        assert invoice.InvoiceNumber == 2317

    def test_unknown_fields_are_ignored(self) -> None:
        invoice = parse_invoice(invoice_json(SomethingNew='{"x": [1, 2]}', Lines='{"$values": []}'))
        assert invoice.InvoiceId == "8158"

    def test_numeric_ids_become_strings(self) -> None:
        assert parse_invoice(invoice_json(InvoiceId="8158")).InvoiceId == "8158"

    def test_legacy_cash_id_implies_cash_when_the_method_is_missing(self) -> None:
        data = decode_json(invoice_json(InvoiceId='"CASH:1:k"'))
        del data["AccountingMethod"]
        assert InvoiceSummaryData.model_validate(data).AccountingMethod is AccountingMethod.CASH
        data["InvoiceId"] = "8158"
        with pytest.raises(pydantic.ValidationError, match="AccountingMethod"):
            InvoiceSummaryData.model_validate(data)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("2025-09-01T00:00:00Z", datetime(2025, 9, 1, tzinfo=UTC)),
            ("2025-09-01T00:00:00", datetime(2025, 9, 1)),
            ("2025-09-01T00:00:00-04:00", datetime(2025, 9, 1, tzinfo=timezone(timedelta(hours=-4)))),
            ("2025-09-09T15:32:43.8397624Z", datetime(2025, 9, 9, 15, 32, 43, 839762, tzinfo=UTC)),
            ("2025-09-09T15:32:43.8397624", datetime(2025, 9, 9, 15, 32, 43, 839762)),
        ],
    )
    def test_dates_with_or_without_offset(self, raw: str, expected: datetime) -> None:
        log = BillingLogData.model_validate({"BillingLogKey": "k", "Status": 2, "EffectiveDate": raw})
        assert log.EffectiveDate == expected
        assert (log.EffectiveDate is not None and log.EffectiveDate.utcoffset()) == expected.utcoffset()

    def test_unwrap(self) -> None:
        assert unwrap({"$type": "x", "$value": {"$type": "y", "$value": 3}}) == 3
        assert unwrap({"$type": "x", "$values": [{"$value": 1}, 2]}) == [1, 2]
        assert unwrap({"$type": "x", "$values": None}) == []
        assert unwrap({"a": 1}) == {"a": 1}


class TestPagedResult:
    PAGE = """{
      "$type": "Asi.Soa.Core.DataContracts.PagedResult`1[[...InvoiceSummaryData, Asi.Contracts]], Asi.Contracts",
      "Items": {"$type": "System.Collections.Generic.List`1[[InvoiceSummaryData, Asi.Contracts]], mscorlib",
                "$values": [%s, %s]},
      "Offset": 0, "Limit": 7, "Count": 2, "TotalCount": 50, "NextPageLink": null, "HasNext": true, "NextOffset": 7
    }"""

    def test_page(self) -> None:
        text = self.PAGE % (invoice_json(), invoice_json(InvoiceId='"8159"'))
        page = PagedResult[InvoiceSummaryData].model_validate(decode_json(text))
        assert [item.InvoiceId for item in page.Items] == ["8158", "8159"]
        assert (page.Limit, page.TotalCount, page.HasNext, page.NextOffset) == (7, 50, True, 7)

    def test_bare_items_list_and_missing_counters(self) -> None:
        page = PagedResult[InvoiceSummaryData].model_validate(decode_json(f'{{"Items": [{invoice_json()}]}}'))
        assert len(page.Items) == 1
        assert page.HasNext is None
        assert page.Offset is None

    def test_null_items(self) -> None:
        assert PagedResult[BillingLogData].model_validate({"Items": None}).Items == []


class TestReplies:
    def test_service_response(self) -> None:
        reply = ServiceResponse.model_validate(
            decode_json(
                '{"$type": "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts",'
                ' "IsSuccessStatusCode": true, "Message": null, "Result": {"$type": "System.Boolean", "$value": true}}'
            )
        )
        assert reply.Result is True
        assert not reply.refused

    def test_generic_execute_result_has_no_success_flag(self) -> None:
        reply = ServiceResponse.model_validate({"$type": "GenericExecuteResult", "Result": {"TaskLogId": "t"}})
        assert reply.IsSuccessStatusCode is None
        assert not reply.refused

    def test_token_is_secret(self) -> None:
        token = TokenResponse.model_validate(
            {"access_token": "opaque-token-value", "token_type": "bearer", "expires_in": 1199, "userName": "admin"}
        )
        assert "opaque-token-value" not in repr(token)
        assert token.access_token.get_secret_value() == "opaque-token-value"

    @pytest.mark.parametrize(
        ("body", "messages"),
        [
            ({"Errors": {"$values": [{"Message": "a", "FieldName": None}, {"Message": "b"}]}}, ["a", "b"]),
            ({"Errors": ["a"]}, ["a"]),
            ({"Message": "The request is invalid."}, ["The request is invalid."]),
            ({"error": "invalid_grant", "error_description": "bad password"}, ["bad password"]),
            ({}, []),
        ],
    )
    def test_errors_body(self, body: dict[str, Any], messages: list[str]) -> None:
        assert ErrorsBody.model_validate(body).messages() == messages


class TestMapping:
    def test_invoice(self) -> None:
        invoice = to_invoice(parse_invoice(invoice_json(AccountingMethod='"Accrual"')))
        assert invoice.invoice_id == "8158"
        assert invoice.number == 2317
        assert invoice.accounting_method is AccountingMethod.ACCRUAL
        assert invoice.amount == invoice.balance == Decimal("95.00")
        assert invoice.party_id == "101"
        assert invoice.party_name == "Jane Doe"
        assert invoice.billing_log_key == "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        assert invoice.skip_reason() is None

    def test_billing_log(self) -> None:
        seed = (
            '{"$type": "Asi.Soa.Commerce.DataContracts.BillingLogData, Asi.Contracts",'
            ' "BillingLogKey": "be2506c1", "BillingRunName": "Rebill", "BillingCycleName": "Regular Membership Fees",'
            ' "BillingType": "I", "BillingDate": "2025-09-09T15:32:43.8397624Z",'
            ' "EffectiveDate": "2025-09-01T00:00:00Z",'
            ' "Status": 5, "AccountingMethod": 0, "BillingPartyId": "101", "AutoPayOption": 0,'
            ' "OriginalBillingLogKey": "a9f0db70", "BatchId": "B1", "Information": "x", "UpdateInformation": {}}'
        )
        log = to_billing_log(BillingLogData.model_validate(decode_json(seed)))
        assert log.key == "be2506c1"
        assert log.cycle_name == "Regular Membership Fees"
        assert log.status is BillingLogStatus.REVERSING
        assert log.effective_date == datetime(2025, 9, 1, tzinfo=UTC)
        assert log.original_key == "a9f0db70"
        assert log.batch_id == "B1"
        assert log.party_id == "101"

    def test_batch(self) -> None:
        batch = to_batch(
            BatchSummaryData.model_validate({"BatchId": 17, "BatchStatus": "Posted", "TransactionCount": 3})
        )
        assert batch.batch_id == "17"
        assert batch.status is BatchStatus.POSTED
        assert batch.transaction_count == 3
