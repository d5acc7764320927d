"""`python -m simulators.energycap` and `rebill simulate energycap`: the ready line, the flags, a clean exit."""

from __future__ import annotations

import signal

import httpx
from click.testing import CliRunner

from orchestrator.entrypoints.cli.main import cli
from tests.simulators.helpers import start_simulator


def test_serves_the_seeded_period_until_sigterm() -> None:
    sim = start_simulator(
        "simulators.energycap",
        "account period: ",
        "--bills", "40", "--seed", "5", "--api-key", "cli-key", "--account-period", "202603",
        "--page-cap", "10", "--kickout", "0.5",
    )  # fmt: skip
    try:
        assert sim.lines[-1] == "account period: 202603"
        assert sim.value == "202603"
        headers = {"ECI-ApiKey": "cli-key"}
        selection = {"filter": "accountPeriod equals '202603'"}
        page = httpx.get(f"{sim.url}/api/v3/bill", params=selection, headers=headers, trust_env=False)
        assert page.headers["PageSize"] == "10"
        assert int(page.headers["TotalNumberOfRecords"]) >= 40
        assert httpx.get(f"{sim.url}/api/v3/bill", headers={"ECI-ApiKey": "other"}, trust_env=False).status_code == 401
        assert httpx.get(f"{sim.url}/_sim/faults", trust_env=False).json()["p_kickout"] == 0.5
    finally:
        code = sim.stop(signal.SIGTERM)
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
