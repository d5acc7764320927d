"""The schedule file: what a good one yields, and every mistake refused with the line at fault."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.schedules import crontab
from click.testing import CliRunner

from orchestrator.adapters.schedule_file import CronTiming, EveryTiming, ScheduleFileError, parse_schedule
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
    app.conf.timezone = "UTC"
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
        assert timing.next_after(slot) > now


def test_a_slot_is_the_latest_time_at_or_before_the_firing() -> None:
    timing = CronTiming.parse("0 6 1 * *", UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 6, 0, tzinfo=UTC)) == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 6, 0, 3, tzinfo=UTC)) == datetime(2026, 12, 1, 6, tzinfo=UTC)
    assert timing.slot_at(datetime(2026, 12, 1, 5, 59, tzinfo=UTC)) == datetime(2026, 11, 1, 6, tzinfo=UTC)
    every = EveryTiming(300)
    assert every.slot_at(datetime(2026, 12, 1, 6, 7, 12, tzinfo=UTC)) == datetime(2026, 12, 1, 6, 5, tzinfo=UTC)
