"""Numbers past what the ledger and the product hold are refused with a clear message (exit 2), and an
error repeats at most the first 40 characters of what was typed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import ValidationError

from orchestrator.adapters.providers.imis.options import ImisSelector, parse_billing_log_key
from orchestrator.adapters.schedule_file import ScheduleFileError, parse_schedule
from orchestrator.domain.user_input import quoted
from orchestrator.entrypoints.cli import params
from orchestrator.entrypoints.cli.main import CliState, cli
from tests.unit.test_schedule_file import GOOD

KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
LONG = "9" * 10_000  # past Python's 4,300-digit limit for int(): click's own message repeated it whole


def rebill(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliState())


def refused(result: Result) -> str:
    """click's usage error: exit 2, its `Error:` line returned."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    return error


class TestQuoted:
    def test_short_input_is_quoted_whole(self) -> None:
        assert quoted("not-a-key") == "'not-a-key'"
        assert quoted("x" * 40) == repr("x" * 40)

    def test_long_input_shows_its_first_40_characters_and_its_length(self) -> None:
        assert quoted("k" * 41) == f"{'k' * 40 + '…'!r} (41 characters)"
        assert quoted(LONG) == f"{'9' * 40 + '…'!r} (10,000 characters)"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--chunk-size", "99999999999999999999"], "'99999999999999999999' is not a whole number from 1 to 10,000"),
        (["--chunk-size", "10001"], "'10001' is not a whole number from 1 to 10,000"),
        (["--chunk-size", "0"], "'0' is not a whole number from 1 to 10,000"),
        (["--chunk-size", "1.5"], "'1.5' is not a whole number from 1 to 10,000"),
        (["--max-attempts", "101"], "'101' is not a whole number from 1 to 100"),
        (["--poll-interval", "nan"], "'nan' is not a number from 0.05 to 3,600"),
        (["--poll-interval", "inf"], "'inf' is not a number from 0.05 to 3,600"),
        (["--poll-interval", "1e400"], "'1e400' is not a number from 0.05 to 3,600"),
        (["--stall-after", "1e12"], "'1e12' is not a number from 1 to 2,592,000"),
        (["--mode", "fast"], "'fast' is not one of orchestrated, native"),
        (["--adjustment-date", "31/12/2026"], "'31/12/2026' is not a date such as 2026-12-31"),
    ],
)
def test_run_options_out_of_bounds_are_refused_before_anything_starts(args: list[str], expected: str) -> None:
    error = refused(rebill("run", "--billing-log", KEY, *args))

    assert f"Invalid value for '{args[0]}': {expected}" in error


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--billing-log", KEY, "--chunk-size", LONG],
        ["run", "--billing-log", KEY, "--poll-interval", LONG],
        ["run", "--billing-log", KEY, "--mode", LONG],
        ["run", "--billing-log", KEY, "--adjustment-date", LONG],
        ["report", "r-1", "--format", LONG],
        ["runs", "--limit", LONG],
        ["demo", "--invoices", LONG],
    ],
    ids=lambda args: " ".join(a for a in args if a != LONG and a != KEY),
)
def test_a_pasted_page_is_echoed_as_its_first_40_characters(args: list[str]) -> None:
    error = refused(rebill(*args))

    assert f"{'9' * 40 + '…'!r} (10,000 characters) is not" in error
    assert len(error) < 200


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "--invoices", "100001"], "from 1 to 100,000"),
        (["demo", "--latency-ms", "inf"], "from 0 to 60,000"),
        (["demo", "--seed", "-1"], "from 0 to 9,223,372,036,854,775,807"),
        (["demo", "--workers", "513"], "from 1 to 512"),
        (["runs", "--limit", "10001"], "from 1 to 10,000"),
        (["worker", "--concurrency", "0"], "from 1 to 512"),
        (["flower", "--port", "70000"], "from 0 to 65,535"),
        (["metrics", "--port", "70000"], "from 0 to 65,535"),
        (["web", "--port", "70000"], "from 0 to 65,535"),
        (["schedule", "history", "--limit", "0"], "from 1 to 10,000"),
    ],
)
def test_other_commands_numbers_have_bounds_too(args: list[str], expected: str) -> None:
    assert expected in refused(rebill(*args))


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (params.CHUNK_SIZE, "10000", 10_000),
        (params.CHUNK_SIZE, "1", 1),
        (params.POLL_INTERVAL_SECONDS, "0.05", 0.05),
        (params.POLL_INTERVAL_SECONDS, "3600", 3_600.0),
        (params.PARTY_ID, "p" * 64, "p" * 64),
    ],
)
def test_values_at_the_bounds_are_accepted(kind: Any, text: str, value: object) -> None:
    converted = kind.convert(text, None, None)
    assert converted == value
    assert not isinstance(converted, float) or math.isfinite(converted)


def test_a_party_id_longer_than_the_ledger_holds_is_refused() -> None:
    with pytest.raises(ValidationError, match="at most 64 characters"):
        ImisSelector(billing_log=KEY, party_id="p" * 65)


def test_an_over_long_billing_log_key_is_echoed_as_its_first_40_characters() -> None:
    with pytest.raises(ValueError, match="is not a BillingLogKey") as raised:
        parse_billing_log_key("k" * 10_000)

    assert str(raised.value) == (
        f"{'k' * 40 + '…'!r} (10,000 characters) is not a BillingLogKey: "
        "expected a GUID such as a9f0db70-d684-481a-84cd-d8fa1cd8f404"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("chunk_size = 100", "chunk_size = 10001", "chunk_size: Input should be less than or equal to 10000"),
        ("chunk_size = 100", "poll_interval_seconds = inf", "poll_interval_seconds: Input should be less than"),
        ('timezone = "Europe/London"', f'timezone = "{"z" * 500}"', f"unknown timezone {'z' * 40 + '…'!r} (500"),
    ],
)
def test_the_schedule_file_has_the_same_bounds_and_echoes_short(old: str, new: str, message: str) -> None:
    with pytest.raises(ScheduleFileError) as refused_file:
        parse_schedule(GOOD.replace(old, new), "s.toml")

    assert message in str(refused_file.value)
    assert len(str(refused_file.value)) < 300


def test_a_database_url_that_is_not_one_is_not_repeated() -> None:
    """It may hold a password."""
    result = CliRunner().invoke(
        cli, ["runs"], env={"REBILL_DATABASE_URL": "pg:/rebill:s3cret-password@db"}, obj=CliState()
    )

    assert result.exit_code == 2, result.output
    assert "REBILL_DATABASE_URL is not a database URL such as" in result.output
    assert "s3cret" not in result.output
