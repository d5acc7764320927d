"""A new platform joins rebill as one package and one registry line: shown with the fake platform,
added to the registry and to nothing else, then configured, listed, run from the command line and
driven to completion by the core through the composition root."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.adapters.broker import embedded
from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.bootstrap import Container, tuning
from orchestrator.config import load_settings
from orchestrator.domain.run import ItemState, RunState
from orchestrator.entrypoints.cli import main as cli_main
from orchestrator.services import planning
from orchestrator.services.context import Context
from tests.fakes import FakeClock, FakeDispatcher, FakeProvider
from tests.providers import fake_platform

URL = "http://fake.example"


@pytest.fixture
def with_fake_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeProvider]:
    tenant = FakeProvider()
    tenant.seed(open_count=12, paid=2, part_paid=1)
    fake_platform.TENANTS[URL] = tenant
    monkeypatch.setitem(PLATFORMS, "fake", fake_platform.PLATFORM)  # the one registry line
    monkeypatch.setenv("REBILL_FAKE_BASE_URL", URL)
    monkeypatch.setenv("REBILL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REBILL_DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    importlib.reload(cli_main)  # the command line is generated from the registry when it loads
    yield tenant
    embedded.stop(tmp_path / "data")  # a dry run's dispatcher started the embedded broker
    fake_platform.TENANTS.pop(URL, None)
    monkeypatch.delitem(PLATFORMS, "fake")
    importlib.reload(cli_main)


def test_the_registry_line_configures_lists_and_checks_the_platform(with_fake_platform: FakeProvider) -> None:
    settings = load_settings()
    assert "fake" in settings.configured_providers()

    listed = CliRunner().invoke(cli_main.cli, ["providers"], obj=cli_main.CliState())
    assert listed.exit_code == 0, listed.output
    assert any(line.startswith("fake") and URL in line for line in listed.output.splitlines())

    checked = CliRunner().invoke(cli_main.cli, ["providers", "check", "fake"], obj=cli_main.CliState())
    assert checked.exit_code == 0, checked.output


def test_its_run_options_appear_on_the_command_line_and_a_dry_run_plans(with_fake_platform: FakeProvider) -> None:
    help_text = CliRunner().invoke(cli_main.cli, ["run", "--help"], obj=cli_main.CliState()).output
    assert "--billing TEXT" in help_text
    assert "--release-held" in help_text

    result = CliRunner().invoke(
        cli_main.cli,
        ["run", "--provider", "fake", "--billing", "2026-11-monthly", "--dry-run", "--json"],
        obj=cli_main.CliState(),
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert (plan["provider"], plan["to_reverse"]) == ("fake", 12)
    assert with_fake_platform.writes() == set()


def test_the_core_drives_it_to_completion_through_the_composition_root(with_fake_platform: FakeProvider) -> None:
    container = Container(load_settings())
    dispatcher = FakeDispatcher()
    clock = FakeClock()
    ctx = Context(
        ledger=container.ledger,
        providers=container.providers,
        dispatcher=dispatcher,
        recorder=container.recorder,
        tuning=tuning(container.settings),
        clock=clock,
    )
    try:
        run = planning.start_run(ctx, "fake", {"billing": "2026-11-monthly"}, container.settings.run_options())
        dispatcher.deliver(ctx, clock=clock)
        finished = container.ledger.get_run(run.id)
        counts = container.ledger.item_counts(run.id)
    finally:
        container.close()

    assert finished is not None
    assert finished.state is RunState.COMPLETED
    assert counts[ItemState.REVERSED] == 12
    assert set(with_fake_platform.reversals().values()) == {1}
