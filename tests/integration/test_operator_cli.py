"""What an operator sees of real runs on the command line (a worker, Redis, the ledger, the iMIS
simulator over HTTP): `status`, `runs`, `report`, `--wait` off a terminal, and no silent waits."""

from __future__ import annotations

import csv
import io
import json
import queue
import re
import threading
import time
import uuid
from decimal import Decimal
from typing import IO, Any

import pytest
import redis

from orchestrator.adapters.broker.celery import queue_consumers
from orchestrator.bootstrap import redis_url
from orchestrator.domain.run import RunState
from tests.support.stack import FailedRun, Stack, rebill_process, run_with_failures

TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (planning|reversing|rebilling|polling|completed) +\S")
NOTHING_LISTENS = "redis://127.0.0.1:9/0"  # the discard port


@pytest.fixture(scope="module")
def failed(stack: Stack) -> FailedRun:
    return run_with_failures(stack)


def status_json(stack: Stack, run_id: str) -> dict[str, Any]:
    result = stack.cli("status", run_id, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output, parse_float=Decimal)  # type: ignore[no-any-return]


def jsonl(stack: Stack, *args: str) -> list[dict[str, Any]]:
    result = stack.cli("report", *args, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


class TestStatus:
    def test_shows_money_failures_by_reason_the_status_path_and_the_calls(
        self, stack: Stack, failed: FailedRun
    ) -> None:
        result = stack.cli("status", failed.run_id[:8])

        assert result.exit_code == 0, result.output
        text = result.output
        assert f"run {failed.run_id}  NEEDS_ATTENTION" in text
        assert re.search(r"money +reversed [\d,]+\.\d\d, left as-is [\d,]+\.\d\d, failed [\d,]+\.\d\d", text)
        failures = [line.strip() for line in text.splitlines() if " invoice(s): " in line]
        assert len(failures) == 2, text
        assert failures[0].startswith("failures  2 invoice(s): ")
        assert f"e.g. invoice {failed.refused[0]}: ProviderRefused: " in failures[0]
        assert "gave up after 2 attempts" in failures[1]
        assert f"e.g. invoice {failed.gave_up}: ProviderUnavailable: " in failures[1]
        assert f"`rebill report {failed.run_id[:8]} --failed`" in text
        assert re.search(r"status +5\n +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  5 Reversing invoices", text)
        calls = next(line for line in text.splitlines() if line.strip().startswith("API calls"))
        assert re.search(r"Invoice\.ProcessCashReversal ok [\d,]+", calls), calls
        assert re.search(r"permanent 2\b", calls), calls

    def test_json_keeps_all_of_it(self, stack: Stack, failed: FailedRun) -> None:
        summary = status_json(stack, failed.run_id)
        rows = jsonl(stack, failed.run_id)

        by_outcome: dict[str, Decimal] = {}
        for row in rows:
            by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], Decimal(0)) + Decimal(row["amount"])
        assert summary["money"]["reversed"] == f"{by_outcome['REVERSED']:.2f}"
        assert summary["money"]["left_as_is"] == f"{by_outcome.get('SKIPPED', Decimal(0)):.2f}"
        assert summary["money"]["failed"] == f"{by_outcome['FAILED']:.2f}"
        assert [(group["count"], group["example_invoice"]) for group in summary["failures"]] == [
            (2, failed.refused[0]),
            (1, failed.gave_up),
        ]
        assert summary["failures"][1]["example_call"]["status_code"] == 500
        assert [event["status"] for event in summary["status_history"]] == ["5"]
        assert summary["api_calls_total"] == sum(call["count"] for call in summary["api_calls"]) > 40


class TestReport:
    def test_failed_lists_only_the_failed_invoices_with_readable_errors(self, stack: Stack, failed: FailedRun) -> None:
        rows = jsonl(stack, failed.run_id, "--failed")
        csv_rows = list(csv.DictReader(io.StringIO(stack.cli("report", failed.run_id, "--failed").output)))

        assert sorted(row["invoice_id"] for row in rows) == sorted([*failed.refused, failed.gave_up])
        assert [row["invoice_id"] for row in csv_rows] == [row["invoice_id"] for row in rows]
        for row in rows:
            assert row["outcome"] == "FAILED"
            assert re.match(r"^Provider(Refused|Unavailable): ", row["last_error"]), row["last_error"]
            assert "operation=" not in row["last_error"]
            assert row["updated_at"]
            assert all(call["at"] and call["operation"] for call in row["calls"])
        gave_up = next(row for row in rows if row["invoice_id"] == failed.gave_up)
        assert [call["status_code"] for call in gave_up["calls"] if call["outcome"] == "transient"] == [500, 500]

    def test_json_is_one_document_with_the_run_and_every_invoice(self, stack: Stack, failed: FailedRun) -> None:
        result = stack.cli("report", failed.run_id, "--format", "json")

        document = json.loads(result.output)
        assert document["run"]["run_id"] == failed.run_id
        assert document["run"]["state"] == "NEEDS_ATTENTION"
        assert len(document["invoices"]) == 40
        assert {row["invoice_id"] for row in document["invoices"]} == {
            row["invoice_id"] for row in jsonl(stack, failed.run_id)
        }

    def test_a_retry_keeps_each_earlier_failure_and_every_attempt(self, stack: Stack) -> None:
        billing = stack.seed(20)
        refused = billing.open_invoice_ids[0]
        stack.state.faults.update(fail_invoices={refused: "refuse"})
        try:
            first = stack.cli("run", "--billing-log", billing.original_key, "--wait")
        finally:
            stack.state.faults.update(fail_invoices={refused: None})
        run_id = first.output.splitlines()[0]
        assert first.exit_code == 1, first.output

        retried = stack.cli("retry", run_id, "--wait")

        assert retried.exit_code == 0, retried.output
        assert any(TIMESTAMPED.match(line) for line in retried.output.splitlines()), retried.output
        [row] = [row for row in jsonl(stack, run_id) if row["invoice_id"] == refused]
        assert row["outcome"] == "REVERSED"
        [earlier] = row["earlier"]
        assert earlier["outcome"] == "FAILED"
        assert earlier["error"].startswith("ProviderRefused: ")
        assert earlier["settled_at"] < earlier["replaced_at"] <= row["updated_at"]
        assert row["attempts_total"] == 2
        outcomes = [call["outcome"] for call in row["calls"] if call["operation"].startswith("Invoice.Can")]
        assert outcomes[:1] == ["permanent"]
        assert outcomes[-1] == "ok"
        flat = next(
            line
            for line in csv.DictReader(io.StringIO(stack.cli("report", run_id).output))
            if line["invoice_id"] == refused
        )
        assert " FAILED after 1 attempt(s): " in flat["earlier_failures"]


class TestRuns:
    def test_lists_counts_money_duration_and_reason_in_80_columns(self, stack: Stack, failed: FailedRun) -> None:
        result = stack.cli("runs", env={"COLUMNS": "80"})

        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert all(len(line) <= 80 for line in lines), lines
        assert lines[0].startswith("run ")
        row = next(line for line in lines if line.startswith(failed.run_id[:8] + " "))
        assert "NEEDS_ATTENTION" in row
        assert re.search(r" \d+/\d+/3 ", row)
        assert failed.run_id not in result.output

    def test_wide_json_and_the_filters(self, stack: Stack, failed: FailedRun) -> None:
        wide = stack.cli("runs", "--wide").output
        listed = json.loads(stack.cli("runs", "--json", "--state", "needs_attention", "--provider", "imis").output)
        one = json.loads(stack.cli("runs", "--json", "--limit", "1").output)
        elsewhere = json.loads(stack.cli("runs", "--json", "--provider", "aria").output)

        assert failed.run_id in wide
        assert failed.run_id in [run["run_id"] for run in listed]
        assert {run["state"] for run in listed} == {"NEEDS_ATTENTION"}
        mine = next(run for run in listed if run["run_id"] == failed.run_id)
        assert mine["items"]["FAILED"] == 3
        assert Decimal(mine["money"]["failed"]) > 0
        assert mine["duration_seconds"] > 0
        assert len(one) == 1
        assert all(run["provider"] == "aria" for run in elsewhere)


class TestWait:
    def test_off_a_terminal_it_prints_timestamped_lines_with_counts(self, failed: FailedRun) -> None:
        lines = failed.output.splitlines()

        progress = [line for line in lines if TIMESTAMPED.match(line) or " needs_attention " in line]
        assert progress, failed.output
        assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in progress)
        assert any("settled" in line and "reversed" in line for line in progress), failed.output
        assert lines[-2].startswith(f"run {failed.run_id}: NEEDS_ATTENTION: ")
        assert re.match(r"^  reversed \d+ \([\d,.]+\), left as-is \d+ \([\d,.]+\), failed 3 \([\d,.]+\)", lines[-1])

    def test_warns_within_seconds_when_no_worker_consumes_the_queue(self, stack: Stack) -> None:
        billing = stack.seed(5)
        nobody_reads = f"rebill-test-nobody-{uuid.uuid4().hex[:8]}"
        command = ["run", "--billing-log", billing.original_key, "--wait"]
        started = time.monotonic()
        with rebill_process(*command, env={**stack.env, "REBILL_QUEUE": nobody_reads}) as follower:
            assert follower.stdout is not None
            assert follower.stderr is not None
            run_id = follower.stdout.readline().strip()
            warning = first_line(follower.stderr, timeout=30)
            waited = time.monotonic() - started
            follower.terminate()
            follower.wait(timeout=30)
        try:
            assert warning.startswith(f"warning: no worker consumes queue '{nobody_reads}'"), warning
            assert "start one with `rebill worker`" in warning
            assert waited < 20
        finally:
            stack.cli("cancel", run_id)
            redis.Redis.from_url(redis_url(stack.settings())).delete(nobody_reads)
        assert stack.wait_for(run_id).state is RunState.CANCELLED

    def test_a_worker_that_consumes_the_queue_is_seen(self, stack: Stack) -> None:
        container = stack.container()
        try:
            consumers = queue_consumers(container.producer, stack.env["REBILL_QUEUE"])
            elsewhere = queue_consumers(container.producer, f"rebill-test-nobody-{uuid.uuid4().hex[:8]}")
        finally:
            container.close()

        assert (consumers, elsewhere) == (sum(worker.alive() for worker in stack.workers), 0)


def first_line(stream: IO[str], *, timeout: float) -> str:
    """The first line `stream` gives within `timeout` seconds ('' if none came)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


class TestStartRefusals:
    def test_a_broker_that_does_not_answer_is_named_as_the_broker(self, stack: Stack) -> None:
        billing = stack.seed(5)
        before = stack.run_ids()

        result = stack.cli("run", "--billing-log", billing.original_key, env={"REBILL_BROKER_URL": NOTHING_LISTENS})

        assert result.exit_code == 2, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith(f"error: cannot reach the broker (REBILL_BROKER_URL={NOTHING_LISTENS}): ")
        assert "iMIS" not in line
        assert "REBILL_IMIS" not in line
        after = stack.run_ids()
        assert after == before

    @pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry run"])
    def test_a_party_with_no_invoice_in_the_billing_is_refused_up_front(self, stack: Stack, dry_run: bool) -> None:
        billing = stack.seed(10)
        logs_before = len(stack.state.billing_logs)
        args = ["--dry-run"] if dry_run else []

        result = stack.cli("run", "--billing-log", billing.original_key, "--party-id", "NOBODY-42", *args)

        assert result.exit_code == 2, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("error: party NOBODY-42 has no invoice in BillingLog ")
        assert len(stack.state.billing_logs) == logs_before  # no tracking log made
        listed = json.loads(stack.cli("runs", "--json", "--dry-runs", "--limit", "10000").output)
        assert not [run for run in listed if billing.original_key in run["selection"]]
