"""`python -m simulators.energycap` and `rebill simulate energycap`: the ready line, the flags, a clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from click.testing import CliRunner

from orchestrator.adapters.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]


def test_serves_the_seeded_period_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulators.energycap",
            "--port",
            "0",
            "--bills",
            "40",
            "--seed",
            "5",
            "--api-key",
            "cli-key",
            "--account-period",
            "202603",
            "--page-cap",
            "10",
            "--kickout",
            "0.5",
        ],
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
            if line.startswith("account period: "):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), f"no ready line: {lines}"
        assert lines[-1] == "account period: 202603"
        url = lines[0].split("listening on ", 1)[1].split()[0]
        headers = {"ECI-ApiKey": "cli-key"}
        page = httpx.get(f"{url}/api/v3/bill", params={"filter": "accountPeriod equals '202603'"}, headers=headers)
        assert page.headers["PageSize"] == "10"
        assert int(page.headers["TotalNumberOfRecords"]) >= 40
        assert httpx.get(f"{url}/api/v3/bill", headers={"ECI-ApiKey": "other"}).status_code == 401
        assert httpx.get(f"{url}/_sim/faults").json()["p_kickout"] == 0.5
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        reader.join(5)
        proc.stdout.close()
    assert code == 0


def test_mounted_under_rebill_simulate() -> None:
    result = CliRunner().invoke(cli, ["simulate", "energycap", "--help"])
    assert result.exit_code == 0
    for flag in ("--bills", "--seed", "--api-key", "--latency-ms", "--fail-500", "--fail-503", "--lose-reply"):
        assert flag in result.output
    for flag in ("--import-seconds", "--kickout", "--page-cap", "--port"):
        assert flag in result.output


def test_bad_settings_are_usage_errors() -> None:
    result = CliRunner().invoke(cli, ["simulate", "energycap", "--kickout", "2"])
    assert result.exit_code == 2
