"""`python -m simulators.imis`: ready line, flags, serving, and a clean exit on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from simulators.imis.cli import imis
from simulators.imis.state import ImisState
from tests.simulators.helpers import get_token

ROOT = Path(__file__).resolve().parents[2]


class Running:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str], reader: threading.Thread) -> None:
        self.proc = proc
        self.lines = lines
        self.reader = reader
        self.url = next(line.split("listening on ", 1)[1].split()[0] for line in lines if "listening on " in line)
        self.key = next(line.split(": ", 1)[1] for line in lines if line.startswith("original BillingLogKey: "))

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process, wait for it, and release its pipe; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        return code


def start(*args: str) -> Running:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.imis", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("original BillingLogKey: "):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not ready.wait(30) or not any(line.startswith("original BillingLogKey: ") for line in lines):
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
        pytest.fail(f"the simulator did not get ready: {lines}")
    return Running(proc, lines, reader)


@pytest.fixture
def running() -> Iterator[Running]:
    sim = start(
        "--invoices", "20", "--seed", "5", "--task-step-seconds", "0.01", "--p-429", "0.5", "--retry-after", "3",
        "--fail-invoice", "CASH:1:x=refuse", "--fault-operation", "Invoice.ProcessCashReversal", "--examples",
    )  # fmt: skip
    yield sim
    sim.stop(signal.SIGKILL)


def test_ready_line_serves_and_exits_on_sigterm(running: Running) -> None:
    # exactly one machine-readable line, and it names the seeded billing (same seed, same key)
    assert sum(line.startswith("original BillingLogKey: ") for line in running.lines) == 1
    with ImisState() as fresh:
        assert running.key == fresh.seed_billing(invoices=20, seed=5).original_key
    token = get_token(running.url)
    log = httpx.get(
        f"{running.url}/api/BillingLog/{running.key}", headers={"Authorization": f"Bearer {token}"}, trust_env=False
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
