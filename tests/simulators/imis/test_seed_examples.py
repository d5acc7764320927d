"""Every example body of the two vendor seed pages, POSTed verbatim after `seed_examples()`.

The adjusting page sends all its Process* examples for invoice 8158. Here 8158 is the open cash
dues invoice of party 101 (as the rebill page implies), so the accrual and order examples are refused
as wrong-kind operations, a mistake a client can make. `seed_examples(invoice_8158=...)` shows the
same bodies succeed when 8158 is the kind of invoice they are written for.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from simulators.imis.examples import (
    EXAMPLE_BATCH_ID,
    EXAMPLE_LEGACY_INVOICE_ID,
    EXAMPLE_ORIGINAL_KEY,
    EXAMPLE_PROGRESS_KEY,
)
from simulators.imis.state import ImisState
from tests.simulators.imis.helpers import CONTRACT_EXAMPLES, EXAMPLES, example

OPEN_UNPAID = {"8158", "8159", "8163", "8164", "8165", EXAMPLE_LEGACY_INVOICE_ID}
LEFT_AS_IS = {"8160", "8161", "8162", "8166", "7002", "2317"}


def post_invoice(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.post("/api/Invoice/_execute", content=example(f"invoice_{name}.json"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "ServiceResponse" in body["$type"]
    return body


def history(sim: ImisState, key: str) -> list[int]:
    return [status for status, _ in sim.billing_log_history(key)]


def amount(api: httpx.Client, invoice_id: str, field: str = "Balance") -> Decimal:
    value: Decimal = api.get(f"/api/InvoiceSummary/{invoice_id}").json()[field]["Amount"]
    return Decimal(str(value))


@pytest.fixture
def examples(sim: ImisState) -> ImisState:
    sim.seed_examples()
    return sim


def test_every_example_has_a_fixture() -> None:
    names = {p.name for p in EXAMPLES.glob("*.json")}
    invoice_examples = {n for n in names if n.startswith("invoice_")}
    assert len(invoice_examples) == 17  # one per Invoice/_execute example of the adjusting page
    assert {"billinglog_post.json", "task_bulk_reverse_and_rebill.json", "task_single_contact.json"} <= names
    assert len(names) == 20  # verbatim copies only
    assert (CONTRACT_EXAMPLES / "batch_post.json").is_file()  # built per the contract, kept apart


class TestReverseAndRebillPage:
    def test_billinglog_post(self, api: httpx.Client, examples: ImisState) -> None:
        response = api.post("/api/BillingLog", content=example("billinglog_post.json"))
        assert response.status_code == 201
        log = response.json()
        assert log["BillingLogKey"] == EXAMPLE_PROGRESS_KEY
        assert (log["Status"], log["OriginalBillingLogKey"], log["BillingPartyId"]) == (5, EXAMPLE_ORIGINAL_KEY, "101")
        assert api.get(f"/api/BillingLog/{EXAMPLE_PROGRESS_KEY}").json() == log

    def test_step_1_find_the_original_billing(self, api: httpx.Client, examples: ImisState) -> None:
        log = api.get(f"/api/BillingLog/{EXAMPLE_ORIGINAL_KEY}").json()
        assert (log["BillingCycleName"], log["Status"], log["AutoPayOption"]) == ("Regular Membership Fees", 2, 0)
        assert log["EffectiveDate"] == "2025-09-01T00:00:00Z"
        cycle = api.get("/api/BillingLog", params={"BillingCycleName": "Regular Membership Fees"}).json()
        assert EXAMPLE_ORIGINAL_KEY in [item["BillingLogKey"] for item in cycle["Items"]["$values"]]

    def test_bulk_reverse_and_rebill(self, api: httpx.Client, examples: ImisState) -> None:
        api.post("/api/BillingLog", content=example("billinglog_post.json"))
        response = api.post("/api/TaskDefinition/_execute", content=example("task_bulk_reverse_and_rebill.json"))
        assert response.status_code == 202
        assert response.json()["Result"]["TaskLogId"]
        assert examples.wait_for_tasks(5)
        # every open invoice of a9f0db70 with no payments is reversed; anything paid is left as-is
        assert set(examples.counters()["reversals"]) == OPEN_UNPAID
        for invoice_id in OPEN_UNPAID:
            assert examples.invoice(invoice_id).balance == 0
        assert not any(examples.invoice(i).reversed for i in LEFT_AS_IS)
        # the log walked 5 -> 1 -> 2
        assert history(examples, EXAMPLE_PROGRESS_KEY) == [5, 1, 2]
        assert api.get(f"/api/BillingLog/{EXAMPLE_PROGRESS_KEY}").json()["Status"] == 2
        # only IDs billed in the original billing whose invoices were all reversed are billed again
        created = api.get("/api/InvoiceSummary", params={"BillingLogKey": EXAMPLE_PROGRESS_KEY}).json()
        parties = sorted(item["BillToParty"]["PartyId"] for item in created["Items"]["$values"])
        assert parties == ["101", "102", "106", "23415"]
        rebill = examples.counters()["rebills"][0]
        assert (rebill["original_key"], rebill["auto_post"], rebill["invoices_created"]) == (
            EXAMPLE_ORIGINAL_KEY,
            True,
            4,
        )

    def test_bulk_without_the_optional_billing_log_step(self, api: httpx.Client, examples: ImisState) -> None:
        assert (
            api.post("/api/TaskDefinition/_execute", content=example("task_bulk_reverse_and_rebill.json")).status_code
            == 202
        )
        assert examples.wait_for_tasks(5)
        assert history(examples, EXAMPLE_PROGRESS_KEY) == [5, 1, 2]

    def test_single_contact(self, api: httpx.Client, examples: ImisState) -> None:
        assert (
            api.get("/api/InvoiceSummary", params={"BillToPartyId": "101", "Balance": "gt:0"}).json()["TotalCount"] == 3
        )
        response = api.post("/api/TaskDefinition/_execute", content=example("task_single_contact.json"))
        assert response.status_code == 202
        assert examples.wait_for_tasks(5)
        assert examples.counters()["reversals"] == {"8158": 1}
        # BillingLogKey was null: the server created a log pointing at the original billing
        found = api.get("/api/BillingLog", params={"OriginalBillingLogKey": EXAMPLE_ORIGINAL_KEY}).json()
        assert found["TotalCount"] == 1
        log = found["Items"]["$values"][0]
        assert (log["Status"], log["BillingPartyId"], log["BillingRunName"]) == (
            2,
            "101",
            "Rebill: Regular Membership Fees for 101",
        )
        assert history(examples, log["BillingLogKey"]) == [5, 1, 2]
        created = api.get("/api/InvoiceSummary", params={"BillingLogKey": log["BillingLogKey"]}).json()
        assert [i["BillToParty"]["PartyId"] for i in created["Items"]["$values"]] == ["101"]
        assert created["Items"]["$values"][0]["InvoiceAmount"]["Amount"] == 370

    def test_batch_post(self, api: httpx.Client, examples: ImisState) -> None:
        assert api.get(f"/api/BatchSummary/{EXAMPLE_BATCH_ID}").json()["BatchStatus"] == "Ready"
        log_key = examples.batch(EXAMPLE_BATCH_ID).billing_log_key
        posted = api.post("/api/BatchSummary/_execute", content=example("batch_post.json"))
        assert posted.json()["IsSuccessStatusCode"] is True
        batch = api.get(f"/api/BatchSummary/{EXAMPLE_BATCH_ID}").json()
        assert (batch["BatchStatus"], batch["TransactionCount"]) == ("Posted", 2)
        assert api.get(f"/api/BillingLog/{log_key}").json()["Status"] == 2
        assert api.get("/api/InvoiceSummary", params={"BillingLogKey": log_key}).json()["TotalCount"] == 2
        again = api.post("/api/BatchSummary/_execute", content=example("batch_post.json")).json()
        assert again["IsSuccessStatusCode"] is False


class TestAdjustingPage:
    def test_can_cash_invoice_be_reversed(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "CanCashInvoiceBeReversed")["Result"] is True
        post_invoice(api, "ProcessCashReversal")
        assert post_invoice(api, "CanCashInvoiceBeReversed")["Result"] is False

    def test_process_cash_reversal(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "ProcessCashReversal") == {
            "$type": "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts",
            "IsSuccessStatusCode": True,
            "Message": None,
            "Result": True,
        }
        assert amount(api, "8158") == 0
        second = post_invoice(api, "ProcessCashReversal")
        assert second["IsSuccessStatusCode"] is False
        assert examples.counters()["refused_second_reversals"] == 1

    @pytest.mark.parametrize(
        ("name", "result"),
        [
            ("CanInvoiceBeReversed", True),
            ("CanOrderInvoiceBeAdjusted", False),  # 2317 is a dues invoice
            ("CanDuesInvoiceBeAdjusted", True),
            ("CanInvoiceBeRefunded", False),  # not overpaid
        ],
    )
    def test_checks_on_reference_number_2317(
        self, api: httpx.Client, examples: ImisState, name: str, result: bool
    ) -> None:
        body = post_invoice(api, name)
        assert (body["IsSuccessStatusCode"], body["Result"]) == (True, result)

    def test_can_invoice_be_refunded_once_overpaid(self, api: httpx.Client, examples: ImisState) -> None:
        examples.apply_payment("2317", Decimal("150.00"))
        assert post_invoice(api, "CanInvoiceBeRefunded")["Result"] is True

    def test_write_off(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "ProcessWriteOff")["Result"] is True
        assert amount(api, "8158") == 0
        assert examples.invoice("8158").written_off

    def test_record_refund_needs_a_paid_invoice(self, api: httpx.Client, examples: ImisState) -> None:
        refused = post_invoice(api, "ProcessRecordRefund")
        assert refused["IsSuccessStatusCode"] is False
        examples.apply_payment("8158", Decimal("370.00"))
        assert post_invoice(api, "ProcessRecordRefund")["Result"] is True
        assert amount(api, "8158", "PaymentAmount") == Decimal("275.00")
        assert amount(api, "8158") == Decimal("95.00")

    def test_cash_adjustment_examples(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "ProcessCashAdjustment")["Result"] is True  # JOUR 95 -> 75
        assert amount(api, "8158", "InvoiceAmount") == Decimal("350.00")
        assert post_invoice(api, "ProcessCashAdjustment_remove_line")["Result"] is True  # INSIDMAG removed
        assert amount(api, "8158", "InvoiceAmount") == Decimal("325.00")
        lines = api.get("/api/InvoiceSummary/8158").json()["Lines"]["$values"]
        assert [line["ProductCode"] for line in lines] == ["DUES", "JOUR"]

    @pytest.mark.parametrize("name", ["ProcessAccrualReversal", "ProcessAccrualAdjustment"])
    def test_accrual_examples_on_a_cash_invoice_are_refused(
        self, api: httpx.Client, examples: ImisState, name: str
    ) -> None:
        body = post_invoice(api, name)
        assert body["IsSuccessStatusCode"] is False
        assert "cash invoice" in body["Message"]
        assert examples.invoice("8158").amount == examples.invoice("8158").balance == Decimal("370.00")

    @pytest.mark.parametrize("name", ["ProcessOrderReversal", "ProcessOrderAdjustment"])
    def test_order_examples_on_a_dues_invoice_are_refused(
        self, api: httpx.Client, examples: ImisState, name: str
    ) -> None:
        body = post_invoice(api, name)
        assert body["IsSuccessStatusCode"] is False
        assert "not a commerce order" in body["Message"]

    def test_fundraising_reversal(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "ProcessFundraisingReversal")["Result"] is True
        assert amount(api, "8200") == 0
        assert examples.invoice("8200").reversed

    def test_fundraising_adjustment(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "ProcessFundraisingAdjustment")["Result"] is True
        assert examples.invoice("8200").events[-1]["reason"] == "Adjusted pledge amount"

    def test_update_event_invoice_bill_to(self, api: httpx.Client, examples: ImisState) -> None:
        assert post_invoice(api, "UpdateEventInvoiceBillToId")["Result"] is True
        party = api.get("/api/InvoiceSummary/8300").json()["BillToParty"]
        assert (party["PartyId"], party["Name"]) == ("23500", "Acme Corporation")


class TestWhen8158IsAnotherKind:
    def test_accrual_examples(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples(invoice_8158="accrual")
        assert post_invoice(api, "ProcessAccrualAdjustment")["Result"] is True  # DUES 250 -> 200
        assert amount(api, "8158", "InvoiceAmount") == Decimal("320.00")
        assert post_invoice(api, "ProcessAccrualReversal")["Result"] is True
        assert amount(api, "8158") == 0
        assert post_invoice(api, "ProcessCashReversal")["IsSuccessStatusCode"] is False

    def test_order_examples(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples(invoice_8158="order")
        assert post_invoice(api, "ProcessOrderAdjustment")["Result"] is True  # 2 x 39.95 + 10 + 5
        assert amount(api, "8158", "InvoiceAmount") == Decimal("94.90")
        assert post_invoice(api, "ProcessOrderReversal")["Result"] is True
        assert amount(api, "8158") == 0
