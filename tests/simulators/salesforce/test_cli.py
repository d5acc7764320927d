"""`rebill simulate salesforce` / `python -m simulators.salesforce`: the ready line names the run, flags become
settings, and it exits cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from orchestrator.entrypoints.cli.main import cli
from simulators.salesforce.state import SalesforceState
from tests.simulators.salesforce.helpers import get_token

ROOT = Path(__file__).resolve().parents[3]
READY = "invoice batch run: "


def test_prints_the_run_serves_it_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "simulators.salesforce", "--port", "0", "--invoices", "20", "--seed", "5",
            "--client-id", "cli-id", "--client-secret", "cli-secret", "--fail-403", "0.25", "--page-size", "7",
            "--void-seconds", "0.5", "--generate-seconds", "1.5", "--token-ttl", "30", "--daily-allocation", "500",
            "--schedule-error", "0.1", "--lose-reply", "0.05", "--fail-503", "0.02", "--fail-500", "0.03",
            "--fault-operation", "void", "--fault-operation", "generate",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        listening = proc.stdout.readline()
        ready = proc.stdout.readline().rstrip("\n")
        assert ready.startswith(READY), (listening, ready)
        run_id = ready.removeprefix(READY)
        assert run_id == SalesforceState().seed_run(20, 5).invoice_batch_run_id  # same seed, same run
        url = listening.split("listening on ", 1)[1].split()[0]
        faults = httpx.get(f"{url}/_sim/faults", trust_env=False).json()
        assert (faults["p_429"], faults["page_size"], faults["void_seconds"], faults["generate_seconds"]) == (
            0.25,
            7,
            0.5,
            1.5,
        )
        assert (faults["token_ttl_seconds"], faults["daily_allocation"], faults["p_schedule_error"]) == (30, 500, 0.1)
        assert (faults["p_reply_lost"], faults["p_503_html"], faults["p_500"]) == (0.05, 0.02, 0.03)
        assert faults["fault_operations"] == ["generate", "void"]
        token = get_token(url, "cli-id", "cli-secret")
        response = httpx.get(
            f"{url}/services/data/v62.0/query",
            params={"q": f"SELECT COUNT() FROM Invoice WHERE InvoiceBatchRunId = '{run_id}'"},
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        assert response.json()["totalSize"] == 20  # faults are drawn for void and generate only
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_mounted_under_rebill_simulate_with_every_flag() -> None:
    result = CliRunner().invoke(cli, ["simulate", "salesforce", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--port", "--invoices", "--seed", "--client-id", "--client-secret", "--latency-ms", "--void-seconds",
        "--generate-seconds", "--fail-403", "--fail-503", "--fail-500", "--lose-reply", "--token-ttl",
        "--page-size", "--daily-allocation", "--schedule-error",
    ):  # fmt: skip
        assert flag in result.output, flag


@pytest.mark.parametrize(
    "args", [["--fail-403", "1.5"], ["--page-size", "0"], ["--token-ttl", "0"], ["--fault-operation", "delete"]]
)
def test_bad_flags_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["simulate", "salesforce", "--port", "0", "--invoices", "0", *args])
    assert result.exit_code == 2
