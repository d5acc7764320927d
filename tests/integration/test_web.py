"""The web view and the HTML report, in headless Chromium, on runs made by the real stack.

`rebill web` runs as its own process (as an operator starts it) with the broker pointed at a port
where nothing listens: the view is served from the ledger alone. The runs are real: a worker, the
simulator over HTTP, one billing with invoices the simulator refuses or answers 500 for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # selenium is imported where a browser starts
    from selenium.webdriver import Chrome
    from selenium.webdriver.remote.webelement import WebElement

from orchestrator.domain.run import RunState
from tests.support.browser import chromium, full_page_screenshot, require_chromium, send_basic_auth
from tests.support.polling import wait_until
from tests.support.stack import Stack, run_with_failures

USER, PASSWORD = "operator", f"web-{uuid.uuid4().hex[:12]}"
UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"  # the discard port: nothing answers
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104  # what the view must refuse to serve open on


@dataclass(frozen=True)
class Runs:
    failed: str  # NEEDS_ATTENTION: two invoices refused, one answered 500 until its attempts ran out
    refused: tuple[str, ...]
    gave_up: str
    completed: str
    dry: str


@dataclass
class WebProcess:
    process: subprocess.Popen[str]
    url: str
    output: str

    def stop(self) -> None:
        self.process.terminate()
        rest, _ = self.process.communicate(timeout=20)
        self.output += rest


@contextmanager
def rebill_web(stack: Stack, *args: str, **env: str) -> Iterator[WebProcess]:
    """`rebill web --port 0 ARGS` in its own process, until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.entrypoints.cli", "web", "--port", "0", *args],
        env={**os.environ, **stack.env, "REBILL_BROKER_URL": UNREACHABLE_BROKER, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"rebill web stopped: {''.join(lines)}")
        lines.append(line)
        if line.startswith("serving the web view on "):
            break
    web = WebProcess(process, line.removeprefix("serving the web view on ").strip().rstrip("/"), "".join(lines))
    try:
        yield web
    finally:
        web.stop()


def run_waiting(stack: Stack, *args: str) -> tuple[int, str]:
    result = stack.cli("run", "--wait", *args)
    return result.exit_code, result.output.splitlines()[0].strip()


@pytest.fixture(scope="module")
def runs(stack: Stack) -> Runs:
    failed = run_with_failures(stack)
    code, completed = run_waiting(stack, "--billing-log", stack.seed(20).original_key)
    assert code == 0
    dry = stack.cli("run", "--billing-log", stack.seed(5).original_key, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    return Runs(failed.run_id, failed.refused, failed.gave_up, completed, json.loads(dry.output)["run_id"])


@pytest.fixture(scope="module")
def web(stack: Stack, runs: Runs) -> Iterator[WebProcess]:
    with rebill_web(stack, REBILL_WEB_BASIC_AUTH=f"{USER}:{PASSWORD}") as served:
        yield served
    assert PASSWORD not in served.output


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, web: WebProcess) -> Iterator[Chrome]:
    require_chromium()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        send_basic_auth(driver, USER, PASSWORD)
        yield driver


def report_rows(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    lines = stack.cli("report", run_id, "--format", "jsonl").output.splitlines()
    return [json.loads(line, parse_float=Decimal) for line in lines]


def failed_money(stack: Stack, run_id: str) -> str:
    total = sum(
        (Decimal(row["amount"]) for row in report_rows(stack, run_id) if row["outcome"] == "FAILED"), Decimal(0)
    )
    return f"{total:,.2f}"


def text_of(driver: Chrome, css: str) -> str:
    """The element's text read in the page in one step: the live refresh may replace it any moment, and a
    found element read afterwards would be stale."""
    found = driver.execute_script("const e = document.querySelector(arguments[0]); return e && e.innerText", css)
    if found is None:
        raise AssertionError(f"nothing matches {css!r}")
    return str(found).strip()


def listed_runs(driver: Chrome) -> dict[str, str]:
    """The runs table's rows (run id → row text), read in the page in one step: after a filter is submitted
    the old page's rows go stale as the new page loads."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#runs tbody tr'), r => [r.dataset.runId, r.innerText])"
    )
    return {str(run_id): str(text) for run_id, text in rows}


def attribute_of(element: WebElement, name: str) -> str:
    """An attribute the page always writes (selenium reads a missing one as None)."""
    value = element.get_attribute(name)
    assert value is not None, f"no {name} attribute"
    return value


def all_text(driver: Chrome, css: str) -> list[str]:
    return [element.text for element in driver.find_elements("css selector", css)]


def table_loaded(driver: Chrome) -> bool:
    return driver.find_element("id", "invoice-table").get_attribute("data-loaded") == "true"


def search(driver: Chrome, text: str = "", outcome: str = "") -> list[str]:
    """Type into the invoice search, submit, and return the invoice ids shown."""
    from selenium.webdriver.support.ui import Select

    driver.execute_script("document.getElementById('invoice-table').dataset.loaded = 'false'")
    box = driver.find_element("css selector", "#invoice-search input[name=q]")
    box.clear()
    box.send_keys(text)
    Select(driver.find_element("css selector", "#invoice-search select[name=outcome]")).select_by_value(outcome)
    driver.find_element("css selector", "#invoice-search button").click()
    wait_until(lambda: table_loaded(driver), interval=0.1)
    return [
        row.find_elements("css selector", "td")[1].text
        for row in driver.find_elements("css selector", "#invoice-table tbody tr[data-item-id]")
    ]


def assert_failed_run_page(driver: Chrome, stack: Stack, runs: Runs) -> None:
    """What the run page of the failed run must show, served or as a report."""
    assert text_of(driver, "#run-state") == RunState.NEEDS_ATTENTION.value
    assert text_of(driver, '[data-count="FAILED"]') == "3"
    assert text_of(driver, '[data-money="failed"]') == failed_money(stack, runs.failed)
    groups = all_text(driver, ".failure-group h3")
    assert len(groups) == 2, groups
    assert groups[0].startswith("2 \u00d7"), groups
    assert groups[1].startswith("1 \u00d7"), groups
    assert "gave up after 2 attempts" in groups[1], groups
    calls = all_text(driver, ".failure-group .call")
    assert any("Invoice" in call and "HTTP 500" in call for call in calls), calls
    assert all(error.strip() for error in all_text(driver, ".failure-group pre.error"))
    actions = all_text(driver, "#actions code")
    assert f"rebill retry {runs.failed} --wait" in actions
    assert f"rebill cancel {runs.failed}" in actions
    assert [step.split()[0] for step in all_text(driver, "#timeline li")] == ["5"]
    assert "tenant cap 8" in attribute_of(driver.find_element("id", "activity-chart"), "innerHTML")
    wait_until(lambda: table_loaded(driver), interval=0.1)
    assert sorted(search(driver, outcome="FAILED")) == sorted([*runs.refused, runs.gave_up])
    assert search(driver, runs.gave_up) == [runs.gave_up]
    row = driver.find_element("css selector", "#invoice-table tbody tr[data-item-id]")
    row.find_element("css selector", "button.expand").click()
    details = wait_until(lambda: driver.find_elements("css selector", "#invoice-table tr.details table.calls tbody tr"))
    assert len(details) >= 2  # each attempt's calls are kept
    assert any("500" in detail.text for detail in details)


class TestRunsPage:
    def test_lists_runs_with_money_and_hides_dry_runs_unless_asked(
        self, browser: Chrome, web: WebProcess, runs: Runs
    ) -> None:
        browser.get(web.url + "/")
        shown = listed_runs(browser)

        assert runs.failed in shown
        assert runs.completed in shown
        assert runs.dry not in shown
        assert "NEEDS_ATTENTION" in shown[runs.failed]
        assert "imis" in shown[runs.failed]
        assert "BillingLog" in shown[runs.failed]
        assert "COMPLETED" in shown[runs.completed]
        browser.find_element("css selector", "input[name=dry]").click()
        browser.find_element("css selector", ".filters button").click()
        wait_until(lambda: "dry=" in browser.current_url, what="the filtered page")
        assert runs.dry in listed_runs(browser)

    def test_filters_by_state_and_links_to_the_run(self, browser: Chrome, web: WebProcess, runs: Runs) -> None:
        browser.get(web.url + "/?state=COMPLETED&provider=imis")
        listed = listed_runs(browser)

        assert runs.completed in listed
        assert runs.failed not in listed
        browser.find_element("css selector", f'tr[data-run-id="{runs.completed}"] a').click()
        assert wait_until(lambda: browser.current_url.endswith(f"/runs/{runs.completed}"))
        assert [step.split()[0] for step in all_text(browser, "#timeline li")] == ["5", "1", "2"]
        assert text_of(browser, "#status-path") == "5 → 1 → 2"


class TestRunPage:
    def test_a_finished_run_with_failures(
        self, browser: Chrome, web: WebProcess, stack: Stack, runs: Runs, tmp_path: Path
    ) -> None:
        browser.get(f"{web.url}/runs/{runs.failed}")
        wait_until(lambda: table_loaded(browser), interval=0.1)
        shot = full_page_screenshot(browser, tmp_path / "run-page.png")
        print(f"screenshot of the run page: {shot}")

        assert shot.stat().st_size > 10_000
        assert_failed_run_page(browser, stack, runs)

    def test_progress_updates_live_without_a_reload(self, browser: Chrome, web: WebProcess, stack: Stack) -> None:
        billing = stack.seed(80)
        stack.state.faults.update(latency_ms=150)
        started = stack.cli("run", "--billing-log", billing.original_key)
        run_id = started.output.strip()
        browser.get(f"{web.url}/runs/{run_id}")
        browser.execute_script("window.loadedOnce = true")
        first = text_of(browser, "#progress-settled")

        wait_until(lambda: text_of(browser, "#progress-settled") != first, timeout=60)
        wait_until(lambda: text_of(browser, "#run-state") == RunState.COMPLETED.value, timeout=90)
        assert browser.execute_script("return window.loadedOnce") is True  # the same page, never reloaded
        assert (
            text_of(browser, "#progress-settled")
            == text_of(browser, "#progress-total")
            == str(billing.open_count + billing.paid_count + billing.part_paid_count)
        )
        wait_until(lambda: text_of(browser, "#status-path") == "5 → 1 → 2")  # sections redrawn in place
        assert not browser.find_elements("id", "actions")  # nothing left to do on a completed run

    def test_pages_through_invoices_by_keyset(self, web: WebProcess, runs: Runs) -> None:
        seen: list[str] = []
        query: dict[str, Any] = {"limit": 25}
        with httpx.Client(base_url=web.url, auth=(USER, PASSWORD)) as client:
            while True:
                page = client.get(f"/runs/{runs.failed}/invoices.json", params=query).json()
                seen += [line["invoice_id"] for line in page["lines"]]
                if page["next_after"] is None:
                    break
                query = {"limit": 25, "after": page["next_after"]}
            back = client.get(
                f"/runs/{runs.failed}/invoices.json", params={"limit": 25, "before": page["lines"][0]["item_id"]}
            ).json()

        assert len(seen) == len(set(seen)) == 40
        assert [line["invoice_id"] for line in back["lines"]] == seen[:25]


class TestHtmlReport:
    def test_the_report_is_the_run_page_in_one_file(
        self, browser: Chrome, stack: Stack, runs: Runs, tmp_path: Path
    ) -> None:
        path = tmp_path / "report.html"
        result = stack.cli(
            "report",
            runs.failed[:8],
            "--format",
            "html",
            "-o",
            str(path),
            env={"REBILL_BROKER_URL": UNREACHABLE_BROKER},
        )
        assert result.exit_code == 0, result.output
        html = path.read_text()
        assert "http://" not in html
        assert "https://" not in html

        browser.get(path.as_uri())
        assert_failed_run_page(browser, stack, runs)
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == []


@pytest.mark.slow
def test_a_2000_invoice_run_in_the_view_and_the_report(
    browser: Chrome, web: WebProcess, stack: Stack, tmp_path: Path
) -> None:
    billing = stack.seed(2000)
    code, run_id = run_waiting(stack, "--billing-log", billing.original_key)
    assert code == 0
    rows = report_rows(stack, run_id)
    reversed_money = f"{sum((Decimal(r['amount']) for r in rows if r['outcome'] == 'REVERSED'), Decimal(0)):,.2f}"
    path = tmp_path / "report.html"
    assert stack.cli("report", run_id, "--format", "html", "-o", str(path)).exit_code == 0

    for address in (f"{web.url}/runs/{run_id}", path.as_uri()):
        browser.get(address)
        assert text_of(browser, "#run-state") == RunState.COMPLETED.value
        assert text_of(browser, "#outcome-total") == "2,000"
        assert text_of(browser, '[data-count="REVERSED"]') == f"{billing.open_count:,}"
        assert text_of(browser, '[data-money="reversed"]') == reversed_money
        assert text_of(browser, "#status-path") == "5 \u2192 1 \u2192 2"
        assert browser.find_elements("id", "no-failures")
        wait_until(lambda: table_loaded(browser), interval=0.1)
        first_page = [
            attribute_of(row, "data-item-id")
            for row in browser.find_elements("css selector", "#invoice-table tbody tr[data-item-id]")
        ]
        browser.execute_script("document.getElementById('invoice-table').dataset.loaded = 'false'")
        browser.find_element("id", "page-next").click()
        wait_until(lambda: table_loaded(browser), interval=0.1)
        second_page = [
            attribute_of(row, "data-item-id")
            for row in browser.find_elements("css selector", "#invoice-table tbody tr[data-item-id]")
        ]
        assert len(first_page) == len(second_page) == 50
        assert int(second_page[0]) > int(first_page[-1])


class TestAuth:
    def test_requests_without_the_right_credentials_are_refused(self, web: WebProcess, runs: Runs) -> None:
        for auth in (None, (USER, "wrong"), ("someone", PASSWORD)):
            for path in ("/", f"/runs/{runs.failed}", f"/runs/{runs.failed}/progress.json"):
                response = httpx.get(web.url + path, auth=auth)
                assert response.status_code == 401, (auth, path)
                assert response.headers["www-authenticate"].startswith("Basic ")
                assert runs.failed not in response.text
        assert httpx.get(web.url + "/", auth=(USER, PASSWORD)).status_code == 200

    @pytest.mark.parametrize(
        ("args", "env", "message"),
        [
            ((), {}, "REBILL_WEB_BASIC_AUTH must be set"),
            (("--address", EVERY_INTERFACE, "--insecure-local"), {}, "only on 127.0.0.1 or ::1"),
            ((), {"REBILL_WEB_BASIC_AUTH": "no-colon"}, "must be user:password"),
        ],
    )
    def test_it_refuses_to_start_open_to_others(
        self, stack: Stack, args: tuple[str, ...], env: dict[str, str], message: str
    ) -> None:
        result = stack.cli("web", "--port", "0", *args, env={"REBILL_WEB_BASIC_AUTH": "", **env})

        assert result.exit_code == 2
        assert message in result.output
        assert "no-colon" not in result.output

    def test_insecure_local_serves_loopback_without_a_password(self, stack: Stack, runs: Runs) -> None:
        with rebill_web(stack, "--insecure-local", REBILL_WEB_BASIC_AUTH="") as served:
            assert httpx.get(served.url + f"/runs/{runs.completed}").status_code == 200
