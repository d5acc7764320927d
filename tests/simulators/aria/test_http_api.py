"""The simulator over loopback HTTP: the four calls on the three paths, JSON and form bodies, every code."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simulators.aria.seeding import SeededRun
from simulators.aria.state import AriaState
from tests.simulators.aria.conftest import AUTH_KEY, CLIENT_NO, PATHS, Aria

RUN_QUERY = "bill_date = 2025-10-01 AND invoice_type_cd != R"


def lines_of(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-tax line, as rb_line_items that change nothing."""
    return [
        {"line_no": line["line_no"], "service_no": line["service_no"]}
        for line in details["invoice_line_details"]
        if line["line_type"] != 2
    ]


def rebill(aria: Aria, sim: AriaState, invoice_no: int, **params: Any) -> dict[str, Any]:
    acct_no = sim.invoices[invoice_no].account.acct_no
    details = aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no)
    body = {
        "acct_no": acct_no,
        "orig_invoice_no": invoice_no,
        "reason_cd": 2,
        "rb_line_items": lines_of(details),
        "do_collect": 0,
        "alt_caller_id": "rebill",
        "optional_transaction_qualifiers": [{"qualifier_name": "run_id", "qualifier_value": "R-42"}],
        **params,
    }
    return aria.call("gen_rb_m", **body)


class TestPathsAndBodies:
    @pytest.mark.parametrize("path", PATHS)
    def test_every_call_on_every_path(self, aria: Aria, sim: AriaState, served_run: SeededRun, path: str) -> None:
        aria.path = path
        invoice_no = served_run.eligible[0]
        acct_no = sim.invoices[invoice_no].account.acct_no
        page = aria.call("get_invoice_information_m", query_string=f"invoice_no = {invoice_no}")
        assert [i["invoice_no"] for i in page["invoice_details_m"]] == [invoice_no]
        assert aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no)["error_code"] == 0
        history = aria.call("get_invoice_history_m", acct_no=acct_no, master_plan_instance_id=-1)
        assert invoice_no in [row["invoice_no"] for row in history["invoice_hist"]]
        assert rebill(aria, sim, invoice_no)["error_code"] == 0
        assert sim.invoices[invoice_no].rb_no is not None

    def test_money_goes_out_as_json_numbers_with_its_digits(
        self, aria: Aria, sim: AriaState, served_run: SeededRun
    ) -> None:
        invoice_no = served_run.eligible[0]
        acct_no = sim.invoices[invoice_no].account.acct_no
        raw = aria.post("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no).content
        details = json.loads(raw, parse_float=Decimal)
        line = details["invoice_line_details"][0]
        assert isinstance(line["rate_per_unit"], Decimal)
        assert f'"rate_per_unit":{sim.invoices[invoice_no].lines[0].rate_per_unit}'.encode() in raw
        assert details["amount"] == sim.invoices[invoice_no].amount

    def test_get_is_not_allowed_and_other_paths_are_not_found(self, http: httpx.Client) -> None:
        assert http.get("/v1/core").status_code == 405
        assert http.post("/v2/core", json={}).status_code == 404


class TestObjectQuery:
    def test_pages_follow_the_records_returned_under_the_cap(
        self, aria: Aria, sim: AriaState, served_run: SeededRun
    ) -> None:
        sim.faults.update(page_cap=7)
        seen: list[int] = []
        offset = 0
        while True:
            page = aria.call("get_invoice_information_m", query_string=RUN_QUERY, limit=500, offset=offset)
            assert page["total_records"] == len(served_run.invoice_nos)
            assert page["starting_record"] == offset
            assert len(page["invoice_details_m"]) <= 7
            if not page["invoice_details_m"]:
                break
            seen += [i["invoice_no"] for i in page["invoice_details_m"]]
            offset += len(page["invoice_details_m"])
        assert seen == list(served_run.invoice_nos)

    def test_the_default_limit_and_a_count(self, aria: Aria, served_run: SeededRun) -> None:
        everything = aria.call("get_invoice_information_m", query_string="bill_date = 2025-10-01")
        assert len(everything["invoice_details_m"]) == len(served_run.invoice_nos) + len(served_run.rebill_invoice_nos)
        count = aria.call("get_invoice_information_m", query_string=RUN_QUERY, limit=-1)
        assert (count["total_records"], count["invoice_details_m"]) == (len(served_run.invoice_nos), [])

    def test_a_header_has_what_eligibility_needs(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        page = aria.call("get_invoice_information_m", query_string=f"invoice_no = {served_run.voided[0]}")
        header = page["invoice_details_m"][0]
        assert set(header) >= {
            "invoice_no",
            "acct_no",
            "amount",
            "total_due",
            "paid_date",
            "bill_date",
            "voiding_event_no",
            "invoice_type_cd",
        }
        assert header["voiding_event_no"] is not None


class TestRebill:
    def test_applies_once_then_3097(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        invoice_no = served_run.eligible[0]
        first = rebill(aria, sim, invoice_no, rb_comments="Rate correction, run R-42")
        assert first["invoice_no"] == sim.invoices[invoice_no].rb_no
        assert (first["reason_code"], first["created_by"], first["created_date"]) == (2, "rebill", "2025-11-03")
        second = rebill(aria, sim, invoice_no)
        assert second["error_code"] == 3097
        counters = aria.http.get("/_sim/counters").json()
        assert counters["rebills"] == {str(invoice_no): 1}
        assert counters["duplicate_attempts"] == 1
        assert counters["error_codes"]["3097"] == 1

    def test_a_dry_run_changes_nothing(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        invoice_no = served_run.eligible[0]
        before = sim.dump_invoices()
        dry = rebill(aria, sim, invoice_no, do_write="false")
        assert dry["error_code"] == 0
        assert dry["invoice_no"] is None
        assert Decimal(str(dry["amount"])) == sim.invoices[invoice_no].amount
        assert sim.dump_invoices() == before
        counters = aria.http.get("/_sim/counters").json()
        assert (counters["dry_run_calls"], counters["rebills_total"]) == (1, 0)

    def test_the_history_shows_it(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        invoice_no = served_run.eligible[0]
        acct_no = sim.invoices[invoice_no].account.acct_no
        new = rebill(aria, sim, invoice_no)["invoice_no"]
        rows = {
            row["invoice_no"]: row
            for row in aria.call("get_invoice_history_m", acct_no=acct_no, master_plan_instance_id=-1)["invoice_hist"]
        }
        assert (rows[invoice_no]["rb_no"], rows[invoice_no]["rb_status"]) == (new, "True")
        assert (rows[new]["invoice_type_cd"], rows[new]["rb_flag"], rows[new]["orig_invoice_no"]) == (
            "R",
            1,
            invoice_no,
        )


class TestErrorCodes:
    """Every code of the contract's table the simulator produces, as HTTP 200 + error_code."""

    def codes(self, aria: Aria, sim: AriaState, run: SeededRun) -> dict[int, dict[str, Any]]:
        invoice_no = run.eligible[0]
        acct_no = sim.invoices[invoice_no].account.acct_no
        other_acct = next(a for a in run.acct_nos if a != acct_no)
        voided = run.voided[0]
        return {
            1004: aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no, auth_key="wrong"),
            1009: aria.call("get_invoice_history_m", acct_no=1, master_plan_instance_id=-1),
            1010: aria.call("get_invoice_history_m", acct_no=acct_no),
            1016: aria.call("get_invoice_information_m", query_string="bill_date > 2025-10-01"),
            1024: aria.call(
                "get_invoice_history_m", acct_no=acct_no, master_plan_instance_id=-1, start_bill_date="10/01/2025"
            ),
            1033: rebill(aria, sim, invoice_no, do_write="yes"),
            2003: rebill(aria, sim, voided),
            3004: aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=other_acct),
            3024: rebill(aria, sim, invoice_no, reason_cd=99),
        }

    def test_each(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        for code, reply in self.codes(aria, sim, served_run).items():
            assert reply["error_code"] == code, reply
            assert reply["error_msg"]
        assert all(sim.invoices[n].rb_no is None for n in served_run.eligible)

    def test_1004_without_credentials(self, http: httpx.Client) -> None:
        reply = http.post("/v1/core", json={"rest_call": "get_invoice_details_m", "invoice_no": 1})
        assert (reply.status_code, reply.json()["error_code"]) == (200, 1004)

    def test_1012_for_a_body_that_is_not_json(self, http: httpx.Client) -> None:
        reply = http.post(
            "/v1/core", content=b'{"rest_call": "gen_rb_m", ', headers={"Content-Type": "application/json"}
        )
        assert (reply.status_code, reply.json()["error_code"]) == (200, 1012)

    def test_1016_for_crescendo_bracket_keys(self, http: httpx.Client) -> None:
        form = {"rest_call": "gen_rb_m", "client_no": CLIENT_NO, "auth_key": AUTH_KEY, "rb_line_items[0][line_no]": 1}
        assert http.post("/v1/core", data=form).json()["error_code"] == 1016

    def test_unknown_and_missing_rest_call(self, aria: Aria) -> None:
        assert aria.call("void_invoice_m")["error_code"] == 1016
        assert aria.call("")["error_code"] == 1010
        assert aria.http.get("/_sim/counters").json()["requests"]["unknown"] == 2

    def test_1016_for_a_line_left_in_disorder(self, aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        invoice_no = served_run.eligible[0]
        acct_no = sim.invoices[invoice_no].account.acct_no
        details = aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no)
        reply = rebill(aria, sim, invoice_no, rb_line_items=list(reversed(lines_of(details))))
        assert reply["error_code"] == 1016


class TestAdmin:
    def test_seed_look_pay_void(self, http: httpx.Client, sim: AriaState) -> None:
        seeded = http.post("/_sim/runs", json={"invoices": 12, "seed": 5, "bill_date": "2025-08-01"})
        assert seeded.status_code == 201
        run = seeded.json()
        assert run["bill_date"] == "2025-08-01"
        invoices = http.get("/_sim/invoices", params={"bill_date": "2025-08-01"}).json()
        assert len(invoices) == 12 + len(run["rebill_invoice_nos"])
        number = run["eligible"][0]
        paid = http.post(f"/_sim/invoices/{number}/payments", json={"amount": 5}).json()
        assert (paid["payments"], paid["eligible"]) == ("5.00", False)
        voided = http.post(f"/_sim/invoices/{run['eligible'][1]}/void").json()
        assert voided["voiding_event_no"] is not None
        assert http.get(f"/_sim/invoices/{number}").json()["invoice_no"] == number
        assert http.get("/_sim/invoices/1").status_code == 404
        assert http.post("/_sim/runs", json={"invoices": -1, "seed": 1}).status_code == 400

    def test_reset_and_counters_are_not_counted(
        self, http: httpx.Client, sim: AriaState, served_run: SeededRun
    ) -> None:
        http.get("/_sim/counters")
        assert http.post("/_sim/reset").status_code == 200
        assert sim.invoices == {}
        assert http.get("/_sim/counters").json()["requests"] == {}
