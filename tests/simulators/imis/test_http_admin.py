"""The /_sim admin API: counters, faults, seeding, payments, history, dumps, reset."""

from __future__ import annotations

import httpx

from simulators.imis.state import ImisState
from tests.simulators.imis.helpers import reversal, task


class TestCounters:
    def test_shape_and_reset(self, api: httpx.Client, admin: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        api.post("/api/Invoice/_execute", json=reversal("8158"))
        counters = admin.get("/_sim/counters").json()
        assert set(counters) == {
            "requests",
            "responses",
            "reversals",
            "refused_second_reversals",
            "refused_reversals",
            "peak_concurrency",
            "in_flight",
            "rebills",
            "tokens_issued",
        }
        assert counters["requests"]["Invoice.ProcessCashReversal"] == 2
        assert counters["requests"]["token"] == 1
        assert counters["reversals"] == {"8158": 1}
        assert counters["refused_second_reversals"] == 1
        assert counters == sim.counters()

        reset = admin.post("/_sim/counters/reset").json()
        assert reset["requests"] == {}
        assert reset["reversals"] == {}
        assert reset["peak_concurrency"] == 0
        # state is kept
        assert sim.invoice("8158").reversed
        assert api.get("/api/InvoiceSummary/8158").status_code == 200  # the token survives too


class TestFaults:
    def test_get_and_patch(self, admin: httpx.Client, sim: ImisState) -> None:
        assert admin.get("/_sim/faults").json()["p_500"] == 0
        patched = admin.patch("/_sim/faults", json={"p_500": 0.25, "fault_operations": ["Invoice.ProcessCashReversal"]})
        assert patched.status_code == 200
        assert patched.json()["p_500"] == 0.25
        assert patched.json()["fault_operations"] == ["Invoice.ProcessCashReversal"]
        assert sim.faults.settings.p_500 == 0.25
        assert admin.get("/_sim/faults").json()["task_step_seconds"] == 0.01  # untouched

    def test_fail_invoices_merge(self, admin: httpx.Client, sim: ImisState) -> None:
        admin.patch("/_sim/faults", json={"fail_invoices": {"a": "500", "b": "html"}})
        admin.patch("/_sim/faults", json={"fail_invoices": {"a": None, "c": "refuse"}})
        assert sim.faults.settings.fail_invoices == {"b": "html", "c": "refuse"}

    def test_bad_values_are_400_and_change_nothing(self, admin: httpx.Client, sim: ImisState) -> None:
        before = sim.faults.settings
        for patch in ({"p_500": 2}, {"refusal_style": "500"}, {"nope": 1}, {"latency_ms": "fast"}):
            response = admin.patch("/_sim/faults", json=patch)
            assert response.status_code == 400, patch
            assert response.json()["details"]
        assert admin.patch("/_sim/faults", content=b"[1]").status_code == 400
        assert sim.faults.settings == before


class TestSeeding:
    def test_seed_a_billing(self, admin: httpx.Client, sim: ImisState) -> None:
        response = admin.post("/_sim/billings", json={"invoices": 30, "seed": 5, "other_billings": 2})
        assert response.status_code == 201
        seeded = response.json()
        assert seeded == sim.seed_billing(invoices=30, seed=5, other_billings=2).to_dict() | {
            "original_key": seeded["original_key"],
            "other_keys": seeded["other_keys"],
            "invoice_ids": seeded["invoice_ids"],
            "open_invoice_ids": seeded["open_invoice_ids"],
            "party_ids": seeded["party_ids"],
            "rebill_party_ids": seeded["rebill_party_ids"],
            "other_open_invoice_ids": seeded["other_open_invoice_ids"],
        }
        assert len(seeded["invoice_ids"]) == 30
        assert len(seeded["other_keys"]) == 2
        assert sim.billing_log(seeded["original_key"]).status == 2

    def test_same_seed_on_a_fresh_simulator_gives_the_same_billing(self, admin: httpx.Client) -> None:
        first = admin.post("/_sim/billings", json={"invoices": 10, "seed": 77}).json()
        with ImisState() as fresh:
            assert fresh.seed_billing(invoices=10, seed=77).to_dict() == first

    def test_seed_options_and_errors(self, admin: httpx.Client, sim: ImisState) -> None:
        accrual = admin.post(
            "/_sim/billings",
            json={
                "invoices": 5,
                "seed": 1,
                "cycle_name": "Chapter Dues",
                "accounting_method": "accrual",
                "effective_date": "2026-01-01T00:00:00Z",
                "other_billings": 0,
            },
        ).json()
        assert (accrual["accounting_method"], accrual["cycle_name"], accrual["other_keys"]) == (1, "Chapter Dues", [])
        assert admin.post("/_sim/billings", json={"invoices": -1, "seed": 1}).status_code == 400
        assert admin.post("/_sim/billings", json={"seed": 1}).status_code == 400

    def test_seed_examples(self, admin: httpx.Client, sim: ImisState) -> None:
        response = admin.post("/_sim/examples")
        assert response.status_code == 201
        assert response.json()["original_key"] == "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        assert admin.post("/_sim/examples").status_code == 409
        admin.post("/_sim/reset")
        assert admin.post("/_sim/examples", json={"invoice_8158": "accrual"}).status_code == 201
        assert sim.invoice("8158").accounting_method == 1


class TestPaymentsAndDumps:
    def test_payment_after_planning_refuses_the_reversal(
        self, api: httpx.Client, admin: httpx.Client, sim: ImisState
    ) -> None:
        sim.seed_examples()
        paid = admin.post("/_sim/invoices/8158/payments", json={"amount": "10.00"})
        assert paid.status_code == 200
        assert paid.json()["payment_amount"] == "10.00"
        assert paid.json()["balance"] == "360.00"
        assert api.post("/api/Invoice/_execute", json=reversal("8158")).json()["IsSuccessStatusCode"] is False

    def test_pending_payment_and_errors(self, admin: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        pending = admin.post("/_sim/invoices/8159/payments", json={"amount": 250, "pending": True}).json()
        assert pending["pending_payment_amount"] == "250.00"
        assert admin.post("/_sim/invoices/nope/payments", json={"amount": "1"}).status_code == 404
        assert admin.post("/_sim/invoices/8159/payments", json={"amount": "-1"}).status_code == 400
        assert admin.post("/_sim/invoices/8159/payments", json={"amount": "ten"}).status_code == 400

    def test_legacy_id_in_admin_paths(self, admin: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        legacy = "CASH%3A23415%3A3f2b8c4e-9a1d-4e6f-8b7c-1d2e3f4a5b6c"
        assert admin.post(f"/_sim/invoices/{legacy}/payments", json={"amount": "1.00"}).status_code == 200
        assert admin.get(f"/_sim/invoices/{legacy}").json()["payment_amount"] == "1.00"

    def test_invoice_dump(self, admin: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=12, seed=3)
        dump = admin.get("/_sim/invoices", params={"BillingLogKey": seeded.original_key}).json()
        assert [d["invoice_id"] for d in dump] == list(seeded.invoice_ids)
        assert {"reversed", "balance", "payment_amount", "lines", "events"} <= set(dump[0])
        assert len(admin.get("/_sim/invoices").json()) > 12  # all of them

    def test_history_and_tasks(self, api: httpx.Client, admin: httpx.Client, sim: ImisState) -> None:
        seeded = sim.seed_billing(invoices=10, seed=3)
        key = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
        response = api.post(
            "/api/TaskDefinition/_execute",
            json=task(reverse_key=seeded.original_key, original_key=seeded.original_key, log_key=key),
        )
        task_log_id = response.json()["Result"]["TaskLogId"]
        assert sim.wait_for_tasks(5)
        history = admin.get(f"/_sim/billing-logs/{key}/history").json()
        assert [h["status"] for h in history] == [5, 1, 2]
        assert all(h["at"].endswith("Z") for h in history)
        assert admin.get("/_sim/billing-logs/00000000-0000-4000-8000-000000000000/history").status_code == 404
        tasks = admin.get("/_sim/tasks").json()
        assert [t["task_log_id"] for t in tasks] == [task_log_id]
        one = admin.get(f"/_sim/tasks/{task_log_id}").json()
        assert one["status"] == "Completed"
        assert set(one["reversed_invoice_ids"]) == set(seeded.open_invoice_ids)

    def test_reset_and_health(self, admin: httpx.Client, sim: ImisState) -> None:
        sim.seed_examples()
        assert admin.get("/_sim/health").json() == {"ok": True}
        assert admin.post("/_sim/reset").json() == {"ok": True}
        assert sim.invoices == {}
        assert admin.get("/_sim/nothing").status_code == 404
        assert admin.delete("/_sim/counters").status_code == 405
