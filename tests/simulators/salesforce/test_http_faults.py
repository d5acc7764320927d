"""Faults as Salesforce shows them: 403 throttling, 500 and 503 (not applied), lost replies (applied),
latency, short sessions, generated invoices in Error; all of them counted."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from simulators.common.server import SimulatorServer
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.simulators.salesforce.helpers import GENERATE, RECOVER, VOID, generate_body, get_token


@pytest.fixture
def run(sim: SalesforceState) -> SeededRun:
    return sim.seed_run(invoices=12, seed=8)


def schedules(sim: SalesforceState, invoice_id: str) -> list[str]:
    return [line.schedule_id for line in sim.invoice(invoice_id).lines]


class TestNotApplied:
    def test_403_concurrency_limit(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        sim.faults.update(p_429=1.0)
        response = api.post(f"/{VOID.format(run.eligible_ids[0])}")
        assert response.status_code == 403
        assert response.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        assert "ConcurrentPerOrgLongTxn" in response.json()[0]["message"]
        assert "Sforce-Limit-Info" in response.headers
        assert sim.invoice(run.eligible_ids[0]).status == "Posted"
        assert sim.counters()["faults"] == {"403_concurrency": 1}

    def test_500_unknown_exception(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        sim.faults.update(p_500=1.0)
        response = api.post(f"/{VOID.format(run.eligible_ids[0])}")
        assert response.status_code == 500
        assert response.json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
        assert sim.invoice(run.eligible_ids[0]).status == "Posted"
        assert sim.counters()["voids"] == {}

    def test_503_html_page(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        sim.faults.update(p_503_html=1.0)
        response = api.get("/query", params={"q": "SELECT Id FROM Invoice"})
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert b"<title>" in response.content
        assert sim.counters()["faults"] == {"503_html": 1}


class TestLostReplies:
    def test_void_is_applied_then_502(self, api: httpx.Client, sim: SalesforceState, run: SeededRun) -> None:
        sim.faults.update(void_seconds=3600, p_reply_lost=1.0, fault_operations=["void"])
        response = api.post(f"/{VOID.format(run.eligible_ids[0])}")
        assert response.status_code == 502
        assert sim.invoice(run.eligible_ids[0]).status == "Void In Progress"
        assert api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"}).status_code == 200  # only void is faulted

    def test_generate_and_recover_are_applied_then_502(
        self, api: httpx.Client, sim: SalesforceState, run: SeededRun
    ) -> None:
        invoice_id = run.eligible_ids[0]
        schedule_ids = schedules(sim, invoice_id)
        api.post(f"/{VOID.format(invoice_id)}")
        sim.faults.update(generate_seconds=3600, p_reply_lost=1.0, fault_operations=["generate", "recover"])
        assert api.post(f"/{GENERATE}", json=generate_body(schedule_ids)).status_code == 502
        assert sim.schedule(schedule_ids[0]).status == "Processing"
        assert api.post(f"/{RECOVER}", json={"billingScheduleIds": schedule_ids[:1]}).status_code == 502
        assert sim.schedule(schedule_ids[0]).status == "ReadyForInvoicing"
        assert sim.counters()["faults"] == {"reply_lost": 2}


class TestPaceAndSessions:
    def test_latency_delays_each_request(self, api: httpx.Client, sim: SalesforceState) -> None:
        sim.faults.update(latency_ms=150)
        started = time.perf_counter()
        api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"})
        assert time.perf_counter() - started >= 0.15

    def test_concurrent_requests_are_seen_in_flight(self, api: httpx.Client, sim: SalesforceState) -> None:
        sim.faults.update(latency_ms=300)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda _: api.get("/query", params={"q": "SELECT COUNT() FROM Invoice"}), range(4))
            )
        assert {r.status_code for r in statuses} == {200}
        assert sim.counters()["peak_concurrency"] >= 2

    def test_a_session_ends_after_its_ttl(self, server: SimulatorServer[SalesforceState], sim: SalesforceState) -> None:
        sim.faults.update(token_ttl_seconds=0.2)
        headers = {"Authorization": f"Bearer {get_token(server.base_url)}"}
        url = f"{server.base_url}/services/data/v62.0/query"
        assert httpx.get(url, params={"q": "SELECT COUNT() FROM Invoice"}, headers=headers).status_code == 200
        time.sleep(0.3)
        response = httpx.get(url, params={"q": "SELECT COUNT() FROM Invoice"}, headers=headers)
        assert (response.status_code, response.json()[0]["errorCode"]) == (401, "INVALID_SESSION_ID")

    def test_generated_invoices_end_in_error_by_draw(
        self, api: httpx.Client, sim: SalesforceState, run: SeededRun
    ) -> None:
        invoice_id = run.eligible_ids[0]
        api.post(f"/{VOID.format(invoice_id)}")
        sim.faults.update(p_schedule_error=1.0)
        api.post(f"/{GENERATE}", json=generate_body(schedules(sim, invoice_id)))
        assert {sim.schedule(s).status for s in schedules(sim, invoice_id)} == {"Error"}
        assert sim.counters()["faults"] == {"schedule_error": 1}
