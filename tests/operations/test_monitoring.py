"""What operations staff see: Flower's API (behind basic auth), Prometheus metrics from the ledger and
from the worker, and JSON log lines, all from a real run, with no credential anywhere."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.domain.run import Run, RunState
from simulators.imis.seeding import SeededBilling
from tests.operations.conftest import Deployment, Process, free_port, http_get
from tests.support.polling import wait_until
from tests.support.stack import PASSWORD

FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-pw-7d1c9e"
OUR_TASKS = {"rebill.plan_run", "rebill.reverse_chunk", "rebill.submit_rebill", "rebill.poll_run"}


@dataclass
class Observed:
    deployment: Deployment
    flower: Process
    flower_url: str
    billing: SeededBilling
    run: Run

    def secrets(self) -> list[str]:
        tokens = list(self.deployment.stack.state._tokens)  # every bearer token the tenant issued
        assert tokens, "the run fetched at least one token"
        return [PASSWORD, FLOWER_PASSWORD, *tokens]


@pytest.fixture(scope="module")
def observed(deployment: Deployment) -> Iterator[Observed]:
    """Flower watching while a whole run goes through the CLI, the worker and the simulator."""
    port = free_port()
    flower = deployment.start(
        "flower", "flower", f"--port={port}", REBILL_FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}"
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _reachable(f"{url}/healthcheck"), timeout=60, what="Flower up")
    wait_until(  # Flower listens to task events once it sees the worker
        lambda: _workers(url), timeout=60, what="Flower sees the worker"
    )
    stack = deployment.stack
    billing = stack.seed(30)
    result = stack.cli("run", "--wait", "--billing-log", billing.original_key, "--chunk-size", "10")
    assert result.exit_code == 0, result.output
    run = stack.wait_for(result.output.splitlines()[0].strip())
    try:
        yield Observed(deployment, flower, url, billing, run)
    finally:
        flower.stop()


def _reachable(url: str) -> bool:
    try:
        return http_get(url, timeout=2)[0] == 200
    except OSError:
        return False


def _workers(url: str) -> bool:
    status, body = http_get(f"{url}/api/workers?refresh=1", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    return status == 200 and bool(json.loads(body))


def _tasks_of_run(observed: Observed) -> dict[str, dict[str, Any]]:
    status, body = http_get(f"{observed.flower_url}/api/tasks?limit=1000", auth=(FLOWER_USER, FLOWER_PASSWORD))
    assert status == 200, body[:300]
    tasks: dict[str, dict[str, Any]] = json.loads(body)
    return {tid: task for tid, task in tasks.items() if f"run {observed.run.id[:8]}…" in str(task.get("args"))}


#: Celery's states of a task that will not change again (Flower learns them from events, a moment later).
_FINISHED = {"SUCCESS", "FAILURE", "REVOKED", "REJECTED"}


def _scheduled(task: dict[str, Any]) -> bool:
    """A message held by the worker until its `eta`: a chunk's wake-up at a helper's lease end, which
    finds nothing left to do when it comes (the helper finished the item)."""
    return task["state"] == "RECEIVED" and bool(task.get("eta"))


def _every_task_of_run(observed: Observed) -> dict[str, dict[str, Any]] | None:
    """The run's tasks once Flower has seen each kind, and each task end or wait for its time (its last
    event may lag)."""
    found = _tasks_of_run(observed)
    seen_all = {t["name"] for t in found.values()} >= OUR_TASKS
    settled = all(t["state"] in _FINISHED or _scheduled(t) for t in found.values())
    return found if seen_all and settled else None


def test_flower_lists_the_runs_tasks_by_name_and_what_each_is_in_words(observed: Observed) -> None:
    tasks = wait_until(
        lambda: _every_task_of_run(observed),
        timeout=30,
        what="Flower has every task of the run",
    )

    assert {task["name"] for task in tasks.values()} == OUR_TASKS
    short = f"run {observed.run.id[:8]}…"
    chunks = [t for t in tasks.values() if t["name"] == "rebill.reverse_chunk"]
    assert len(chunks) >= 2  # the open invoices of 30, in chunks of at most 10 (the first ones smaller)
    sizes = [re.fullmatch(rf"{short} chunk (\d+) \((\d+) invoices?\)", t["args"]) for t in chunks]
    assert all(sizes), [t["args"] for t in chunks]
    numbers = {int(found.group(1)) for found in sizes if found}
    assert numbers == set(range(1, max(numbers) + 1))  # counted in the run from 1, as operators count
    assert all(1 <= int(found.group(2)) <= 10 for found in sizes if found)
    by_name = {t["name"]: t["args"] for t in tasks.values()}
    assert by_name["rebill.plan_run"] == f"{short} planning"
    assert by_name["rebill.submit_rebill"] == f"{short} follow-up (rebill)"
    assert by_name["rebill.poll_run"] == f"{short} follow-up"
    assert {t["kwargs"] for t in tasks.values()} == {"{}"}
    assert {t["state"] for t in tasks.values() if not _scheduled(t)} == {"SUCCESS"}
    assert {t["name"] for t in tasks.values() if _scheduled(t)} <= {"rebill.reverse_chunk"}
    everything = json.dumps(tasks)
    for secret in observed.secrets():
        assert secret not in everything


def test_flower_refuses_requests_without_the_credentials(observed: Observed) -> None:
    assert http_get(f"{observed.flower_url}/api/tasks")[0] == 401
    assert http_get(f"{observed.flower_url}/api/tasks", auth=(FLOWER_USER, "wrong"))[0] == 401
    assert http_get(f"{observed.flower_url}/")[0] == 401


def test_flower_is_read_only(observed: Observed) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{observed.flower_url}/api/task/async-apply/rebill.reconcile", data=b"{}", method="POST"
    )
    credentials = base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()
    request.add_header("Authorization", f"Basic {credentials}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 403


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_rebill_metrics_reports_the_runs_counts_from_the_ledger(observed: Observed) -> None:
    process = observed.deployment.start("metrics", "metrics", "--port=0")
    url = observed.deployment.wait_for_line(process, r"serving metrics on (http://\S+)").group(1)
    try:
        status, body = http_get(url)
    finally:
        process.stop()
    assert status == 200
    found = samples(body.decode())
    run_id, billing = observed.run.id, observed.billing

    assert value(found, "rebill_ledger_up") == 1
    assert value(found, "rebill_runs", state="COMPLETED") >= 1
    assert value(found, "rebill_run_items", run_id=run_id, state="REVERSED") == billing.open_count
    skipped = billing.paid_count + billing.part_paid_count
    assert value(found, "rebill_run_items", run_id=run_id, state="SKIPPED") == skipped
    assert value(found, "rebill_run_items", run_id=run_id, state="FAILED") == 0
    assert value(found, "rebill_run_state", run_id=run_id, state=RunState.COMPLETED.value) == 1
    assert value(found, "rebill_run_platform_status", run_id=run_id, provider="imis", code="2", label="Completed") == 1
    reversals = value(
        found, "rebill_run_api_calls", run_id=run_id, operation="Invoice.ProcessCashReversal", outcome="ok"
    )
    assert reversals == billing.open_count
    assert value(found, "rebill_tenant_max_concurrency", provider="imis") == int(
        observed.deployment.stack.env["REBILL_IMIS_MAX_CONCURRENCY"]
    )
    assert ("rebill_tenant_inflight_calls", frozenset({("provider", "imis")})) in found
    assert value(found, "rebill_schedule_file_valid") == 1
    for secret in observed.secrets():
        assert secret not in body.decode()


def test_the_worker_serves_its_api_call_metrics(observed: Observed) -> None:
    status, body = http_get(f"http://127.0.0.1:{observed.deployment.worker_metrics_port}/metrics")
    assert status == 200
    found = samples(body.decode())
    reversals = value(
        found,
        "rebill_api_calls_total",
        provider="imis",
        operation="Invoice.ProcessCashReversal",
        outcome="ok",
        status="200",
    )
    assert reversals >= observed.billing.open_count
    rebills = value(
        found, "rebill_api_call_duration_seconds_count", provider="imis", operation="TaskDefinition.execute"
    )
    assert rebills >= 1
    assert value(found, "rebill_tenant_max_concurrency", provider="imis") == int(
        observed.deployment.stack.env["REBILL_IMIS_MAX_CONCURRENCY"]
    )


def test_worker_logs_are_json_lines_with_the_ids_bound_and_no_secret(observed: Observed) -> None:
    logs = [w.log.read_text(errors="replace") for w in observed.deployment.stack.workers]
    lines = [json.loads(line) for text in logs for line in text.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("run_id") == observed.run.id]

    assert ours, "the worker logged the run"
    assert {line["task"] for line in ours if "task" in line} >= OUR_TASKS
    assert all(line.get("task_id") for line in ours)
    reversals = [line for line in ours if "Invoice.ProcessCashReversal" in line["message"]]
    assert reversals, "the client's calls are logged (DEBUG) inside the item's context"
    assert all(line["item_id"] and line["invoice_id"] in observed.billing.open_invoice_ids for line in reversals)
    every_log = "\n".join(logs) + observed.flower.text()
    for secret in observed.secrets():
        assert secret not in every_log
