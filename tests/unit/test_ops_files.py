"""The files under ops/ stay true: the example schedule parses, the alert rules and the dashboard only
name metrics that rebill exports, and (where promtool is installed) the rules pass their own tests."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.adapters.ledger.database import create_engines, migrate
from orchestrator.adapters.metrics import ApiMetrics, LedgerCollector, ScheduleCollector, TenantCollector
from orchestrator.adapters.schedule_file import load_schedule

OPS = Path(__file__).resolve().parents[2] / "ops"


def exported_names(tmp_path: Path) -> set[str]:
    engines = create_engines(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(engines)
    registry = CollectorRegistry()
    ApiMetrics(registry)
    registry.register(LedgerCollector(engines.read))
    registry.register(TenantCollector({"imis": 4}, {"imis": lambda: 1}))
    registry.register(ScheduleCollector(lambda: load_schedule(OPS / "schedules.example.toml")))
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum"))
    engines.dispose()
    return names


def test_the_example_schedule_file_is_valid() -> None:
    schedule = load_schedule(OPS / "schedules.example.toml")
    assert [entry.name for entry in schedule.enabled] == ["regular-membership"]


@pytest.mark.parametrize(
    "path",
    ["prometheus/alerts.yml", "grafana/rebill-dashboard.json", "README.md", "runbooks/alerts.md"],
)
def test_ops_files_name_only_exported_metrics(path: str, tmp_path: Path) -> None:
    text = (OPS / path).read_text()
    named = set(re.findall(r"\brebill_[a-z_]+[a-z]\b", text)) - {"rebill_test", "rebill_metrics"}
    unknown = named - exported_names(tmp_path)
    assert not unknown, f"{path} names metrics nothing exports: {sorted(unknown)}"


def test_the_dashboard_is_valid_json_with_queries() -> None:
    dashboard = json.loads((OPS / "grafana" / "rebill-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) >= 15
    assert dashboard["uid"] == "rebill-overview"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_alert_rules_pass_promtool() -> None:
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            ["promtool", *command], cwd=OPS / "prometheus", capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


class CaseKeepingParser(configparser.ConfigParser):
    """Keys as written (Restart, not restart)."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


@pytest.mark.parametrize("unit", sorted(p.name for p in (OPS / "systemd").glob("*.service")))
def test_systemd_units_restart_a_rebill_command_forever(unit: str) -> None:
    from orchestrator.entrypoints.cli.main import cli

    parser = CaseKeepingParser(interpolation=None, strict=True)
    parser.read_string((OPS / "systemd" / unit).read_text())
    service = parser["Service"]
    assert (service["Restart"], parser["Unit"]["StartLimitIntervalSec"]) == ("always", "0")
    assert service["RestartSec"]
    executable, command, *_ = service["ExecStart"].split()
    assert executable.endswith("/rebill")
    assert command in cli.commands
