"""`python -m simulators.imis`: ready line, flags, serving, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from simulators.imis.cli import imis
from simulators.imis.state import ImisState
from tests.simulators.helpers import SimulatorProcess, start_simulator
from tests.simulators.imis.helpers import get_token

READY = "original BillingLogKey: "


def start(*args: str) -> SimulatorProcess:
    return start_simulator("simulators.imis", READY, *args)


@pytest.fixture
def running() -> Iterator[SimulatorProcess]:
    sim = start(
        "--invoices", "20", "--seed", "5", "--task-step-seconds", "0.01", "--p-429", "0.5", "--retry-after", "3",
        "--fail-invoice", "CASH:1:x=refuse", "--fault-operation", "Invoice.ProcessCashReversal", "--examples",
    )  # fmt: skip
    yield sim
    sim.stop(signal.SIGKILL)


def test_ready_line_serves_and_exits_on_sigterm(running: SimulatorProcess) -> None:
    # exactly one machine-readable line, and it names the seeded billing (same seed, same key)
    assert sum(line.startswith(READY) for line in running.lines) == 1
    with ImisState() as fresh:
        assert running.value == fresh.seed_billing(invoices=20, seed=5).original_key
    token = get_token(running.url)
    log = httpx.get(
        f"{running.url}/api/BillingLog/{running.value}", headers={"Authorization": f"Bearer {token}"}, trust_env=False
    )
    assert log.status_code in (200, 429)
    faults = httpx.get(f"{running.url}/_sim/faults", trust_env=False).json()
    assert (faults["p_429"], faults["retry_after_seconds"], faults["task_step_seconds"]) == (0.5, 3, 0.01)
    assert faults["fail_invoices"] == {"CASH:1:x": "refuse"}
    assert faults["fault_operations"] == ["Invoice.ProcessCashReversal"]
    examples = httpx.get(f"{running.url}/_sim/invoices/8158", trust_env=False)
    assert examples.status_code == 200
    assert running.stop(signal.SIGTERM) == 0


def test_sigint_too() -> None:
    sim = start("--invoices", "0", "--other-billings", "0")
    assert sim.stop(signal.SIGINT) == 0


def test_help_lists_every_fault_flag() -> None:
    result = CliRunner().invoke(imis, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--host", "--port", "--invoices", "--seed", "--username", "--password", "--accounting-method",
        "--latency-ms", "--jitter-ms", "--p-429", "--retry-after", "--p-500", "--p-503", "--p-hang",
        "--hang-seconds", "--p-reply-lost", "--reply-lost-mode", "--p-html-200", "--p-truncated-json",
        "--token-lifetime", "--page-size-cap", "--refusal-style", "--task-step-seconds", "--rebill-outcome",
        "--fault-operation", "--fail-invoice",
    ):  # fmt: skip
        assert flag in result.output, flag


@pytest.mark.parametrize(
    "args",
    [["--p-500", "1.5"], ["--accounting-method", "barter"], ["--fail-invoice", "nomode"], ["--fail-invoice", "1=boom"]],
)
def test_bad_flags_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(imis, ["--port", "0", "--invoices", "0", *args])
    assert result.exit_code == 2
