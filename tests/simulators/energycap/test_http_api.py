"""The EnergyCAP API over real loopback HTTP: keys, lists and paging headers, reads, writes, admin."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simulators.common import SimulatorServer
from simulators.energycap.state import EnergyCapState, SeededPeriod
from tests.simulators.energycap.helpers import API_KEY, READER_KEY, b64, csv_of, wait_for_task

PERIOD = "accountPeriod equals '202510'"


def reverse_body(ids: list[int], code: str = "RB-7F3A21C0-0001", mode: str = "new self-contained batch") -> Any:
    return {"batchSettings": {"batchMode": mode, "newBatch": {"batchCode": code, "note": "run-1"}}, "billIds": ids}


def import_body(text: str, code: str = "RB-7F3A21C0-I1") -> Any:
    return {
        "batchSettings": {"batchMode": "new self-contained batch", "newBatchCode": code},
        "data": b64(text),
        "fileName": "rebill.csv",
        "importNote": "run-1",
    }


def error_message(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"}
    message: str = body["errors"][0]["message"]
    return message


class TestKeys:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"ECI-ApiKey": "wrong"}, {"Authorization": f"Bearer {API_KEY}"}, {"ECI-ApiKey": ""}],
    )
    def test_every_request_needs_a_known_key(
        self, server: SimulatorServer[EnergyCapState], sim: EnergyCapState, headers: dict[str, str]
    ) -> None:
        response = httpx.get(f"{server.base_url}/api/v3/bill", headers=headers, trust_env=False)
        assert response.status_code == 401
        assert "API key" in error_message(response)

    def test_the_header_name_is_case_blind(self, server: SimulatorServer[EnergyCapState], sim: EnergyCapState) -> None:
        response = httpx.get(f"{server.base_url}/api/v3/bill", headers={"eci-apikey": API_KEY}, trust_env=False)
        assert response.status_code == 200

    def test_a_key_without_bills_and_batches_reads_but_gets_403_on_writes(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        sim.add_api_key(READER_KEY, bills_and_batches=False)
        api.headers["ECI-ApiKey"] = READER_KEY
        assert api.get("/api/v3/bill").status_code == 200
        reversal = api.put("/api/v202510/bill/reverse", json=reverse_body([period.eligible_ids[0]]))
        assert reversal.status_code == 403
        assert "BillsAndBatches" in error_message(reversal)
        assert api.post("/api/v3/import/bill", json=import_body(csv_of())).status_code == 403
        assert sim.batches.keys() == {1, 2, 3}  # the seeded ones only


class TestLists:
    def test_default_page_and_echoed_headers(self, api: httpx.Client, period: SeededPeriod) -> None:
        response = api.get("/api/v3/bill", params={"filter": PERIOD})
        assert response.status_code == 200
        bills = response.json()
        assert len(bills) == 208
        assert [b["billId"] for b in bills] == sorted(period.bill_ids)
        assert (response.headers["PageNumber"], response.headers["PageSize"]) == ("1", "250")
        assert (response.headers["TotalNumberOfRecords"], response.headers["TotalPages"]) == ("208", "1")

    def test_pages_and_the_silent_cap(self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod) -> None:
        response = api.get("/api/v3/bill", params={"pageSize": "5000"})
        assert response.headers["PageSize"] == "1000"
        sim.faults.update(page_cap=50)
        third = api.get("/api/v3/bill", params={"filter": PERIOD, "pageNumber": "3", "pageSize": "100"})
        assert [third.headers[h] for h in ("PageNumber", "PageSize", "TotalNumberOfRecords", "TotalPages")] == [
            "3",
            "50",
            "208",
            "5",
        ]
        assert [b["billId"] for b in third.json()] == sorted(period.bill_ids)[100:150]
        past = api.get("/api/v3/bill", params={"filter": PERIOD, "pageNumber": "6", "pageSize": "50"})
        assert (past.status_code, past.json()) == (200, [])

    def test_no_match_is_zero_pages(self, api: httpx.Client, period: SeededPeriod) -> None:
        response = api.get("/api/v3/bill", params={"filter": "accountCode equals 'NOPE'"})
        assert response.json() == []
        assert (response.headers["TotalNumberOfRecords"], response.headers["TotalPages"]) == ("0", "0")

    def test_the_contract_example_url_encoded(self, api: httpx.Client, period: SeededPeriod) -> None:
        codes = period.account_codes[:2]
        selection = f"{PERIOD} and accountCode one of '{codes[0]}'|'{codes[1].lower()}'"
        url = "/api/v3/bill?filter=" + httpx.QueryParams({"x": selection}).get("x", "").replace(" ", "%20")
        bills = api.get(url).json()
        assert bills
        assert {b["account"]["accountCode"] for b in bills} == set(codes)

    @pytest.mark.parametrize(
        ("params", "why"),
        [
            ({"filter": "totalCost equals '1'"}, "not a filterable field"),
            ({"filter": "accountPeriod less than '202510'"}, "unsupported operator"),
            ({"pageNumber": "0"}, "pageNumber must be at least 1"),
            ({"pageSize": "ten"}, "must be a whole number"),
        ],
    )
    def test_bad_queries_are_400(self, api: httpx.Client, params: dict[str, str], why: str) -> None:
        response = api.get("/api/v3/bill", params=params)
        assert response.status_code == 400
        assert why in error_message(response)

    def test_batches_and_tasks_by_code(self, api: httpx.Client, period: SeededPeriod) -> None:
        response = api.get("/api/v3/batch", params={"filter": "batchCode equals 'imp-202510'"})
        assert [b["batchCode"] for b in response.json()] == ["IMP-202510"]
        assert response.headers["TotalPages"] == "1"
        assert api.get("/api/v3/task", params={"filter": "batchCode equals 'IMP-202510'"}).json() == []


class TestReads:
    def test_a_bill_has_the_contract_fields(self, api: httpx.Client, period: SeededPeriod) -> None:
        original_id = period.reversed_ids[0]
        response = api.get(f"/api/v3/bill/{original_id}")
        bill = json.loads(response.content, parse_float=Decimal)
        assert set(bill) >= {
            "billId",
            "account",
            "meters",
            "beginDate",
            "endDate",
            "billingPeriod",
            "accountPeriod",
            "totalCost",
            "void",
            "approved",
            "apExported",
            "glExported",
            "batch",
            "isReversal",
            "reversalOfBillId",
            "isReversed",
            "reversedByBillId",
        }
        assert set(bill["account"]) == {"accountId", "accountCode", "accountInfo"}
        assert set(bill["meters"][0]) == {"meterId", "meterCode"}
        assert set(bill["batch"]) == {"batchId", "batchCode"}
        assert isinstance(bill["totalCost"], Decimal)
        assert bill["isReversed"] is True
        reversal = api.get(f"/api/v3/bill/{bill['reversedByBillId']}").json()
        assert (reversal["isReversal"], reversal["reversalOfBillId"]) == (True, original_id)
        assert Decimal(str(reversal["totalCost"])) == -bill["totalCost"]

    @pytest.mark.parametrize("path", ["/api/v3/bill/1", "/api/v3/bill/abc", "/api/v3/batch/999", "/api/v3/task/nope"])
    def test_unknown_is_404(self, api: httpx.Client, period: SeededPeriod, path: str) -> None:
        response = api.get(path)
        assert response.status_code == 404
        assert error_message(response)

    def test_unknown_paths_and_methods(self, api: httpx.Client) -> None:
        assert api.get("/api/v3/meter").status_code == 404
        assert api.get("/api/v202510/bill/reverse").status_code == 405
        assert api.delete("/api/v3/bill").status_code == 405


class TestReverse:
    def test_reverses_into_a_closed_batch(self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod) -> None:
        ids = [*period.eligible_ids[:3], period.void_ids[0]]
        response = api.put("/api/v202510/bill/reverse", json=reverse_body(ids))
        assert (response.status_code, response.json()) == (200, {"selected": 4, "updated": 3})
        assert "ECI-Deprecated" not in response.headers
        batch = api.get("/api/v3/batch", params={"filter": "batchCode equals 'RB-7F3A21C0-0001'"}).json()[0]
        assert (batch["isOpen"], batch["batchStatus"], batch["billCount"], batch["note"]) == (
            False,
            "Closed",
            3,
            "run-1",
        )
        reversals = api.get("/api/v3/bill", params={"filter": "batchCode equals 'RB-7F3A21C0-0001'"}).json()
        assert sorted(b["reversalOfBillId"] for b in reversals) == sorted(period.eligible_ids[:3])

    def test_code_in_use_and_unknown_ids_are_400_with_nothing_applied(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        api.put("/api/v202510/bill/reverse", json=reverse_body([period.eligible_ids[0]]))
        bills_before = len(sim.bills)
        again = api.put("/api/v202510/bill/reverse", json=reverse_body([period.eligible_ids[1]], "rb-7f3a21c0-0001"))
        assert again.status_code == 400
        assert "already exists" in error_message(again)
        unknown = api.put("/api/v202510/bill/reverse", json=reverse_body([period.eligible_ids[1], 5], "RB-2"))
        assert unknown.status_code == 400
        assert "Unknown bill id(s): 5" in error_message(unknown)
        assert len(sim.bills) == bills_before
        assert sim.batch_by_code("RB-2") is None

    @pytest.mark.parametrize(
        ("content", "why"),
        [
            (b"", "empty"),
            (b"{not json", "not valid JSON"),
            (b"[1]", "must be a JSON object"),
            (b'{"billIds": ["1"], "batchSettings": {}}', "billIds must be an array of integers"),
            (b'{"billIds": [1], "batchSettings": "x"}', "batchSettings has the wrong type"),
        ],
    )
    def test_malformed_bodies(self, api: httpx.Client, content: bytes, why: str) -> None:
        response = api.put("/api/v202510/bill/reverse", content=content)
        assert response.status_code == 400
        assert why in error_message(response)

    def test_members_are_read_case_blind(self, api: httpx.Client, period: SeededPeriod) -> None:
        body = {
            "BatchSettings": {"BATCHMODE": "New Self-Contained Batch", "newbatch": {"BatchCode": "RB-CASE"}},
            "BillIds": [period.eligible_ids[0]],
        }
        assert api.put("/api/v202510/bill/reverse", json=body).json() == {"selected": 1, "updated": 1}

    def test_the_v3_reverse_works_deprecated_and_counted(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        response = api.put("/api/v3/bill/reverse", json=reverse_body([period.eligible_ids[0]]))
        assert response.json() == {"selected": 1, "updated": 1}
        assert "v202510" in response.headers["ECI-Deprecated"]
        counters = sim.counters()
        assert counters["deprecated_calls"] == {"PUT /api/v3/bill/reverse": 1}
        assert counters["reverse_calls"][0]["endpoint"] == "v3"


class TestImport:
    def test_a_task_guid_then_the_task_to_its_end(
        self, api: httpx.Client, sim: EnergyCapState, period: SeededPeriod
    ) -> None:
        bill = sim.bills[period.eligible_ids[0]]
        row = f"{bill.account.account_code},{bill.meters[0].meter_code},202510,2025-10-01,2025-10-31,12.34"
        text = csv_of(row, "AC-NOPE,MT,202510,2025-10-01,2025-10-31,1")
        response = api.post("/api/v3/import/bill", json=import_body(text))
        assert response.status_code == 200
        guid = response.json()
        assert isinstance(guid, str)
        batch = api.get("/api/v3/batch", params={"filter": "batchCode equals 'RB-7F3A21C0-I1'"}).json()
        assert len(batch) == 1  # the batch exists from the 200 on
        by_code = api.get("/api/v3/task", params={"filter": "batchCode equals 'RB-7F3A21C0-I1'"}).json()
        assert [t["taskGUId"] for t in by_code] == [guid]
        task = wait_for_task(api, guid)
        assert task["status"] == "Completed with kickouts"
        assert task["taskType"]["taskTypeCode"] == "BillImport"
        assert task["batch"]["batchCode"] == "RB-7F3A21C0-I1"
        assert task["endDate"] is not None
        output = task["output"]
        assert (output["rows"], output["created"], output["kickedOut"]) == (2, 1, 1)
        assert output["kickouts"][0]["row"] == 2
        assert output["kickouts"][0]["accountCode"] == "AC-NOPE"
        imported = api.get(f"/api/v3/bill/{output['createdBillIds'][0]}").json()
        assert (imported["totalCost"], imported["accountPeriod"]) == (12.34, 202510)

        sim.add_account("AC-NOPE", ["MT"])
        body = {"batchSettings": {"batchMode": "new self-contained batch", "newBatchCode": "RB-7F3A21C0-I2"}}
        again = api.post(f"/api/v202401/import/bill/task/{guid}/kickout", json=body)
        assert again.status_code == 200
        assert wait_for_task(api, again.json())["status"] == "Completed"

    def test_the_guid_may_come_as_an_object(self, api: httpx.Client, sim: EnergyCapState) -> None:
        sim.faults.update(task_guid_reply="object")
        response = api.post("/api/v3/import/bill", json=import_body(csv_of()))
        assert set(response.json()) == {"taskGUId"}

    def test_refusals(self, api: httpx.Client, sim: EnergyCapState) -> None:
        body = import_body(csv_of())
        assert api.post("/api/v3/import/bill", json=body).status_code == 200
        again = api.post("/api/v3/import/bill", json=body)
        assert again.status_code == 400
        assert "already exists" in error_message(again)
        assert api.post("/api/v3/import/bill", json={**body, "data": "@@"}).status_code == 400
        assert api.post("/api/v3/import/bill", json={**body, "fileName": None}).status_code == 400
        kickout = {"batchSettings": {"batchMode": "new self-contained batch", "newBatchCode": "K"}}
        assert api.post("/api/v202401/import/bill/task/nope/kickout", json=kickout).status_code == 404
        assert sim.counters()["import_attempts"] == {"RB-7F3A21C0-I1": 4}


class TestAdmin:
    def test_seed_a_period_and_its_corrected_bills(self, admin: httpx.Client, sim: EnergyCapState) -> None:
        seeded = admin.post("/_sim/periods", json={"bills": 30, "seed": 4, "accountPeriod": 202511})
        assert seeded.status_code == 201
        assert seeded.json()["accountPeriod"] == 202511
        eligible = seeded.json()["eligibleIds"]
        corrected = admin.get("/_sim/periods/202511/corrected-bills")
        assert corrected.headers["content-type"].startswith("text/csv")
        assert len(corrected.text.splitlines()) == 1 + len(eligible)
        assert admin.get("/_sim/periods/202001/corrected-bills").status_code == 404
        assert admin.post("/_sim/periods", json={"bills": 1, "seed": 1, "accountPeriod": 202513}).status_code == 400

    def test_accounts_and_keys(self, admin: httpx.Client, api: httpx.Client, sim: EnergyCapState) -> None:
        account = admin.post("/_sim/accounts", json={"accountCode": "AC-X", "meterCodes": ["M1", "M2"]})
        assert account.status_code == 201
        assert [m["meterCode"] for m in account.json()["meters"]] == ["M1", "M2"]
        assert admin.post("/_sim/api-keys", json={"key": READER_KEY, "billsAndBatches": False}).status_code == 201
        assert admin.delete(f"/_sim/api-keys/{API_KEY}").json() == {"revoked": True}
        assert api.get("/api/v3/bill").status_code == 401

    def test_counters_reset_and_the_admin_api_is_not_counted(
        self, admin: httpx.Client, api: httpx.Client, period: SeededPeriod
    ) -> None:
        api.get("/api/v3/bill")
        api.put("/api/v202510/bill/reverse", json=reverse_body([period.eligible_ids[0]]))
        counters = admin.get("/_sim/counters").json()
        assert counters["requests"] == {"bill.list": 1, "bill.reverse": 1}
        assert counters["responses"] == {"200": 2}
        assert counters["peak_concurrency"] >= 1
        for key in (
            "reversals",
            "duplicate_reversals",
            "batch_code_attempts",
            "import_attempts",
            "batches",
            "reverse_calls",
            "imports",
            "deprecated_calls",
            "faults",
            "first_reversal_at",
            "last_reversal_at",
        ):
            assert key in counters
        reset = admin.post("/_sim/counters/reset").json()
        assert (reset["requests"], reset["reversals"], reset["reverse_calls"]) == ({}, {}, [])
