"""Faults by setting over loopback HTTP, and 3108 for writes that meet on a billing group."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from simulators.aria.seeding import SeededRun
from simulators.aria.state import AriaState, Invoice
from tests.simulators.aria.conftest import Aria
from tests.simulators.aria.test_http_api import rebill


def same_account(sim: AriaState, run: SeededRun) -> tuple[Invoice, Invoice]:
    account = sim.invoices[run.eligible[0]].account
    first, second = [sim.invoices[n] for n in run.eligible if sim.invoices[n].account == account][:2]
    return first, second


@pytest.fixture
def json_aria(http: httpx.Client) -> Aria:
    return Aria(http)


class TestFaults:
    def test_500_is_an_html_page_and_nothing_is_applied(
        self, json_aria: Aria, sim: AriaState, served_run: SeededRun
    ) -> None:
        invoice_no = served_run.eligible[0]
        sim.faults.update(p_500=1.0, fault_operations=["gen_rb_m"])
        reply = json_aria.post("gen_rb_m", acct_no=sim.invoices[invoice_no].account.acct_no, orig_invoice_no=invoice_no)
        assert reply.status_code == 500
        assert reply.headers["content-type"].startswith("text/html")
        assert sim.invoices[invoice_no].rb_no is None
        assert sim.counters()["faults_injected"] == {"500": 1}

    def test_a_lost_reply_is_a_502_after_the_rebill_was_made(
        self, json_aria: Aria, sim: AriaState, served_run: SeededRun
    ) -> None:
        invoice_no = served_run.eligible[0]
        sim.faults.update(p_reply_lost=1.0, fault_operations=["gen_rb_m"])  # the reads come through
        acct_no = sim.invoices[invoice_no].account.acct_no
        details = json_aria.call("get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no)
        lines = [
            {"line_no": x["line_no"], "service_no": x["service_no"]}
            for x in details["invoice_line_details"]
            if x["line_type"] != 2
        ]
        reply = json_aria.post(
            "gen_rb_m",
            acct_no=acct_no,
            orig_invoice_no=invoice_no,
            reason_cd=2,
            rb_line_items=lines,
            alt_caller_id="rebill",
        )
        assert reply.status_code == 502
        assert sim.invoices[invoice_no].rb_no is not None
        history = json_aria.call("get_invoice_history_m", acct_no=acct_no, master_plan_instance_id=-1)
        assert any(row["invoice_no"] == invoice_no and row["rb_no"] for row in history["invoice_hist"])
        assert sim.counters()["rebills"] == {str(invoice_no): 1}

    def test_busy_is_3108_and_nothing_is_applied(self, json_aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        invoice_no = served_run.eligible[0]
        sim.faults.update(p_busy=1.0)
        assert rebill(json_aria, sim, invoice_no)["error_code"] == 3108
        assert sim.invoices[invoice_no].rb_no is None
        assert sim.counters()["faults_injected"] == {"busy": 1}
        sim.faults.update(p_busy=0.0)
        assert rebill(json_aria, sim, invoice_no)["error_code"] == 0

    @pytest.mark.parametrize("applies", [True, False])
    def test_1001_applied_or_not(self, json_aria: Aria, sim: AriaState, served_run: SeededRun, applies: bool) -> None:
        invoice_no = served_run.eligible[0]
        sim.faults.update(p_unexpected=1.0, unexpected_applies=applies)
        assert rebill(json_aria, sim, invoice_no)["error_code"] == 1001
        assert (sim.invoices[invoice_no].rb_no is not None) is applies
        assert sim.counters()["faults_injected"] == {"unexpected": 1}

    def test_the_faults_route_takes_aria_settings(self, http: httpx.Client, sim: AriaState) -> None:
        patched = http.patch("/_sim/faults", json={"p_busy": 0.5, "page_cap": 10, "latency_ms": 1}).json()
        assert (patched["p_busy"], patched["page_cap"], patched["latency_ms"]) == (0.5, 10, 1.0)
        assert http.patch("/_sim/faults", json={"page_cap": 0}).status_code == 400
        assert sim.faults.settings.page_cap == 10


class TestBillingGroup:
    def race(self, aria: Aria, sim: AriaState, invoices: tuple[Invoice, ...]) -> list[dict[str, Any]]:
        """Send one write per invoice at the same moment; the replies in the order given."""
        sim.faults.update(latency_ms=300)
        barrier = threading.Barrier(len(invoices))
        replies: list[dict[str, Any]] = [{} for _ in invoices]

        def send(index: int, invoice: Invoice) -> None:
            barrier.wait()
            replies[index] = aria.call(
                "gen_rb_m",
                acct_no=invoice.account.acct_no,
                orig_invoice_no=invoice.invoice_no,
                reason_cd=2,
                rb_line_items=[
                    {"line_no": line.line_no, "service_no": line.service.service_no}
                    for line in invoice.lines
                    if not line.service.is_tax
                ],
                alt_caller_id="rebill",
            )

        threads = [threading.Thread(target=send, args=pair) for pair in enumerate(invoices)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return replies

    def test_two_writes_at_once_on_one_group_one_gets_3108(
        self, json_aria: Aria, sim: AriaState, served_run: SeededRun
    ) -> None:
        first, second = same_account(sim, served_run)
        replies = self.race(json_aria, sim, (first, second))
        assert sorted(reply["error_code"] for reply in replies) == [0, 3108]
        assert [first.rb_no is not None, second.rb_no is not None].count(True) == 1
        counters = sim.counters()
        assert (counters["busy_refusals"], counters["rebills_total"], counters["peak_concurrency"]) == (1, 1, 2)

    def test_writes_on_other_groups_do_not_meet(self, json_aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        first = sim.invoices[served_run.eligible[0]]
        other = next(sim.invoices[n] for n in served_run.eligible if sim.invoices[n].account != first.account)
        assert [reply["error_code"] for reply in self.race(json_aria, sim, (first, other))] == [0, 0]

    def test_one_after_the_other_never_meet(self, json_aria: Aria, sim: AriaState, served_run: SeededRun) -> None:
        sim.faults.update(latency_ms=20)
        for invoice in same_account(sim, served_run):
            assert rebill(json_aria, sim, invoice.invoice_no)["error_code"] == 0
        assert sim.counters()["busy_refusals"] == 0
