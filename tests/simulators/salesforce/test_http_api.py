"""The org over real HTTP: token, query and paging, void, generate, recover, versions, limits, admin API."""

from __future__ import annotations

import httpx
import pytest

from simulators.common.server import SimulatorServer
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.simulators.salesforce.helpers import CLIENT_ID, CLIENT_SECRET, GENERATE, RECOVER, VOID, generate_body

ERROR_SHAPE = {"message", "errorCode", "fields"}


@pytest.fixture
def run(sim: SalesforceState) -> SeededRun:
    return sim.seed_run(invoices=30, seed=4)


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body, list)
    assert set(body[0]) == ERROR_SHAPE
    code: str = body[0]["errorCode"]
    return code


class TestToken:
    def test_client_credentials_grant(self, server: SimulatorServer[SalesforceState], sim: SalesforceState) -> None:
        response = httpx.post(
            f"{server.base_url}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        )
        body = response.json()
        assert response.status_code == 200
        assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
        assert body["token_type"] == "Bearer"
        assert body["issued_at"].isdigit()
        assert "expires_in" not in body
        assert "sforce-limit-info" not in response.headers  # token calls are not API usage

    @pytest.mark.parametrize(
        ("grant", "client_id", "secret", "error"),
        [
            ("client_credentials", CLIENT_ID, "wrong", "invalid_client"),
            ("client_credentials", "nobody", CLIENT_SECRET, "invalid_client_id"),
            ("password", CLIENT_ID, CLIENT_SECRET, "unsupported_grant_type"),
        ],
    )
    def test_refusals(
        self,
        server: SimulatorServer[SalesforceState],
        sim: SalesforceState,
        grant: str,
        client_id: str,
        secret: str,
        error: str,
    ) -> None:
        form = {"grant_type": grant, "client_id": client_id, "client_secret": secret}
        response = httpx.post(f"{server.base_url}/services/oauth2/token", data=form)
        assert response.status_code == 400
        assert response.json()["error"] == error
        assert response.json()["error_description"]

    def test_token_calls_are_not_api_usage(
        self, server: SimulatorServer[SalesforceState], sim: SalesforceState
    ) -> None:
        for _ in range(3):
            httpx.post(f"{server.base_url}/services/oauth2/token", data={"grant_type": "client_credentials"})
        assert sim.usage().used == 0


class TestQuery:
    def test_pages_by_next_records_url(
        self, server: SimulatorServer[SalesforceState], api: httpx.Client, sim: SalesforceState, run: SeededRun
    ) -> None:
        sim.faults.update(page_size=12)
        soql = f"SELECT Id, Status, Balance FROM Invoice WHERE InvoiceBatchRunId = '{run.invoice_batch_run_id}'"
        body = api.get("/query", params={"q": soql}).json()
        ids = [record["Id"] for record in body["records"]]
        assert (body["totalSize"], body["done"]) == (30, False)
        assert body["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
        while not body["done"]:
            body = api.get(f"{server.base_url}{body['nextRecordsUrl']}").json()
            ids += [record["Id"] for record in body["records"]]
        assert "nextRecordsUrl" not in body
        assert sorted(ids) == sorted(run.invoice_ids)

    def test_money_is_a_json_number_with_its_cents(self, api: httpx.Client, run: SeededRun) -> None:
        response = api.get("/query", params={"q": f"SELECT Balance FROM Invoice WHERE Id = '{run.eligible_ids[0]}'"})
        record = response.json()["records"][0]
        assert record["attributes"] == {
            "type": "Invoice",
            "url": f"/services/data/v62.0/sobjects/Invoice/{run.eligible_ids[0]}",
        }
        assert f'"Balance":{record["Balance"]}' in response.text
        assert '"Balance":"' not in response.text

    @pytest.mark.parametrize(
        ("soql", "code"),
        [
            ("SELECT Id FROM Invoice WHERE Status = 'Posted' OR Status = 'Draft'", "MALFORMED_QUERY"),
            ("SELECT Nope FROM Invoice", "INVALID_FIELD"),
            ("SELECT Id FROM Account", "INVALID_TYPE"),
            ("", "MALFORMED_QUERY"),
        ],
    )
    def test_refusals(self, api: httpx.Client, soql: str, code: str) -> None:
        response = api.get("/query", params={"q": soql})
        assert response.status_code == 400
        assert error_code(response) == code

    def test_expired_locator(
        self,
        server: SimulatorServer[SalesforceState],
        api: httpx.Client,
        sim: SalesforceState,
        admin: httpx.Client,
        run: SeededRun,
    ) -> None:
        sim.faults.update(page_size=5)
        body = api.get("/query", params={"q": "SELECT Id FROM Invoice"}).json()
        assert admin.post("/_sim/locators/expire").json() == {"expired": 1}
        response = api.get(f"{server.base_url}{body['nextRecordsUrl']}")
        assert (response.status_code, error_code(response)) == (400, "INVALID_QUERY_LOCATOR")

    @pytest.mark.parametrize("version", ["v62.0", "v63.0", "v65.0", "v100.0"])
    def test_any_version_from_62(
        self, server: SimulatorServer[SalesforceState], api: httpx.Client, version: str
    ) -> None:
        response = api.get(
            f"{server.base_url}/services/data/{version}/query", params={"q": "SELECT COUNT() FROM Invoice"}
        )
        assert response.json() == {"totalSize": 0, "done": True, "records": []}

    @pytest.mark.parametrize("version", ["v61.0", "v62", "62.0", "latest"])
    def test_older_or_odd_versions_are_not_found(
        self, server: SimulatorServer[SalesforceState], api: httpx.Client, version: str
    ) -> None:
        response = api.get(f"{server.base_url}/services/data/{version}/query", params={"q": "SELECT Id FROM Invoice"})
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")


class TestActions:
    def test_void_then_generate_then_read_the_new_invoice(
        self, api: httpx.Client, sim: SalesforceState, run: SeededRun
    ) -> None:
        invoice_id = run.eligible_ids[0]
        voided = api.post(f"/{VOID.format(invoice_id)}")
        assert voided.status_code == 200
        assert voided.json()["success"] is True
        assert voided.json()["errors"] is None
        assert len(voided.json()["requestIdentifier"]) == 36
        lines = api.get(
            "/query", params={"q": f"SELECT BillingScheduleId FROM InvoiceLine WHERE InvoiceId = '{invoice_id}'"}
        ).json()["records"]
        schedule_ids = [line["BillingScheduleId"] for line in lines]
        generated = api.post(f"/{GENERATE}", json=generate_body(schedule_ids))
        assert generated.status_code == 200
        assert generated.json()["success"] is True
        quoted = ", ".join(f"'{s}'" for s in schedule_ids)
        lines = api.get(
            "/query", params={"q": f"SELECT InvoiceId FROM InvoiceLine WHERE BillingScheduleId IN ({quoted})"}
        ).json()["records"]
        on_schedules = ", ".join(f"'{line['InvoiceId']}'" for line in lines)
        rebills = api.get(
            "/query",
            params={"q": f"SELECT Status FROM Invoice WHERE Id IN ({on_schedules}) AND InvoiceBatchRunId = null"},
        ).json()["records"]
        assert [record["Status"] for record in rebills] == ["Posted"]

    def test_void_refusals(self, api: httpx.Client, run: SeededRun) -> None:
        paid = next(i for i, reason in run.expected.items() if reason == "paid")
        response = api.post(f"/{VOID.format(paid)}")
        assert (response.status_code, error_code(response)) == (400, "INVALID_INPUT")
        response = api.post(f"/{VOID.format('3tt5g0000000000AAA')}")
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            (b"not json", "JSON_PARSER_ERROR"),
            (b"[]", "JSON_PARSER_ERROR"),
            (b'{"billingScheduleIds": "44b"}', "JSON_PARSER_ERROR"),
            (b'{"billingScheduleIds": ["44b5g0000000000AAA"], "surprise": 1}', "JSON_PARSER_ERROR"),
            (
                b'{"billingScheduleIds": ["44b5g0000000000AAA"], "action": "Posted", "accountId": "001"}',
                "INVALID_INPUT",
            ),
            (b'{"billingScheduleIds": [], "action": "Posted", "billingTransactionId": "801"}', "INVALID_INPUT"),
            (b'{"billingScheduleIds": ["x"], "action": "Posted", "invoiceDate": "2025-13-01"}', "INVALID_INPUT"),
            (b'{"billingScheduleIds": ["x"], "action": "Posted", "targetDate": "12/01/2025"}', "INVALID_INPUT"),
        ],
    )
    def test_generate_body_refusals(self, api: httpx.Client, body: bytes, code: str) -> None:
        response = api.post(f"/{GENERATE}", content=body, headers={"Content-Type": "application/json"})
        assert (response.status_code, error_code(response)) == (400, code)

    def test_recover_shape_and_refusal(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        invoice = sim.invoice(run.eligible_ids[0])
        schedule_ids = [line.schedule_id for line in invoice.lines]
        sim.faults.update(error_schedules=schedule_ids)
        api.post(f"/{VOID.format(invoice.id)}")
        api.post(f"/{GENERATE}", json=generate_body(schedule_ids))
        response = api.post(f"/{RECOVER}", json={"billingScheduleIds": schedule_ids[:1]})
        result = response.json()["recoveryResults"][0]
        assert (result["invoiceStatus"], result["success"], result["invoiceErrors"]) == ("Posted", True, [])
        assert result["billingSchedules"][0] == {
            "billingScheduleId": schedule_ids[0],
            "billingScheduleStatus": "ReadyForInvoicing",
        }
        again = api.post(f"/{RECOVER}", json={"billingScheduleIds": schedule_ids[:1]})
        assert (again.status_code, error_code(again)) == (400, "INVALID_INPUT")

    def test_wrong_method_and_unknown_paths(self, api: httpx.Client) -> None:
        response = api.get(f"/{GENERATE}")
        assert (response.status_code, error_code(response)) == (405, "METHOD_NOT_ALLOWED")
        response = api.post("/commerce/invoicing/invoices/collection/actions/post")
        assert (response.status_code, error_code(response)) == (404, "NOT_FOUND")


class TestSessionAndLimits:
    def test_every_data_reply_carries_the_usage(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        headers = [
            api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"}).headers["Sforce-Limit-Info"],
            api.get("/query", params={"q": "SELECT Foo FROM Invoice"}).headers["Sforce-Limit-Info"],
            api.post(f"/{VOID.format(run.eligible_ids[0])}").headers["Sforce-Limit-Info"],
        ]
        assert headers == ["api-usage=1/100000", "api-usage=2/100000", "api-usage=3/100000"]

    def test_dead_session_is_401_invalid_session_id(self, api: httpx.Client, admin: httpx.Client) -> None:
        admin.post("/_sim/tokens/expire")
        response = api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"})
        assert (response.status_code, error_code(response)) == (401, "INVALID_SESSION_ID")
        assert response.headers["Sforce-Limit-Info"] == "api-usage=0/100000"

    def test_spent_allocation_is_403_total_requests(
        self, api: httpx.Client, admin: httpx.Client, sim: SalesforceState
    ) -> None:
        sim.faults.update(daily_allocation=10)
        assert admin.put("/_sim/usage", json={"used": 10}).json() == {"used": 10, "allocation": 10}
        response = api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"})
        assert response.status_code == 403
        assert response.json()[0] == {
            "message": "TotalRequests Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
            "fields": [],
        }
        assert response.headers["Sforce-Limit-Info"] == "api-usage=10/10"
        admin.put("/_sim/usage", json={"used": 5})
        assert api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"}).status_code == 200


class TestAdmin:
    def test_seed_read_pay_and_finish_walks(self, admin: httpx.Client, sim: SalesforceState) -> None:
        sim.faults.update(void_seconds=3600)
        seeded = admin.post("/_sim/runs", json={"invoices": 12, "seed": 9}).json()
        assert seeded["invoiceBatchRunId"] == SalesforceState().seed_run(12, 9).invoice_batch_run_id
        invoice_id = next(i for i, reason in seeded["expected"].items() if reason is None)
        invoice = admin.get(f"/_sim/invoices/{invoice_id}").json()
        assert invoice["Status"] == "Posted"
        assert invoice["lines"]
        schedule = admin.get(f"/_sim/schedules/{invoice['lines'][0]['BillingScheduleId']}").json()
        assert schedule["Status"] == "ReadyForInvoicing"
        paid = admin.post(f"/_sim/invoices/{invoice_id}/payments", json={"amount": "1.50"}).json()
        assert paid["NetPaymentsApplied"] == 1.5
        other = next(i for i, reason in seeded["expected"].items() if reason is None and i != invoice_id)
        sim.void(other)
        assert admin.post("/_sim/walks/finish").json() == {"finished": 1}
        assert admin.get(f"/_sim/invoices/{other}").json()["Status"] == "Voided"

    def test_counters_and_faults_routes(self, admin: httpx.Client) -> None:
        counters = admin.get("/_sim/counters").json()
        for name in (
            "requests", "responses", "peak_concurrency", "voids", "duplicate_void_attempts", "ineligible_void_attempts",
            "generate_calls", "invoices_per_regenerated_schedule", "duplicate_generates", "recoveries", "faults",
            "usage",
        ):  # fmt: skip
            assert name in counters, name
        patched = admin.patch("/_sim/faults", json={"page_size": 7, "error_schedules": ["44b"]}).json()
        assert (patched["page_size"], patched["error_schedules"]) == (7, ["44b"])
        assert admin.patch("/_sim/faults", json={"page_size": 0}).status_code == 400

    def test_unknown_invoice(self, admin: httpx.Client) -> None:
        assert admin.get("/_sim/invoices/nope").status_code == 404
