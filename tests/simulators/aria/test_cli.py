"""`rebill simulate aria`: the ready line names the bill date, the flags reach the simulator, SIGTERM ends it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from simulators.aria.cli import aria

ROOT = Path(__file__).resolve().parents[3]


def test_serves_a_seeded_run_and_prints_its_bill_date() -> None:
    command = [
        sys.executable, "-m", "orchestrator.entrypoints.cli", "simulate", "aria", "--port", "0",
        "--invoices", "12", "--seed", "4", "--bill-date", "2025-08-01", "--client-no", "42", "--auth-key", "k-1",
        "--latency-ms", "1", "--fail-500", "0.25", "--lose-reply", "0.125", "--busy", "0.5", "--page-cap", "5",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("bill date: "):
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the simulator ended before it was ready: {lines}")
            lines.append(line.rstrip("\n"))
        assert lines[-1] == "bill date: 2025-08-01"
        url = next(line.split("listening on ", 1)[1].split()[0] for line in lines if "listening on " in line)
        faults = httpx.get(f"{url}/_sim/faults", trust_env=False).json()
        assert (faults["p_500"], faults["p_reply_lost"], faults["p_busy"], faults["page_cap"]) == (0.25, 0.125, 0.5, 5)
        body = {"rest_call": "get_invoice_information_m", "client_no": 42, "auth_key": "k-1", "limit": -1}
        reply = httpx.post(
            f"{url}/api/AriaQuery/objects.php", json={**body, "query_string": "bill_date = 2025-08-01"}, trust_env=False
        )
        assert reply.status_code in (200, 500)
        invoices = httpx.get(f"{url}/_sim/invoices", params={"bill_date": "2025-08-01"}, trust_env=False).json()
        assert len([i for i in invoices if i["invoice_type_cd"] != "R"]) == 12
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(aria, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--port", "--invoices", "--seed", "--bill-date", "--client-no", "--auth-key", "--latency-ms", "--jitter-ms",
        "--fail-500", "--lose-reply", "--busy", "--unexpected", "--page-cap", "--fault-call", "--rng-seed",
    ):  # fmt: skip
        assert flag in result.output, flag


@pytest.mark.parametrize(
    "args", [["--busy", "1.5"], ["--page-cap", "0"], ["--bill-date", "01/10/2025"], ["--client-no", "0"]]
)
def test_bad_flags_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(aria, ["--port", "0", "--invoices", "0", *args])
    assert result.exit_code == 2
