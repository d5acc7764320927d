"""The iMIS API over real loopback HTTP: auth, entities, paging, _execute envelopes, counters."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from urllib.parse import quote

import httpx
import pytest

from simulators.imis.examples import EXAMPLE_LEGACY_INVOICE_ID
from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState
from tests.simulators.imis.helpers import PASSWORD, USERNAME, example, execute, get_token, reversal, task

ORIGINAL = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"


def token_response(server: SimulatorServer, **form: str) -> httpx.Response:
    data = {"grant_type": "password", "username": USERNAME, "password": PASSWORD} | form
    return httpx.post(f"{server.base_url}/token", data=data, trust_env=False)


class TestAuth:
    def test_token(self, server: SimulatorServer, sim: ImisState) -> None:
        response = token_response(server)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "userName"}
        assert (body["token_type"], body["expires_in"], body["userName"]) == ("bearer", 1200, USERNAME)
        assert sim.counters()["tokens_issued"] == 1

    def test_lifetime_follows_the_fault_setting(self, server: SimulatorServer, sim: ImisState) -> None:
        sim.faults.update(token_lifetime_seconds=90)
        assert token_response(server).json()["expires_in"] == 90

    def test_bad_credentials(self, server: SimulatorServer, sim: ImisState) -> None:
        response = token_response(server, password="wrong")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert response.json()["error_description"]
        assert token_response(server, grant_type="client_credentials").json()["error"] == "unsupported_grant_type"

    def test_token_needs_a_form(self, server: SimulatorServer, sim: ImisState) -> None:
        response = httpx.post(
            f"{server.base_url}/token",
            json={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
            trust_env=False,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    @pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic YWRtaW46c2VjcmV0"])
    def test_api_needs_a_valid_bearer_token(self, server: SimulatorServer, sim: ImisState, header: str | None) -> None:
        headers = {"Authorization": header} if header else {}
        response = httpx.get(f"{server.base_url}/api/BillingLog", headers=headers, trust_env=False)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    def test_expired_token_gets_401(self, server: SimulatorServer, sim: ImisState) -> None:
        sim.faults.update(token_lifetime_seconds=0.3)
        with httpx.Client(base_url=server.base_url, trust_env=False) as client:
            client.get("/_sim/health")  # connect first: the lifetime is short
            token = client.post(
                "/token", data={"grant_type": "password", "username": USERNAME, "password": PASSWORD}
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            assert client.get("/api/BillingLog").status_code == 200
            time.sleep(0.3)
            assert client.get("/api/BillingLog").status_code == 401

    def test_zero_lifetime_token_is_already_expired(self, server: SimulatorServer, sim: ImisState) -> None:
        sim.faults.update(token_lifetime_seconds=0)
        token = get_token(server.base_url)
        response = httpx.get(
            f"{server.base_url}/api/BillingLog", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        )
        assert response.status_code == 401

    def test_revoked_tokens_get_401(self, api: httpx.Client, admin: httpx.Client) -> None:
        assert api.get("/api/BillingLog").status_code == 200
        assert admin.post("/_sim/tokens/expire").json()["expired"] >= 1
        assert api.get("/api/BillingLog").status_code == 401


class TestBillingLog:
    def test_create_get_and_conflict(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        created = api.post("/api/BillingLog", content=example("billinglog_post.json"))
        assert created.status_code == 201
        assert created.json()["BillingLogKey"] == "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
        fetched = api.get("/api/BillingLog/be2506c1-2324-4157-a1ae-bdba7a0dcbea")
        assert fetched.status_code == 200
        assert fetched.json() == created.json()
        assert api.post("/api/BillingLog", content=example("billinglog_post.json")).status_code == 409

    def test_generated_key(self, api: httpx.Client) -> None:
        created = api.post("/api/BillingLog", json={"BillingCycleName": "Regular Membership Fees", "Status": 5})
        assert created.status_code == 201
        key = created.json()["BillingLogKey"]
        assert len(key) == 36
        assert api.get(f"/api/BillingLog/{key}").json()["Status"] == 5

    def test_malformed_body_names_the_field(self, api: httpx.Client) -> None:
        response = api.post("/api/BillingLog", json={"Status": 5})
        assert response.status_code == 400
        error = response.json()["Errors"]["$values"][0]
        assert error["FieldName"] == "BillingCycleName"
        assert "BillingCycleName" in error["Message"]

    def test_unknown_key_is_404(self, api: httpx.Client) -> None:
        assert api.get("/api/BillingLog/00000000-0000-4000-8000-000000000000").status_code == 404

    def test_list_by_cycle_and_by_original_key(self, api: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=5, seed=1, other_billings=2)
        page = api.get("/api/BillingLog", params={"BillingCycleName": seeded.cycle_name, "limit": 2}).json()
        assert (page["Count"], page["TotalCount"], page["HasNext"], page["NextOffset"]) == (2, 3, True, 2)
        assert page["Items"]["$values"][0]["BillingLogKey"] == seeded.other_keys[-1]
        api.post(
            "/api/BillingLog",
            json={"BillingCycleName": seeded.cycle_name, "Status": 5, "OriginalBillingLogKey": seeded.original_key},
        )
        found = api.get("/api/BillingLog", params={"OriginalBillingLogKey": seeded.original_key}).json()
        assert found["TotalCount"] == 1
        assert found["Items"]["$values"][0]["OriginalBillingLogKey"] == seeded.original_key


class TestInvoiceSummary:
    def test_get_renders_money_objects(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        response = api.get("/api/InvoiceSummary/8158")
        assert response.status_code == 200
        assert b'"Amount":370.00' in response.content
        invoice = json.loads(response.content, parse_float=Decimal)
        assert invoice["InvoiceId"] == "8158"
        assert invoice["InvoiceNumber"] == 8158
        assert invoice["BillingLogKey"] == ORIGINAL
        assert invoice["BillToParty"]["PartyId"] == "101"
        assert invoice["Balance"]["Amount"] == Decimal("370.00")
        assert invoice["Balance"]["Currency"]["CurrencyCode"] == "USD"
        assert invoice["PaymentAmount"]["Amount"] == Decimal("0.00")
        assert "MonetaryAmountData" in invoice["InvoiceAmount"]["$type"]

    def test_legacy_ids_must_be_url_encoded(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        encoded = api.get(f"/api/InvoiceSummary/{quote(EXAMPLE_LEGACY_INVOICE_ID, safe='')}")
        assert encoded.status_code == 200
        assert encoded.json()["InvoiceId"] == EXAMPLE_LEGACY_INVOICE_ID
        raw = api.get(f"/api/InvoiceSummary/{EXAMPLE_LEGACY_INVOICE_ID}")
        assert raw.status_code == 400
        assert "potentially dangerous" in raw.text

    def test_unknown_invoice_is_404(self, api: httpx.Client) -> None:
        assert api.get("/api/InvoiceSummary/nope").status_code == 404

    def test_paging_with_a_cap(self, api: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=23, seed=3)
        sim.faults.update(page_size_cap=10)
        seen: list[str] = []
        offset = 0
        while True:
            page = api.get(
                "/api/InvoiceSummary", params={"BillingLogKey": seeded.original_key, "Limit": 50, "OFFSET": offset}
            ).json()
            assert page["Limit"] == 10
            assert page["Offset"] == offset
            assert page["TotalCount"] == 23
            assert page["NextPageLink"] is None
            seen += [item["InvoiceId"] for item in page["Items"]["$values"]]
            assert page["Count"] == len(page["Items"]["$values"])
            if not page["HasNext"]:
                break
            offset = page["NextOffset"]
        assert seen == list(seeded.invoice_ids)

    def test_default_page_size_is_100(self, api: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=130, seed=3)
        page = api.get("/api/InvoiceSummary", params={"BillingLogKey": seeded.original_key}).json()
        assert (page["Limit"], page["Count"], page["HasNext"], page["NextOffset"]) == (100, 100, True, 100)

    def test_filters(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        page = api.get("/api/InvoiceSummary", params={"BillToPartyId": "101", "Balance": "gt:0"}).json()
        assert [i["InvoiceId"] for i in page["Items"]["$values"]] == ["8158", "8200", "8300"]
        page = api.get(
            "/api/InvoiceSummary", params={"BillingLogKey": ORIGINAL, "SoldToPartyId": "106", "Balance": "gt:0"}
        ).json()
        assert page["TotalCount"] == 2
        bad = api.get("/api/InvoiceSummary", params={"BilingLogKey": ORIGINAL})
        assert bad.status_code == 400
        assert bad.json()["Errors"]["$values"][0]["FieldName"] == "BilingLogKey"

    def test_reads_see_every_change(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        assert api.get("/api/InvoiceSummary/8159").json()["Balance"]["Amount"] == 250
        sim.apply_payment("8159", Decimal("50.00"))
        assert api.get("/api/InvoiceSummary/8159").json()["Balance"]["Amount"] == 200
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        page = api.get("/api/InvoiceSummary", params={"BillToPartyId": "101", "Balance": "gt:0"}).json()
        assert [i["InvoiceId"] for i in page["Items"]["$values"]] == ["8200", "8300"]
        assert api.get("/api/InvoiceSummary/8158").json()["Balance"]["Amount"] == 0


class TestInvoiceExecute:
    def test_success_envelope(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        response = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert response.status_code == 200
        assert response.json() == {
            "$type": "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts",
            "IsSuccessStatusCode": True,
            "Message": None,
            "Result": True,
        }

    def test_can_returns_the_bool_in_result(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        wrapped = execute("CanCashInvoiceBeReversed", "8158", wrap="System.String")
        assert api.post("/api/Invoice/_execute", json=wrapped).json()["Result"] is True
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert api.post("/api/Invoice/_execute", json=wrapped).json()["Result"] is False
        by_number = execute("CanInvoiceBeReversed", 2317, wrap="System.Int32")
        assert api.post("/api/Invoice/_execute", json=by_number).json()["Result"] is True
        lookup = execute("GetTransactionsInvoiceReferenceNumber", EXAMPLE_LEGACY_INVOICE_ID)
        assert api.post("/api/Invoice/_execute", json=lookup).json()["Result"] == 8167

    def test_refusal_styles(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        refused = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert refused.status_code == 200
        body = refused.json()
        assert (body["IsSuccessStatusCode"], body["Result"]) == (False, None)
        assert "already been reversed" in body["Message"]
        sim.faults.update(refusal_style="400")
        refused = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert refused.status_code == 400
        assert refused.json() == {
            "Errors": {
                "$values": [
                    {
                        "$type": "Asi.Soa.Core.DataContracts.ValidationResultData, Asi.Contracts",
                        "Message": "Invoice 8158 has already been reversed.",
                        "FieldName": None,
                    }
                ]
            }
        }
        counters = sim.counters()
        assert (counters["refused_second_reversals"], counters["refused_reversals"]) == (2, 2)
        assert counters["reversals"] == {"8158": 1}

    def test_unknown_invoice_is_a_refusal(self, api: httpx.Client, sim: ImisState) -> None:
        body = api.post("/api/Invoice/_execute", json=execute("CanCashInvoiceBeReversed", "nope")).json()
        assert body["IsSuccessStatusCode"] is False
        assert "not found" in body["Message"]

    def test_malformed_requests_are_400(self, api: httpx.Client) -> None:
        assert api.post("/api/Invoice/_execute", content=b"{").status_code == 400
        response = api.post("/api/Invoice/_execute", json=execute("ProcessCashReversal", {"InvoiceId": "8158"}))
        assert response.status_code == 400
        assert response.json()["Errors"]["$values"][0]["FieldName"] == "AdjustmentDate"


class TestTasksAndBatches:
    def test_task_accepted_with_a_task_log_id(self, api: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=10, seed=4)
        response = api.post(
            "/api/TaskDefinition/_execute",
            json=task(reverse_key=seeded.original_key, original_key=seeded.original_key, auto_post=False),
        )
        assert response.status_code == 202
        body = response.json()
        assert "GenericExecuteResult" in body["$type"]
        assert body["Result"]["TaskLogId"] in sim.tasks
        assert sim.wait_for_tasks(5)
        log = api.get("/api/BillingLog", params={"OriginalBillingLogKey": seeded.original_key}).json()
        progress = log["Items"]["$values"][0]
        assert progress["Status"] == 4
        batch_id = progress["BatchId"]
        batch = api.get(f"/api/BatchSummary/{batch_id}").json()
        assert (batch["BatchStatus"], batch["TransactionCount"], batch["PostingError"]) == (
            "Ready",
            len(seeded.rebill_party_ids),
            None,
        )
        posted = api.post("/api/BatchSummary/_execute", json=execute("Post", batch_id, entity="BatchSummary"))
        assert posted.json()["IsSuccessStatusCode"] is True
        assert api.get(f"/api/BatchSummary/{batch_id}").json()["BatchStatus"] == "Posted"
        assert api.get(f"/api/BillingLog/{progress['BillingLogKey']}").json()["Status"] == 2
        again = api.post(
            "/api/BatchSummary/_execute", json=execute("Post", batch_id, entity="BatchSummary", wrap="System.String")
        )
        assert again.json()["IsSuccessStatusCode"] is False
        assert "already been posted" in again.json()["Message"]

    def test_malformed_task_is_400_with_a_message(self, api: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=3, seed=4)
        both = task(reverse_key=seeded.original_key, reverse_ids=["x"], cycle=None)
        response = api.post("/api/TaskDefinition/_execute", json=both)
        assert response.status_code == 400
        assert "not both" in response.json()["Errors"]["$values"][0]["Message"]
        unknown = task(reverse_key="00000000-0000-4000-8000-000000000000", cycle=None)
        assert "not found" in api.post("/api/TaskDefinition/_execute", json=unknown).text
        assert api.post("/api/TaskDefinition/_execute", json={"Task": {"Actions": []}}).status_code == 400

    def test_unknown_batch(self, api: httpx.Client) -> None:
        assert api.get("/api/BatchSummary/NOPE").status_code == 404
        refused = api.post("/api/BatchSummary/_execute", json=execute("Post", "NOPE", entity="BatchSummary"))
        assert refused.json()["IsSuccessStatusCode"] is False
        wrong = api.post("/api/BatchSummary/_execute", json=execute("Delete", "NOPE", entity="BatchSummary"))
        assert wrong.status_code == 400


class TestRoutingAndCounters:
    def test_unknown_routes(self, api: httpx.Client) -> None:
        assert api.get("/api/Nothing").status_code == 404
        assert api.delete("/api/BillingLog").status_code == 405
        assert api.get("/token").status_code == 405

    def test_counters_by_operation_and_status(self, api: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        sim.reset_counters()
        api.get("/api/InvoiceSummary/8158")
        api.get("/api/InvoiceSummary/nope")
        api.get("/api/InvoiceSummary", params={"BillToPartyId": "101"})
        api.get(f"/api/BillingLog/{ORIGINAL}")
        api.get("/api/BillingLog")
        api.post("/api/Invoice/_execute", json=execute("CanCashInvoiceBeReversed", "8158"))
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        api.post("/api/Invoice/_execute", json=reversal("8158", "processaccrualreversal"))
        counters = sim.counters()
        assert counters["requests"] == {
            "InvoiceSummary.get": 2,
            "InvoiceSummary.list": 1,
            "BillingLog.get": 1,
            "BillingLog.list": 1,
            "Invoice.CanCashInvoiceBeReversed": 1,
            "Invoice.ProcessCashReversal": 1,
            "Invoice.ProcessAccrualReversal": 1,
        }
        assert counters["responses"] == {"200": 7, "404": 1}
        assert counters["in_flight"] == 0

    def test_sync_mock_transport_serves_the_same_app(self, server: SimulatorServer, sim: ImisState) -> None:
        sim.seed_examples()
        transport = httpx.MockTransport(server.app.handle)
        with httpx.Client(transport=transport, base_url="https://imis.example") as client:
            token = client.post(
                "/token", data={"grant_type": "password", "username": USERNAME, "password": PASSWORD}
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            assert client.post("/api/Invoice/_execute", json=reversal("8158")).json()["Result"] is True
            assert client.get(f"/api/InvoiceSummary/{quote(EXAMPLE_LEGACY_INVOICE_ID, safe='')}").status_code == 200
        assert sim.counters()["reversals"] == {"8158": 1}


def test_a_server_can_be_stopped_and_started_again() -> None:
    with ImisState() as state:
        server = SimulatorServer(state)
        for _ in range(2):
            with server:
                assert httpx.get(f"{server.base_url}/_sim/health", trust_env=False).json() == {"ok": True}
        with pytest.raises(RuntimeError):
            _ = server.base_url
