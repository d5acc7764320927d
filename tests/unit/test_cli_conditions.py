"""Ordinary conditions are plain errors (one line, exit 2 or 1), never an internal error (exit 70): a port
in use, a closed pipe, a bad setting, a report path that cannot be written; and `rebill broker stop`."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.adapters.broker import embedded
from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from orchestrator.domain.billing import Invoice
from orchestrator.domain.run import PlannedItem, RunState
from orchestrator.entrypoints.cli.main import CliState, cli
from tests.fakes import FakeClock
from tests.support.stack import rebill_process
from tests.unit.ledger.conftest import new_run, selection

# Nothing from the calling environment: no tenant, no ledger URL, no broker URL.
UNSET = dict.fromkeys(["REBILL_DATABASE_URL", "REBILL_BROKER_URL", "REBILL_IMIS_BASE_URL", "REBILL_IMIS_USERNAME"])
INVOICES = 3000  # a report of these is far more than a pipe holds


def rebill(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={**UNSET, **env}, obj=CliState())


def one_error_line(result: Result, code: int = 2) -> str:
    """The one error line (a server's own log lines may come before it)."""
    assert result.exit_code == code, result.output
    [line] = [line for line in result.output.splitlines() if line.lower().startswith("error: ")]
    assert "internal error" not in result.output
    assert "Traceback" not in result.output
    return line


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """REBILL_DATA_DIR of the commands; the embedded Redis a command started there is stopped after."""
    yield tmp_path / "data"
    embedded.stop(tmp_path / "data")


@pytest.fixture
def run_id(data_dir: Path) -> Iterator[str]:
    """A ledger under `data_dir` holding one planned run of INVOICES invoices."""
    container = Container(Settings(data_dir=data_dir))
    clock = FakeClock()
    try:
        ledger = container.ledger
        run = ledger.create_run(new_run(clock, selection()))
        planned = [
            PlannedItem.eligible(Invoice(str(10_000 + n), Decimal("95.00"), Decimal("95.00"), party_id=f"P{n}"))
            for n in range(INVOICES)
        ]
        ledger.record_plan_page(run.id, planned, expected_offset=0, next_offset=INVOICES, chunk_size=50, now=clock())
        ledger.finish_planning(run.id, expected_offset=INVOICES, now=clock(), to=RunState.REVERSING)
        yield run.id
    finally:
        container.close()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


class TestPortInUse:
    @pytest.mark.parametrize(
        ("command", "env"),
        [
            (["web"], {"REBILL_WEB_BASIC_AUTH": "ops:a-long-password"}),
            (["flower"], {"REBILL_FLOWER_BASIC_AUTH": "ops:a-long-password"}),
            (["metrics"], {}),
            (["simulate", "imis"], {}),
            (["simulate", "aria"], {}),
            (["simulate", "salesforce"], {}),
            (["simulate", "energycap"], {}),
        ],
        ids=lambda value: " ".join(value) if isinstance(value, list) else "",
    )
    def test_is_named_with_the_option_to_change(
        self, command: list[str], env: dict[str, str], taken_port: int, data_dir: Path
    ) -> None:
        result = rebill(*command, "--port", str(taken_port), REBILL_DATA_DIR=str(data_dir), **env)

        line = one_error_line(result)
        assert f"port {taken_port} on 127.0.0.1 is already in use (choose another with --port)" in line


class TestClosedPipe:
    def test_a_report_read_only_in_part_ends_with_exit_1_and_one_line(self, run_id: str, data_dir: Path) -> None:
        with rebill_process("report", run_id, env={"REBILL_DATA_DIR": str(data_dir)}, unset=UNSET) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            header = process.stdout.readline()  # what `| head -1` reads before it leaves
            process.stdout.close()
            errors = process.stderr.read()
            code = process.wait(timeout=60)

        assert header.startswith("invoice_id,"), errors
        assert code == 1, errors
        assert errors.strip() == "error: the output was closed before all of it was written (broken pipe)"


class TestReportPath:
    def test_an_unwritable_output_path_is_named(self, run_id: str, data_dir: Path) -> None:
        line = one_error_line(rebill("report", run_id, "-o", "/proc/x/report.csv", REBILL_DATA_DIR=str(data_dir)))

        assert "cannot write the report to /proc/x/report.csv" in line

    def test_the_failed_filter_is_for_the_data_formats(self, run_id: str, data_dir: Path) -> None:
        result = rebill("report", run_id, "--failed", "--format", "html", REBILL_DATA_DIR=str(data_dir))

        assert result.exit_code == 2
        assert "--failed is for csv, json and jsonl" in result.output


class TestLogLevel:
    def test_a_bad_level_is_named_as_other_settings_are(self, data_dir: Path) -> None:
        line = one_error_line(rebill("runs", REBILL_DATA_DIR=str(data_dir), REBILL_LOG_LEVEL="LOUD"))

        assert "REBILL_LOG_LEVEL" in line
        assert "'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in line

    def test_a_level_in_any_case_is_taken(self, run_id: str, data_dir: Path) -> None:
        result = rebill("runs", REBILL_DATA_DIR=str(data_dir), REBILL_LOG_LEVEL="debug")

        assert result.exit_code == 0, result.output


class TestBrokerStop:
    def test_stops_the_embedded_redis_and_says_so_when_there_is_none(self, tmp_path: Path) -> None:
        server = embedded.ensure_running(tmp_path)
        try:
            stopped = rebill("broker", "stop", REBILL_DATA_DIR=str(tmp_path))
            again = rebill("broker", "stop", REBILL_DATA_DIR=str(tmp_path))
        finally:
            embedded.stop(tmp_path)

        assert stopped.exit_code == 0, stopped.output
        assert stopped.output.strip() == f"stopped the embedded Redis in {server.directory}"
        assert not server.ping()
        assert again.output.strip() == f"no embedded Redis running in {server.directory}"

    def test_leaves_a_configured_broker_alone(self, tmp_path: Path) -> None:
        result = rebill("broker", "stop", REBILL_DATA_DIR=str(tmp_path), REBILL_BROKER_URL="redis://127.0.0.1:9/0")

        assert result.exit_code == 0
        assert "REBILL_BROKER_URL is set" in result.output
