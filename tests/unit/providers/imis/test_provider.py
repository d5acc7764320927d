"""ImisApi: domain requests become the seed pages' bodies; replies become domain types."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.adapters.providers.imis import ImisApi, ImisClient, ImisProvider
from orchestrator.adapters.providers.imis.model import (
    AccountingMethod,
    AutoPayOption,
    BatchStatus,
    BillingLog,
    BillingLogStatus,
    ImisInvoice,
    Rebill,
    Reversal,
    ServerSideReversal,
)
from orchestrator.domain.errors import ProviderProtocolError, RunRefused
from orchestrator.services.ports import BillingProvider

from .conftest import FakeImis, json_response, ok

SEED_EXAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "seed_examples"
ORIGINAL_KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
TRACKING_KEY = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
NOW = datetime(2025, 9, 9, 15, 32, 43, 839762, tzinfo=UTC)

ORIGINAL = BillingLog(
    key=ORIGINAL_KEY,
    cycle_name="Regular Membership Fees",
    status=BillingLogStatus.COMPLETED,
    run_name="Regular Membership Fees",
    billing_type="I",
    effective_date=datetime(2025, 9, 1, tzinfo=UTC),
    accounting_method=AccountingMethod.CASH,
    auto_pay_option=AutoPayOption.NOT_DEFINED,
)


def seed(name: str) -> Any:
    return json.loads((SEED_EXAMPLES / name).read_text())


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@pytest.fixture
def provider(client: ImisClient) -> ImisApi:
    return ImisApi(client, page_size=7, now=lambda: NOW)


def test_the_provider_implements_the_port() -> None:
    for name, member in inspect.getmembers(BillingProvider, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = getattr(ImisProvider, name)
        assert list(inspect.signature(ours).parameters) == list(inspect.signature(member).parameters), name
    assert ImisProvider.name == "imis"


class TestSubmit:
    @pytest.fixture(autouse=True)
    def _task_route(self, imis: FakeImis) -> None:
        imis.route("POST", "/api/TaskDefinition/_execute", json_response(202, {"Result": {"TaskLogId": "task-9"}}))

    def test_bulk_reverse_and_rebill_is_the_seed_example(self, provider: ImisApi, imis: FakeImis) -> None:
        task_id = provider.submit(
            rebill=Rebill(
                original=ORIGINAL,
                run_name="Rebill: Regular Membership Fees",
                tracking_log_key=TRACKING_KEY,
                auto_post_batch=True,
            ),
            reversal=ServerSideReversal(billing_key=ORIGINAL_KEY),
        )
        assert task_id == "task-9"
        assert imis.api_requests()[0].content == compact(seed("task_bulk_reverse_and_rebill.json"))

    def test_single_contact(self, provider: ImisApi, imis: FakeImis) -> None:
        provider.submit(
            rebill=Rebill(
                original=ORIGINAL,
                run_name="Rebill: Regular Membership Fees for 101",
                tracking_log_key=None,
                auto_post_batch=True,
                party_id="101",
            ),
            reversal=ServerSideReversal(
                invoices=(
                    Reversal(
                        invoice_id="8158",
                        accounting_method=AccountingMethod.ACCRUAL,
                        adjustment_date=date(2025, 9, 9),
                        reason="",
                    ),
                )
            ),
        )
        expected = seed("task_single_contact.json")
        # The provider always keeps the reference to the original billing (AdditionalOption), which
        # the page's prose asks for and its single-contact example leaves out.
        bill = expected["Task"]["Actions"]["$values"][1]["BillGenerationData"]
        bill_with_reference = {
            "$type": bill["$type"],
            "IsRenewal": True,
            "AdditionalOption": {
                "$type": "Asi.Soa.Commerce.DataContracts.BillingAdditionalOptionsData, Asi.Contracts",
                "OriginalBillingLogKey": ORIGINAL_KEY,
            },
            **{key: value for key, value in bill.items() if key not in ("$type", "IsRenewal")},
        }
        expected["Task"]["Actions"]["$values"][1]["BillGenerationData"] = bill_with_reference
        assert imis.api_requests()[0].content == compact(expected)

    def test_rebill_alone(self, provider: ImisApi, imis: FakeImis) -> None:
        provider.submit(
            rebill=Rebill(
                original=ORIGINAL,
                run_name="Rebill: Regular Membership Fees",
                tracking_log_key=TRACKING_KEY,
                auto_post_batch=False,
            )
        )
        expected = seed("task_bulk_reverse_and_rebill.json")
        expected["Task"]["Actions"]["$values"] = expected["Task"]["Actions"]["$values"][1:]
        expected["Task"]["Actions"]["$values"][0]["AutomaticallyPostBatch"] = False
        assert imis.api_requests()[0].content == compact(expected)

    def test_server_side_reversal_alone(self, provider: ImisApi, imis: FakeImis) -> None:
        provider.submit(rebill=None, reversal=ServerSideReversal(billing_key=ORIGINAL_KEY))
        expected = seed("task_bulk_reverse_and_rebill.json")
        expected["Task"]["Actions"]["$values"] = expected["Task"]["Actions"]["$values"][:1]
        assert imis.api_requests()[0].content == compact(expected)

    def test_preview_calls_nothing(self, provider: ImisApi, imis: FakeImis) -> None:
        body = provider.preview_submit(rebill=None, reversal=ServerSideReversal(billing_key=ORIGINAL_KEY))
        assert body["OperationName"] == "TaskAdhocRequest"
        assert imis.requests == []

    def test_nothing_to_submit(self, provider: ImisApi) -> None:
        with pytest.raises(ValueError, match="rebill"):
            provider.submit(rebill=None)

    def test_both_a_billing_and_invoices(self, provider: ImisApi) -> None:
        reversal = Reversal("1", AccountingMethod.ACCRUAL, date(2025, 9, 9), "r")
        with pytest.raises(ValueError, match="not both"):
            provider.submit(rebill=None, reversal=ServerSideReversal(billing_key="k", invoices=(reversal,)))

    def test_a_log_without_effective_date_cannot_be_rebilled(self, provider: ImisApi) -> None:
        original = BillingLog(key="k", cycle_name="c", status=BillingLogStatus.COMPLETED)
        with pytest.raises(RunRefused, match="EffectiveDate"):
            provider.submit(rebill=Rebill(original=original, run_name="r", tracking_log_key=None, auto_post_batch=True))


class TestTrackingLog:
    def test_posts_a_reversing_log_pointing_at_the_original(self, provider: ImisApi, imis: FakeImis) -> None:
        def store(request: httpx.Request) -> httpx.Response:
            return json_response(201, json.loads(request.content))

        imis.route("POST", "/api/BillingLog", store)
        log = provider.create_tracking_log(ORIGINAL, key=TRACKING_KEY, run_name="Rebill: Regular Membership Fees")
        expected = seed("billinglog_post.json")
        expected["BillingRunName"] = "Rebill: Regular Membership Fees"
        expected["BillingDate"] = "2025-09-09T15:32:43.839762Z"
        del expected["BillingPartyId"]
        assert imis.api_requests()[0].content == compact(expected)
        assert log.key == TRACKING_KEY
        assert log.status is BillingLogStatus.REVERSING
        assert log.original_key == ORIGINAL_KEY
        assert log.effective_date == ORIGINAL.effective_date

    def test_find_billing_logs(self, provider: ImisApi, imis: FakeImis) -> None:
        items = [{"BillingLogKey": TRACKING_KEY, "Status": 1, "OriginalBillingLogKey": ORIGINAL_KEY}]
        imis.route("GET", "/api/BillingLog", json_response(200, {"Items": items, "HasNext": False}))
        logs = provider.find_billing_logs(original_key=ORIGINAL_KEY)
        assert [(log.key, log.status) for log in logs] == [(TRACKING_KEY, BillingLogStatus.PROCESSING)]
        assert imis.api_requests()[0].url.params["OriginalBillingLogKey"] == ORIGINAL_KEY


def summary(invoice_id: str, method: int, number: int | None = None, balance: str = "95.00") -> dict[str, Any]:
    return {
        "InvoiceId": invoice_id,
        "InvoiceNumber": number,
        "AccountingMethod": method,
        "InvoiceAmount": {"Amount": Decimal("95.00")},
        "Balance": {"Amount": Decimal(balance)},
        "PaymentAmount": {"Amount": Decimal("0")},
        "PendingPaymentAmount": {"Amount": Decimal("0")},
        "BillToParty": {"Id": "101", "Name": "Jane"},
        "BillingLogKey": ORIGINAL_KEY,
    }


def decimal_response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body, default=str).replace('"95.00"', "95.00").encode())


class TestInvoices:
    def test_pages_map_to_domain(self, provider: ImisApi, imis: FakeImis) -> None:
        def pages(request: httpx.Request) -> httpx.Response:
            offset = int(request.url.params["offset"])
            items = [summary(str(i), 0, i) for i in range(offset, min(offset + 7, 10))]
            more = offset + 7 < 10
            body = {"Items": items, "Offset": offset, "Limit": 7, "TotalCount": 10, "HasNext": more}
            if more:
                body["NextOffset"] = offset + 7
            return decimal_response(200, body)

        imis.route("GET", "/api/InvoiceSummary", pages)
        result = list(provider.iter_invoice_pages(ORIGINAL_KEY, party_id="101"))
        assert [(page.offset, page.next_offset, len(page.invoices)) for page in result] == [(0, 7, 7), (7, None, 3)]
        first = result[0].invoices[0]
        assert first == ImisInvoice(
            invoice_id="0",
            accounting_method=AccountingMethod.CASH,
            amount=Decimal("95.00"),
            balance=Decimal("95.00"),
            number=0,
            party_id="101",
            party_name="Jane",
            billing_log_key=ORIGINAL_KEY,
        )
        assert result[0].total_count == 10
        assert imis.api_requests()[0].url.params["BillToPartyId"] == "101"
        assert imis.api_requests()[0].url.params["limit"] == "7"

    def test_can_reverse_cash_asks_by_id(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        cash = ImisInvoice("CASH:1:k", AccountingMethod.CASH, Decimal(1), Decimal(1), number=5)
        assert provider.can_reverse(cash) is True
        body = imis.bodies("/api/Invoice/_execute")[0]
        assert (body["OperationName"], body["Parameters"]["$values"]) == ("CanCashInvoiceBeReversed", ["CASH:1:k"])

    def test_can_reverse_accrual_asks_by_number(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(False))
        accrual = ImisInvoice("8158", AccountingMethod.ACCRUAL, Decimal(1), Decimal(1), number=2317)
        assert provider.can_reverse(accrual) is False
        body = imis.bodies("/api/Invoice/_execute")[0]
        assert (body["OperationName"], body["Parameters"]["$values"]) == ("CanInvoiceBeReversed", [2317])

    def test_can_reverse_accrual_reads_a_missing_number(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        imis.route("GET", "/api/InvoiceSummary/8158", decimal_response(200, summary("8158", 1, 2317)))
        accrual = ImisInvoice("8158", AccountingMethod.ACCRUAL, Decimal(1), Decimal(1))
        assert provider.can_reverse(accrual) is True
        assert imis.bodies("/api/Invoice/_execute")[0]["Parameters"]["$values"] == [2317]

    def test_can_reverse_accrual_without_any_number(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary/8158", decimal_response(200, summary("8158", 1, None)))
        accrual = ImisInvoice("8158", AccountingMethod.ACCRUAL, Decimal(1), Decimal(1))
        with pytest.raises(ProviderProtocolError, match="no InvoiceNumber"):
            provider.can_reverse(accrual)

    @pytest.mark.parametrize(
        ("method", "fixture"),
        [
            (AccountingMethod.CASH, "invoice_ProcessCashReversal.json"),
            (AccountingMethod.ACCRUAL, "invoice_ProcessAccrualReversal.json"),
        ],
    )
    def test_reverse_picks_the_operation(
        self, provider: ImisApi, imis: FakeImis, method: AccountingMethod, fixture: str
    ) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        expected = seed(fixture)
        reason = expected["Parameters"]["$values"][0]["AdjustmentReason"]
        provider.reverse(Reversal("8158", method, date(2026, 4, 23), reason, do_not_cancel_membership=True))
        assert imis.api_requests()[0].content == compact(expected)

    def test_get_invoice(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary/8158", decimal_response(200, summary("8158", 1, 2317, balance="0")))
        invoice = provider.get_invoice("8158")
        assert invoice.accounting_method is AccountingMethod.ACCRUAL
        assert invoice.balance == Decimal("0")


class TestBatches:
    def test_post_and_get(self, provider: ImisApi, imis: FakeImis) -> None:
        imis.route("POST", "/api/BatchSummary/_execute", ok(None))
        imis.route(
            "GET",
            "/api/BatchSummary/B-1",
            json_response(
                200, {"BatchId": "B-1", "BatchStatus": "Posted", "TransactionCount": 50, "PostingError": None}
            ),
        )
        provider.post_batch("B-1")
        batch = provider.get_batch("B-1")
        assert (batch.batch_id, batch.status, batch.transaction_count) == ("B-1", BatchStatus.POSTED, 50)
        assert imis.bodies("/api/BatchSummary/_execute")[0]["Parameters"]["$values"] == ["B-1"]


def test_repr_hides_secrets(make_client: Callable[..., ImisClient]) -> None:
    provider = ImisApi(make_client())
    assert repr(provider) == "ImisApi(ImisClient(base_url='https://imis.example.org', username='admin'))"
