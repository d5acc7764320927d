"""Whole runs through the CLI, a real Celery worker, real Redis, a real ledger and the simulator over HTTP."""

from __future__ import annotations

import json

import pytest

from orchestrator.domain.run import ItemState, ReasonCode, RunState
from tests.support.stack import Stack, assert_exactly_once


def run_waiting(stack: Stack, *args: str) -> tuple[int, str, str]:
    """`rebill run --wait ...`: (exit code, run id, output)."""
    result = stack.cli("run", "--wait", *args)
    run_id = result.output.splitlines()[0].strip() if result.output else ""
    return result.exit_code, run_id, result.output


def statuses(stack: Stack, run_id: str) -> list[int]:
    return [int(event["status"]) for event in stack.run_status(run_id)["status_history"]]


@pytest.mark.slow
def test_a_2000_invoice_run_completes_with_each_eligible_invoice_reversed_exactly_once(stack: Stack) -> None:
    billing = stack.seed(2000)
    code, run_id, output = run_waiting(stack, "--billing-log", billing.original_key)

    assert code == 0, output
    run = stack.wait_for(run_id)
    counters = assert_exactly_once(stack, billing, run)
    [rebill] = [r for r in counters["rebills"] if r["original_key"] == billing.original_key]
    assert rebill["progress_log_key"] == run.provider_state["tracking_log_key"]
    assert rebill["party_id"] is None
    assert rebill["auto_post"] is True
    assert rebill["with_reverse_action"] is False
    assert statuses(stack, run_id) == [5, 1, 2]
    items = stack.run_status(run_id)["items"]
    assert items["REVERSED"] == billing.open_count
    assert items["SKIPPED"] == billing.paid_count + billing.part_paid_count


def test_the_rebill_request_carries_the_original_billing(stack: Stack) -> None:
    billing = stack.seed(30)
    code, _run_id, output = run_waiting(stack, "--billing-log", billing.original_key)

    assert code == 0, output
    task = next(t for t in stack.state.tasks.values() if t.original_key == billing.original_key)
    generate = task.request.generate
    assert generate is not None
    original = stack.state.billing_logs[billing.original_key]
    assert generate.cycle_name == original.cycle_name
    assert generate.run_name == f"Rebill: {original.cycle_name}"
    assert generate.effective_date == original.effective_date
    assert generate.original_key == billing.original_key
    assert generate.is_renewal is True


def test_an_unposted_batch_is_posted_when_configured(stack: Stack) -> None:
    billing = stack.seed(30)
    code, run_id, output = run_waiting(stack, "--billing-log", billing.original_key, "--no-auto-post-batch")

    assert code == 0, output
    assert statuses(stack, run_id) == [5, 1, 4, 2]
    assert stack.run_status(run_id)["details"]["batch_posted"] is True


def test_an_unposted_batch_left_alone_needs_attention_naming_the_batch(stack: Stack) -> None:
    billing = stack.seed(30)
    code, run_id, _output = run_waiting(
        stack, "--billing-log", billing.original_key, "--no-auto-post-batch", "--leave-unposted-batch"
    )

    assert code == 1
    status = stack.run_status(run_id)
    assert status["state"] == RunState.NEEDS_ATTENTION.value
    assert f"post batch {status['details']['batch_id']}" in str(status["reason"])
    assert statuses(stack, run_id) == [5, 1, 4]


@pytest.mark.parametrize(("outcome", "final"), [("fail", 3), ("batch_deleted", 6)])
def test_a_failed_or_deleted_rebill_fails_the_run(stack: Stack, outcome: str, final: int) -> None:
    billing = stack.seed(30)
    stack.state.faults.update(rebill_outcome=outcome)
    code, run_id, _ = run_waiting(stack, "--billing-log", billing.original_key)

    assert code == 1
    status = stack.run_status(run_id)
    assert status["state"] == RunState.FAILED.value
    assert status["reason_code"] == ReasonCode.BILLING_FAILED.value
    assert statuses(stack, run_id)[-1] == final


def test_a_single_contact_is_reversed_and_rebilled_alone(stack: Stack) -> None:
    billing = stack.seed(60)
    party = billing.rebill_party_ids[0]
    code, _run_id, output = run_waiting(stack, "--billing-log", billing.original_key, "--party-id", party)

    assert code == 0, output
    party_invoices = {
        i.invoice_id
        for i in stack.state.invoices.values()
        if i.bill_to == party and i.billing_log_key == billing.original_key
    }
    assert set(stack.counters()["reversals"]) & set(billing.invoice_ids) == party_invoices
    [rebill] = [r for r in stack.counters()["rebills"] if r["original_key"] == billing.original_key]
    assert rebill["party_id"] == party


def test_a_dry_run_makes_no_write_call(stack: Stack) -> None:
    billing = stack.seed(40)
    before = stack.counters()["requests"]
    result = stack.cli("run", "--billing-log", billing.original_key, "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["to_reverse"] == billing.open_count
    assert [request["OperationName"] for request in plan["follow_up"]] == ["TaskAdhocRequest"]
    after = stack.counters()["requests"]
    writes = [
        op
        for op in after
        if op.startswith(("Invoice.Process", "TaskDefinition", "BatchSummary.Post")) or op == "BillingLog.create"
    ]
    assert all(after.get(op, 0) == before.get(op, 0) for op in writes)


def test_native_mode_sends_one_task_with_both_actions(stack: Stack) -> None:
    billing = stack.seed(40)
    code, run_id, output = run_waiting(stack, "--billing-log", billing.original_key, "--mode", "native")

    assert code == 0, output
    counters = assert_exactly_once(stack, billing)
    [rebill] = [r for r in counters["rebills"] if r["original_key"] == billing.original_key]
    assert rebill["with_reverse_action"] is True
    assert stack.run_status(run_id)["items"]["REVERSED"] == billing.open_count


def test_retry_completes_a_run_once_an_injected_permanent_failure_is_lifted(stack: Stack) -> None:
    billing = stack.seed(40)
    broken = billing.open_invoice_ids[3]
    stack.state.faults.update(fail_invoices={broken: "refuse"})
    code, run_id, _ = run_waiting(stack, "--billing-log", billing.original_key)

    assert code == 1
    status = stack.run_status(run_id)
    assert (status["state"], status["reason_code"]) == (RunState.NEEDS_ATTENTION.value, ReasonCode.FAILED_ITEMS.value)
    assert not [r for r in stack.counters()["rebills"] if r["original_key"] == billing.original_key]

    stack.state.faults.update(fail_invoices={broken: None})  # a JSON merge patch: null removes
    result = stack.cli("retry", run_id, "--wait")

    assert result.exit_code == 0, result.output
    assert_exactly_once(stack, billing, stack.wait_for(run_id))
    assert len([r for r in stack.counters()["rebills"] if r["original_key"] == billing.original_key]) == 1
    assert "never re-run" in stack.cli("retry", run_id).output


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not-a-key", "is not a BillingLogKey"),
        ("00000000-0000-0000-0000-000000000000", "no BillingLog 00000000-0000-0000-0000-000000000000"),
    ],
)
def test_bad_billing_log_keys_are_refused_and_leave_no_run(stack: Stack, key: str, message: str) -> None:
    before = stack.run_ids()
    result = stack.cli("run", "--billing-log", key)

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert stack.run_ids() == before


def test_a_billing_that_is_not_completed_is_refused(stack: Stack) -> None:
    billing = stack.seed(10)
    stack.state.billing_logs[billing.original_key].status = 1
    result = stack.cli("run", "--billing-log", billing.original_key)

    assert result.exit_code == 2
    assert "is Processing (1), not Completed (2)" in result.output
    assert billing.original_key not in stack.cli("runs").output


def test_a_report_has_one_line_per_invoice(stack: Stack) -> None:
    billing = stack.seed(25)
    code, run_id, output = run_waiting(stack, "--billing-log", billing.original_key)
    assert code == 0, output

    lines = stack.cli("report", run_id, "--format", "jsonl").output.splitlines()
    rows = [json.loads(line) for line in lines]
    assert sorted(row["invoice_id"] for row in rows) == sorted(billing.invoice_ids)
    assert {row["outcome"] for row in rows} <= {ItemState.REVERSED.value, ItemState.SKIPPED.value}
    document = json.loads(stack.cli("report", run_id, "--format", "json").output)
    assert [row["invoice_id"] for row in document["invoices"]] == [row["invoice_id"] for row in rows]
    assert document["run"]["run_id"] == run_id
    csv_lines = stack.cli("report", run_id, "--format", "csv").output.splitlines()
    assert csv_lines[0] == (
        "invoice_id,number,party_id,party_name,amount,outcome,reason,result_ref,rebill_ref,new_amount,difference,"
        "attempts,attempts_total,settled_by_read,updated_at,last_error,earlier_failures,api_calls"
    )
    assert len(csv_lines) == len(billing.invoice_ids) + 1
