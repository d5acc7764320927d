"""Faults over HTTP: 500 and 503 apply nothing, a lost reply applies then answers 502, and the rest."""

from __future__ import annotations

import httpx
import pytest

from simulators.energycap.state import EnergyCapState, SeededPeriod
from tests.simulators.energycap.helpers import b64, csv_of, wait_for_task

CODE = "RB-FAULT-0001"


def reverse(api: httpx.Client, ids: list[int], code: str = CODE) -> httpx.Response:
    body = {"batchSettings": {"batchMode": "new self-contained batch", "newBatch": {"batchCode": code}}, "billIds": ids}
    return api.put("/api/v202510/bill/reverse", json=body)


def import_file(api: httpx.Client, text: str, code: str = "RB-FAULT-I1") -> httpx.Response:
    body = {
        "batchSettings": {"batchMode": "new self-contained batch", "newBatchCode": code},
        "data": b64(text),
        "fileName": "f.csv",
    }
    return api.post("/api/v3/import/bill", json=body)


class TestNotApplied:
    @pytest.mark.parametrize(("setting", "status"), [("p_500", 500), ("p_503_html", 503), ("p_429", 429)])
    def test_the_reversal_is_not_applied(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod, setting: str, status: int
    ) -> None:
        sim.faults.update({setting: 1.0, "retry_after_seconds": 7})
        response = reverse(api, list(period.eligible_ids[:2]))
        assert response.status_code == status
        assert sim.batch_by_code(CODE) is None
        assert sim.counters()["reversals"] == {}
        if status == 429:
            assert response.headers["Retry-After"] == "7"
            assert response.json()["errors"][0]["message"]
        else:
            assert response.headers["content-type"].startswith("text/html")
            assert b"<title>" in response.content
        sim.faults.update({setting: 0.0})
        assert reverse(api, list(period.eligible_ids[:2])).json() == {"selected": 2, "updated": 2}

    def test_faults_hit_reads_too_and_are_counted(self, api: httpx.Client, sim: EnergyCapState) -> None:
        sim.faults.update(p_500=1.0)
        assert api.get("/api/v3/bill").status_code == 500
        assert api.get("/api/v3/batch").status_code == 500
        assert sim.counters()["faults"] == {"500": 2}

    def test_faults_can_be_aimed_at_one_operation(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        sim.faults.update(p_503_html=1.0, fault_operations=["bill.reverse"])
        assert api.get("/api/v3/bill").status_code == 200
        assert reverse(api, [period.eligible_ids[0]]).status_code == 503


class TestLostReply:
    def test_a_reversal_is_applied_then_answered_502(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        sim.faults.update(p_reply_lost=1.0, fault_operations=["bill.reverse"])
        ids = list(period.eligible_ids[:3])
        response = reverse(api, ids)
        assert response.status_code == 502
        batch = api.get("/api/v3/batch", params={"filter": f"batchCode equals '{CODE}'"}).json()
        assert [b["billCount"] for b in batch] == [3]
        again = reverse(api, ids)  # what a client must never do: the code protects the bills
        assert again.status_code == 502
        sim.faults.update(p_reply_lost=0.0)
        assert "already exists" in reverse(api, ids).json()["errors"][0]["message"]
        counters = sim.counters()
        assert counters["reversals"] == {str(i): 1 for i in ids}
        assert counters["batch_code_attempts"] == {CODE: 3}
        assert counters["faults"] == {"reply_lost": 2}

    def test_an_import_is_applied_then_answered_502(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        sim.faults.update(p_reply_lost=1.0, fault_operations=["import.bill"])
        assert import_file(api, csv_of()).status_code == 502
        tasks = api.get("/api/v3/task", params={"filter": "batchCode equals 'RB-FAULT-I1'"}).json()
        assert len(tasks) == 1
        assert wait_for_task(api, tasks[0]["taskGUId"])["status"] == "Completed"


class TestOtherSettings:
    def test_latency_delays_every_counted_request(self, api: httpx.Client, sim: EnergyCapState) -> None:
        sim.faults.update(latency_ms=150)
        response = api.get("/api/v3/bill")
        assert response.status_code == 200
        assert response.elapsed.total_seconds() >= 0.15

    def test_random_kickouts_over_http(self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod) -> None:
        sim.faults.update(p_kickout=1.0)
        guid = import_file(api, _rows(sim, period, 3)).json()
        task = wait_for_task(api, guid)
        assert task["status"] == "Completed with kickouts"
        assert task["output"]["kickedOut"] == 3

    def test_settings_are_patched_over_http(self, admin: httpx.Client, api: httpx.Client, period: SeededPeriod) -> None:
        patched = admin.patch("/_sim/faults", json={"page_cap": 20, "import_seconds": 0.01})
        assert (patched.json()["page_cap"], patched.json()["import_seconds"]) == (20, 0.01)
        assert api.get("/api/v3/bill", params={"pageSize": "100"}).headers["PageSize"] == "20"
        assert admin.patch("/_sim/faults", json={"p_kickout": 2}).status_code == 400


def _rows(sim: EnergyCapState, period: SeededPeriod, count: int) -> str:
    rows = []
    for bill_id in period.eligible_ids[:count]:
        bill = sim.bills[bill_id]
        rows.append(f"{bill.account.account_code},{bill.meters[0].meter_code},202510,2025-10-01,2025-10-31,1")
    return csv_of(*rows)
