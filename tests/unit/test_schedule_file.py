"""The schedule file: what a good one yields, and every mistake refused with the line at fault."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.schedules import crontab
from click.testing import CliRunner

from orchestrator.adapters.schedule_file import CronTiming, EveryTiming, ScheduleFileError, parse_schedule
from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from orchestrator.entrypoints.cli.main import CliState, cli

GOOD = """\
# Billing-cycle schedules
timezone = "Europe/London"

[schedules.regular-membership]
cycle = "Regular Membership Fees"
cron = "0 6 1 * *"

[schedules.regular-membership.options]
chunk_size = 100
mode = "native"

[schedules.chapter]
cycle = "Chapter Dues"
every = "1d"
run_name = "Chapter Dues 2025-10"
enabled = false
"""


def test_a_good_file_gives_each_schedule_its_timing_billing_and_options() -> None:
    schedule = parse_schedule(GOOD, "s.toml")

    regular = schedule.entries["regular-membership"]
    assert regular.choice == {"cycle": "Regular Membership Fees", "run_name": None}
    assert regular.provider == "imis"
    assert regular.options == {"chunk_size": 100}  # the core's run options ...
    assert regular.provider_options == {"mode": "native"}  # ... and the platform's own
    assert regular.line == 4
    # 06:00 London on the 1st: 06:00 UTC in winter, 05:00 UTC in summer
    after = datetime(2026, 2, 15, tzinfo=UTC)
    assert regular.next_times(after, 3) == [
        datetime(2026, 3, 1, 6, tzinfo=UTC),
        datetime(2026, 4, 1, 5, tzinfo=UTC),
        datetime(2026, 5, 1, 5, tzinfo=UTC),
    ]
    chapter = schedule.entries["chapter"]
    assert chapter.choice == {"cycle": "Chapter Dues", "run_name": "Chapter Dues 2025-10"}
    assert isinstance(chapter.timing, EveryTiming)
    assert chapter.timing.seconds == 86400
    assert [entry.name for entry in schedule.enabled] == ["regular-membership"]


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (('cron = "0 6 1 * *"', 'cron = "0 6 1 *"'), 6, "cron needs 5 fields"),
        (('cron = "0 6 1 * *"', 'cron = "0 61 1 * *"'), 6, "invalid cron"),
        (('cron = "0 6 1 * *"', 'cron = "0 6 31 2 *"'), 6, "never occurs"),
        (("chunk_size = 100", "chunk_size = 0"), 9, "chunk_size: Input should be greater than or equal to 1"),
        (("chunk_size = 100", "chunk_sise = 100"), 9, "unknown setting 'chunk_sise'"),
        (('mode = "native"', 'mode = "fast"'), 10, "mode: Input should be 'orchestrated' or 'native'"),
        (('cycle = "Chapter Dues"\n', ""), 12, "schedules.chapter.cycle: 'cycle' is required"),
        (('every = "1d"', 'every = "1 fortnight"'), 14, "is not a duration"),
        (('every = "1d"', 'every = "0.5s"'), 14, "shorter than 1 s"),
        (('cron = "0 6 1 * *"', 'cron = "0 6 1 * *"\nevery = "1h"'), 4, "give exactly one of `cron` or `every`"),
        (('timezone = "Europe/London"', 'timezone = "Mars/Olympus"'), 2, "unknown timezone 'Mars/Olympus'"),
        (("[schedules.chapter]", '[schedules."chapter dues"]'), 12, "String should match pattern"),
        (("enabled = false", "enabled = maybe"), 16, "not valid TOML"),
        (('cron = "0 6 1 * *"', 'cron = "0 6 1 * *'), 6, "not valid TOML"),
        (("run_name = ", "run_nam = "), 15, "unknown setting 'run_nam'"),
        (("# Billing-cycle schedules", 'tz = "UTC"'), 1, "unknown setting 'tz'"),
    ],
)
def test_a_malformed_file_is_refused_with_the_line_at_fault(change: tuple[str, str], line: int, message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ScheduleFileError) as refused:
        parse_schedule(GOOD.replace(old, new), "s.toml")

    assert refused.value.line == line, str(refused.value)
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"s.toml:{line}: ")


def test_rebill_schedule_check_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "schedules.toml"
    bad.write_text(GOOD.replace("chunk_size = 100", "chunk_size = -3"))
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    runner = CliRunner()

    refused = runner.invoke(cli, ["schedule", "check", str(bad)], obj=CliState())
    accepted = runner.invoke(cli, ["schedule", "check", str(good)], obj=CliState())

    assert refused.exit_code == 2
    assert f"error: {bad}:9: schedules.regular-membership.options.chunk_size" in refused.output
    assert "Traceback" not in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert "2 schedule(s), 1 enabled, timezone Europe/London: OK" in accepted.output


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["schedule", "check", str(tmp_path / "none.toml")], obj=CliState())

    assert result.exit_code == 2
    assert "cannot read the schedule file" in result.output


@pytest.mark.parametrize(
    "expression",
    ["0 6 1 * *", "*/15 9-17 * * mon-fri", "30 2 * * sun", "0 0 29 2 *", "5 4 1,15 jan,jul *", "59 23 31 * *"],
)
def test_cron_times_agree_with_celerys_crontab(expression: str) -> None:
    """Beat fires by Celery's crontab; `schedule list` and the slots must name the same times."""
    app = Celery(set_as_current=False)
    app.conf.update(timezone="UTC")
    timing = CronTiming.parse(expression, UTC)
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    rng = random.Random(expression)
    for _ in range(40):
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(60 * 24 * 1000))
        spec = crontab(minute, hour, day_of_week, day_of_month, month_of_year, app=app, nowfun=lambda now=now: now)
        celery_next = (now + spec.remaining_estimate(now)).replace(second=0, microsecond=0)
        assert timing.next_after(now) == celery_next
        slot = timing.slot_at(now)
        assert slot is not None
        assert slot <= now
        following = timing.next_after(slot)
        assert following is not None
        assert following > now


def test_a_slot_is_the_latest_time_at_or_before_the_firing() -> None:
    timing = CronTiming.parse("0 6 1 * *", UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 6, 0, tzinfo=UTC)) == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 6, 0, 3, tzinfo=UTC)) == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 5, 59, tzinfo=UTC)) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    every = EveryTiming(300)
    assert every.slot_at(datetime(2026, 12, 1, 6, 7, 12, tzinfo=UTC)) == datetime(2026, 12, 1, 6, 5, tzinfo=UTC)


def test_a_file_with_several_mistakes_has_every_one_named_with_its_line() -> None:
    broken = (
        GOOD.replace('cron = "0 6 1 * *"', 'cron = "0 6 1 *"')
        .replace("chunk_size = 100", "chunk_size = 0\ncolour = 'blue'")
        .replace('every = "1d"', 'every = "1 fortnight"')
    )
    with pytest.raises(ScheduleFileError) as refused:
        parse_schedule(broken, "s.toml")

    assert refused.value.described() == [
        "s.toml:6: schedules.regular-membership.cron: cron needs 5 fields "
        "(minute hour day-of-month month day-of-week), got 4",
        "s.toml:9: schedules.regular-membership.options.chunk_size: Input should be greater than or equal to 1",
        "s.toml:10: schedules.regular-membership.options.colour: unknown setting 'colour'",
        "s.toml:15: schedules.chapter.every: '1 fortnight' is not a duration such as 30s, 15m, 2h or 1d",
    ]


def test_rebill_schedule_check_lists_every_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "schedules.toml"
    bad.write_text(GOOD.replace("chunk_size = 100", "chunk_size = -3").replace('every = "1d"', 'every = "soon"'))

    result = CliRunner().invoke(cli, ["schedule", "check", str(bad)], obj=CliState())

    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {bad}:9: schedules.regular-membership.options.chunk_size: Input should be greater than or equal to 1",
        f"error: {bad}:14: schedules.chapter.every: 'soon' is not a duration such as 30s, 15m, 2h or 1d",
        f"2 problem(s) in {bad}",
    ]


def test_rebill_schedule_list_keeps_the_options_types_and_shows_the_schedules_own_time(tmp_path: Path) -> None:
    good = tmp_path / "schedules.toml"
    good.write_text(GOOD.replace('mode = "native"', 'mode = "native"\nallow_partial = true'))
    env = {"REBILL_DATA_DIR": str(tmp_path / "none"), "REBILL_DATABASE_URL": None}
    six = ["schedule", "list", "--file", str(good), "--count", "6"]  # half a year: winter and summer time
    runner = CliRunner()

    listed = runner.invoke(cli, [*six, "--json"], env=env, obj=CliState())
    shown = runner.invoke(cli, six, env=env, obj=CliState())

    assert listed.exit_code == 0, listed.output
    regular = next(row for row in json.loads(listed.output) if row["name"] == "regular-membership")
    assert regular["options"] == {"chunk_size": 100, "mode": "native", "allow_partial": True}
    assert [moment[11:] for moment in regular["next_local"]].count("06:00:00+01:00") >= 1
    assert {moment[11:16] for moment in regular["next_local"]} == {"06:00"}  # 06:00 in London, all year
    for utc, local in zip(regular["next"], regular["next_local"], strict=True):
        assert datetime.fromisoformat(utc) == datetime.fromisoformat(local)
    lines = [line.strip() for line in shown.output.splitlines() if line.startswith("  next ")][:6]
    assert len(lines) == 6
    assert all(line.endswith("06:00 Europe/London)") for line in lines), lines
    assert any(" 05:00 UTC (" in line for line in lines), lines  # summer time


def test_rebill_schedule_history_of_an_unknown_schedule_exits_1(tmp_path: Path) -> None:
    schedules = tmp_path / "schedules.toml"
    schedules.write_text(GOOD)
    container = Container(Settings(data_dir=tmp_path / "data"))
    container.ledger  # noqa: B018 - a cached property: building it creates the ledger the command reads
    container.close()
    env = {
        "REBILL_DATA_DIR": str(tmp_path / "data"),
        "REBILL_SCHEDULE_FILE": str(schedules),
        "REBILL_DATABASE_URL": None,
    }
    runner = CliRunner()

    unknown = runner.invoke(cli, ["schedule", "history", "no-such-schedule"], env=env, obj=CliState())
    known = runner.invoke(cli, ["schedule", "history", "chapter"], env=env, obj=CliState())

    assert unknown.exit_code == 1
    assert "no schedule 'no-such-schedule'" in unknown.output
    assert known.exit_code == 0, known.output
    assert known.output.strip() == "no firing recorded for chapter"
