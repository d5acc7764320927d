"""Bad input: one clear line, exit code 2, nothing half-made; bad replies: the item fails, the worker lives."""

from __future__ import annotations

import socket

import pytest

from orchestrator.domain.run import ItemState, ReasonCode, RunState
from tests.support.stack import Stack


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused(stack: Stack, key: str, env: dict[str, str], expected: str) -> None:
    runs_before = stack.run_ids()
    result = stack.cli("run", "--billing-log", key, env=env)

    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert stack.run_ids() == runs_before


def test_wrong_credentials(stack: Stack) -> None:
    billing = stack.seed(5)
    refused(
        stack,
        billing.original_key,
        {"REBILL_IMIS_PASSWORD": "not-the-password"},
        "refused the credentials (HTTP 400): The user name or password is incorrect. "
        "(check REBILL_IMIS_USERNAME and REBILL_IMIS_PASSWORD)",
    )


def test_an_unreachable_base_url(stack: Stack) -> None:
    billing = stack.seed(5)
    refused(
        stack,
        billing.original_key,
        {"REBILL_IMIS_BASE_URL": f"http://127.0.0.1:{closed_port()}", "REBILL_IMIS_CONNECT_TIMEOUT_SECONDS": "1"},
        "REBILL_IMIS_BASE_URL=http://127.0.0.1:",
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("REBILL_CHUNK_SIZE", "0"), ("REBILL_IMIS_BASE_URL", "imis.example.org"), ("REBILL_POLL_INTERVAL_SECONDS", "x")],
)
def test_invalid_settings_name_the_setting(stack: Stack, variable: str, value: str) -> None:
    billing = stack.seed(5)
    refused(stack, billing.original_key, {variable: value}, variable)


def test_missing_tenant_settings_are_named(stack: Stack) -> None:
    billing = stack.seed(5)
    refused(stack, billing.original_key, {"REBILL_IMIS_USERNAME": ""}, "REBILL_IMIS_USERNAME must be set")


@pytest.mark.parametrize("mode", ["html", "truncated"])
def test_an_unparseable_reply_fails_the_item_with_the_parse_error_and_the_worker_lives(stack: Stack, mode: str) -> None:
    billing = stack.seed(20)
    broken = billing.open_invoice_ids[0]
    stack.state.faults.update(fail_invoices={broken: mode})
    result = stack.cli("run", "--billing-log", billing.original_key, "--wait")

    assert result.exit_code == 1
    run_id = result.output.splitlines()[0]
    run = stack.wait_for(run_id)
    assert (run.state, run.reason_code) == (RunState.NEEDS_ATTENTION, ReasonCode.FAILED_ITEMS)
    container = stack.container()
    try:
        [failed] = list(container.ledger.iter_items(run_id, states={ItemState.FAILED}))
    finally:
        container.close()
    assert failed.invoice.invoice_id == broken
    assert "ProviderProtocolError" in (failed.last_error or "")
    assert any(word in (failed.reason or "").lower() for word in ("json", "html"))
    assert all(worker.alive() for worker in stack.workers)
