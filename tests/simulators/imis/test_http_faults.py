"""Every fault kind over real HTTP, and whether the operation was applied behind it."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState
from tests.simulators.imis.helpers import execute, get_token, reversal

REVERSAL_ONLY = ["Invoice.ProcessCashReversal"]


@pytest.fixture
def examples(sim: ImisState) -> ImisState:
    sim.seed_examples()
    return sim


class TestProbabilisticFaults:
    def test_429_with_retry_after(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_429=1.0, retry_after_seconds=7)
        response = api.get("/api/InvoiceSummary/8158")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"

    def test_500(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_500=1.0)
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 500
        assert not examples.invoice("8158").reversed

    def test_503_maintenance_page(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_503_html=1.0)
        response = api.get("/api/BillingLog")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "<html" in response.text

    def test_html_200(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_html_200=1.0)
        response = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        with pytest.raises(json.JSONDecodeError):
            response.json()
        assert not examples.invoice("8158").reversed

    def test_truncated_json_applies_the_operation(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_truncated_json=1.0)
        response = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        with pytest.raises(json.JSONDecodeError):
            response.json()
        assert examples.invoice("8158").reversed
        assert examples.counters()["reversals"] == {"8158": 1}

    def test_reply_lost_502_applies_the_operation(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_reply_lost=1.0, reply_lost_mode="502", fault_operations=REVERSAL_ONLY)
        response = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert response.status_code == 502
        assert examples.invoice("8158").reversed
        # reads are not faulted, so the client can settle the unknown outcome
        assert api.get("/api/InvoiceSummary/8158").json()["Balance"]["Amount"] == 0
        can = api.post("/api/Invoice/_execute", json=execute("CanCashInvoiceBeReversed", "8158"))
        assert can.json()["Result"] is False
        # and a blind retry is caught
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 502
        assert examples.counters()["refused_second_reversals"] == 1

    def test_reply_lost_hang_applies_then_times_out(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_reply_lost=1.0, reply_lost_mode="hang", hang_seconds=1, fault_operations=REVERSAL_ONLY)
        with pytest.raises(httpx.ReadTimeout):
            api.post("/api/Invoice/_execute", json=reversal("8158"), timeout=0.3)
        assert examples.invoice("8158").reversed

    def test_reply_lost_hang_answers_504_after_hang_seconds(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(
            p_reply_lost=1.0, reply_lost_mode="hang", hang_seconds=0.2, fault_operations=REVERSAL_ONLY
        )
        started = time.monotonic()
        response = api.post("/api/Invoice/_execute", json=reversal("8158"))
        assert time.monotonic() - started >= 0.2
        assert response.status_code == 504
        assert examples.invoice("8158").reversed

    def test_hang_does_not_apply_the_operation(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_hang=1.0, hang_seconds=1, fault_operations=REVERSAL_ONLY)
        with pytest.raises(httpx.ReadTimeout):
            api.post("/api/Invoice/_execute", json=reversal("8158"), timeout=0.3)
        assert not examples.invoice("8158").reversed
        assert examples.counters()["in_flight"] >= 1  # still sleeping on the server

    def test_latency(self, api: httpx.Client, examples: ImisState) -> None:
        api.get("/api/InvoiceSummary/8158")  # connection open
        examples.faults.update(latency_ms=120)
        started = time.monotonic()
        assert api.get("/api/InvoiceSummary/8158").status_code == 200
        assert time.monotonic() - started >= 0.12

    def test_fault_operations_limit_faults_to_named_operations(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_500=1.0, fault_operations=REVERSAL_ONLY)
        assert api.get("/api/InvoiceSummary/8158").status_code == 200
        assert api.post("/api/Invoice/_execute", json=execute("CanCashInvoiceBeReversed", "8158")).status_code == 200
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 500

    def test_token_is_not_faulted_unless_named(self, server: SimulatorServer, examples: ImisState) -> None:
        examples.faults.update(p_500=1.0)
        get_token(server.base_url)
        examples.faults.update(fault_operations=["token"])
        response = httpx.post(
            f"{server.base_url}/token",
            data={"grant_type": "password", "username": "admin", "password": "secret"},
            trust_env=False,
        )
        assert response.status_code == 500

    def test_faults_come_before_auth(self, server: SimulatorServer, examples: ImisState) -> None:
        examples.faults.update(p_429=1.0)
        assert httpx.get(f"{server.base_url}/api/BillingLog", trust_env=False).status_code == 429

    def test_faulted_requests_are_counted(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_500=1.0)
        examples.reset_counters()
        api.get("/api/InvoiceSummary/8158")
        counters = examples.counters()
        assert counters["requests"] == {"InvoiceSummary.get": 1}
        assert counters["responses"] == {"500": 1}

    def test_admin_api_is_never_faulted_or_counted(self, admin: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(p_500=1.0, latency_ms=2000)
        examples.reset_counters()
        started = time.monotonic()
        assert admin.get("/_sim/counters").status_code == 200
        assert time.monotonic() - started < 1.5
        assert examples.counters()["requests"] == {}


class TestInvoiceFaults:
    @pytest.mark.parametrize(
        "body",
        [reversal("8158"), execute("CanCashInvoiceBeReversed", "8158")],
        ids=["ProcessCashReversal", "CanCashInvoiceBeReversed"],
    )
    def test_refuse(self, api: httpx.Client, examples: ImisState, body: dict[str, object]) -> None:
        examples.faults.update(fail_invoices={"8158": "refuse"})
        response = api.post("/api/Invoice/_execute", json=body)
        assert response.status_code == 200
        assert response.json()["IsSuccessStatusCode"] is False
        examples.faults.update(refusal_style="400")
        assert api.post("/api/Invoice/_execute", json=body).status_code == 400
        assert not examples.invoice("8158").reversed

    def test_refusals_of_reversals_are_counted(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(fail_invoices={"8158": "refuse"})
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        api.post("/api/Invoice/_execute", json=execute("CanCashInvoiceBeReversed", "8158"))
        assert examples.counters()["refused_reversals"] == 1

    def test_500_html_truncated(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(fail_invoices={"8158": "500", "8159": "html", "8163": "truncated"})
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 500
        html = api.post("/api/Invoice/_execute", json=reversal("8159"))
        assert (html.status_code, html.headers["content-type"].split(";")[0]) == (200, "text/html")
        truncated = api.post("/api/Invoice/_execute", json=reversal("8163"))
        assert truncated.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            truncated.json()
        assert not any(examples.invoice(i).reversed for i in ("8158", "8159", "8163"))
        # other invoices are unaffected, and so are reads of the failing ones
        assert api.post("/api/Invoice/_execute", json=reversal("8164")).json()["Result"] is True
        assert api.get("/api/InvoiceSummary/8158").status_code == 200

    def test_by_reference_number(self, api: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(fail_invoices={"2317": "500"})
        assert api.post("/api/Invoice/_execute", json=execute("CanInvoiceBeReversed", 2317)).status_code == 500

    def test_until_removed(self, api: httpx.Client, admin: httpx.Client, examples: ImisState) -> None:
        examples.faults.update(fail_invoices={"8158": "500"})
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 500
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).status_code == 500
        admin.patch("/_sim/faults", json={"fail_invoices": {"8158": None}})
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).json()["Result"] is True
