"""Where the ledger lives: a command that only reads never creates one, and a SQLite path that cannot
hold one is named with its setting (one line, exit 2), never an internal error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from orchestrator.entrypoints.cli.main import CliState, cli

READ_ONLY = [["runs"], ["status", "r-1"], ["report", "r-1"], ["schedule", "history"]]
# Nothing from the calling environment: no tenant (so no tenant limiter, no embedded broker), no ledger URL.
UNSET = dict.fromkeys(["REBILL_DATABASE_URL", "REBILL_BROKER_URL", "REBILL_IMIS_BASE_URL", "REBILL_IMIS_USERNAME"])


def rebill(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={**UNSET, **env}, obj=CliState())


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: ")
    return line


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_finds_no_ledger_in_a_new_data_dir_and_creates_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    data_dir = tmp_path / "data"

    line = one_error_line(rebill(*args, REBILL_DATA_DIR=str(data_dir)))

    assert f"no ledger at {data_dir.resolve() / 'ledger.db'} (REBILL_DATA_DIR={data_dir})" in line
    assert not data_dir.exists()


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_names_a_database_url_with_no_ledger_and_creates_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "elsewhere" / "ledger.db"

    line = one_error_line(rebill(*args, REBILL_DATABASE_URL=f"sqlite:///{missing}", REBILL_DATA_DIR=str(tmp_path)))

    assert f"no ledger at {missing} (REBILL_DATABASE_URL)" in line
    assert not missing.parent.exists()


def test_a_read_only_command_reads_the_ledger_a_writing_one_created(tmp_path: Path) -> None:
    container = Container(Settings(data_dir=tmp_path / "data"))
    container.ledger  # noqa: B018 - what `rebill run` and `rebill worker` do first: create and migrate it
    container.close()

    result = rebill("runs", REBILL_DATA_DIR=str(tmp_path / "data"))

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", [["runs"], ["run", "--billing-log", "K"], ["cancel", "r-1"], ["reconcile"]])
def test_a_sqlite_url_whose_folder_cannot_be_made_is_named(tmp_path: Path, command: list[str]) -> None:
    line = one_error_line(
        rebill(*command, REBILL_DATABASE_URL="sqlite:////proc/x/ledger.db", REBILL_DATA_DIR=str(tmp_path))
    )

    assert "/proc/x" in line
    assert "REBILL_DATABASE_URL" in line
    assert "internal error" not in line


def test_a_data_dir_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    line = one_error_line(rebill("reconcile", REBILL_DATA_DIR="/proc/x"))

    assert "cannot create the SQLite ledger's folder /proc/x (No such file or directory)" in line
    assert "REBILL_DATA_DIR" in line
