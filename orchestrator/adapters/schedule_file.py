"""The schedule file (TOML): per billing cycle, when to run, which billing to take, with which options.

    timezone = "America/Chicago"            # optional (default UTC): every `cron` below reads in it

    [schedules.regular-membership]          # the schedule's name: letters, digits, '-' and '_'
    cycle = "Regular Membership Fees"       # the BillingCycleName
    cron = "0 6 1 * *"                      # minute hour day-of-month month day-of-week
    # every = "1d"                          # or a fixed interval instead of cron (s, m, h, d)
    # run_name = "Regular Membership Fees 2026-01"   # take this completed billing, by its BillingRunName;
    #                                                # default: the latest completed billing of the cycle
    enabled = true

    [schedules.regular-membership.options]  # the `rebill run` options, by their REBILL_ setting names
    chunk_size = 100
    allow_partial = false

Cron follows Celery's `crontab` (all five fields must match; day-of-week 0 or `sun` is Sunday), the
same rules beat fires by. Any mistake is a `ScheduleFileError` naming the file and the line at fault.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.domain import limits
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import RunOptions
from orchestrator.domain.user_input import quoted

__all__ = [
    "CronTiming",
    "EveryTiming",
    "Problem",
    "Schedule",
    "ScheduleEntry",
    "ScheduleFileError",
    "load_schedule",
    "parse_schedule",
    "zone",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SEARCH_DAYS = 366 * 8  # Feb 29 on a Monday recurs within 28 years at worst; 8 covers any plain cron


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str


class ScheduleFileError(ConfigurationError):
    """Every mistake found in a schedule file, each with its line; `line` and `problem` are the first's."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path, self.problems = path, tuple(problems)
        self.line, self.problem = problems[0].line, problems[0].message
        super().__init__("; ".join(self.described()))

    def described(self) -> list[str]:
        """`path:line: message`, one per problem, in the order of the file."""
        return [f"{self.path}:{p.line}: {p.message}" if p.line else f"{self.path}: {p.message}" for p in self.problems]


# --- timings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronTiming:
    """Five-field cron in a timezone, evaluated as Celery's crontab does."""

    expression: str
    tz: tzinfo
    spec: crontab = field(compare=False, repr=False)

    def _set(self, name: str) -> frozenset[int]:
        return frozenset(getattr(self.spec, name))  # celery expands each field to a set of ints

    @classmethod
    def parse(cls, expression: str, tz: tzinfo) -> CronTiming:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        try:
            spec = crontab(
                minute=minute,
                hour=hour,
                day_of_month=day_of_month,
                month_of_year=month_of_year,
                day_of_week=day_of_week,
            )
        except Exception as error:  # celery raises ValueError or its own ParseException
            raise ValueError(f"invalid cron {quoted(expression)}: {error}") from None
        timing = cls(" ".join(fields), tz, spec)
        if timing.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
            raise ValueError(f"cron {quoted(expression)} never fires (no such date)")
        return timing

    def describe(self) -> str:
        return f"cron {self.expression} ({self.tz})"

    def celery_schedule(self) -> crontab:
        return self.spec

    def _days(self, start: date, step: int) -> Iterator[date]:
        months, days, weekdays = self._set("month_of_year"), self._set("day_of_month"), self._set("day_of_week")
        day = start
        for _ in range(_SEARCH_DAYS):
            if day.month in months and day.day in days and day.isoweekday() % 7 in weekdays:
                yield day
            day += timedelta(days=step)

    def _times(self, day: date, *, reverse: bool) -> Iterator[datetime]:
        minutes = sorted(self._set("minute"), reverse=reverse)
        for hour in sorted(self._set("hour"), reverse=reverse):
            for minute in minutes:
                yield datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz)

    def next_after(self, moment: datetime) -> datetime | None:
        local = moment.astimezone(self.tz)
        for day in self._days(local.date(), 1):
            for candidate in self._times(day, reverse=False):
                if candidate > local:
                    return candidate.astimezone(UTC)
        return None

    def slot_at(self, moment: datetime) -> datetime | None:
        """The latest firing time at or before `moment`: the slot a firing at `moment` belongs to."""
        local = moment.astimezone(self.tz)
        for day in self._days(local.date(), -1):
            for candidate in self._times(day, reverse=True):
                if candidate <= local:
                    return candidate.astimezone(UTC)
        return None


@dataclass(frozen=True)
class EveryTiming:
    """A fixed interval; slots are aligned on the Unix epoch so every scheduler agrees on them."""

    seconds: float

    def describe(self) -> str:
        return f"every {self.seconds:g} s"

    def celery_schedule(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def slot_at(self, moment: datetime) -> datetime:
        stamp = moment.timestamp()
        return datetime.fromtimestamp(stamp - stamp % self.seconds, tz=UTC)

    def next_after(self, moment: datetime) -> datetime:
        return self.slot_at(moment) + timedelta(seconds=self.seconds)


Timing = CronTiming | EveryTiming


_CORE_OPTIONS = frozenset(RunOptions.__dataclass_fields__)


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    choice: dict[str, Any]  # what the provider selects from (iMIS: a cycle, and a run name or the latest)
    timing: Timing
    enabled: bool
    options: dict[str, Any]  # `rebill run`'s options for every platform
    provider: str = "imis"
    provider_options: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    def describe(self) -> str:
        cycle, run_name = self.choice.get("cycle"), self.choice.get("run_name")
        if run_name is None:
            return f"the latest completed billing of cycle {cycle!r}"
        return f"the completed billing {run_name!r} of cycle {cycle!r}"

    def next_times(self, after: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        moment: datetime | None = after
        while moment is not None and len(times) < count:
            moment = self.timing.next_after(moment)
            if moment is not None:
                times.append(moment)
        return times


@dataclass(frozen=True)
class Schedule:
    path: str
    timezone: str
    entries: dict[str, ScheduleEntry]

    def get(self, name: str) -> ScheduleEntry | None:
        return self.entries.get(name)

    @property
    def enabled(self) -> list[ScheduleEntry]:
        return [entry for entry in self.entries.values() if entry.enabled]


# --- the file's model ---------------------------------------------------------------------------


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    party_id: Annotated[str, Field(max_length=limits.MAX_PARTY_ID_LENGTH)] | None = None
    dry_run: bool | None = None
    mode: Literal["orchestrated", "native"] | None = None
    tracking_log: bool | None = None
    allow_partial: bool | None = None
    chunk_size: Annotated[int, Field(ge=1, le=limits.MAX_CHUNK_SIZE)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=limits.MAX_ATTEMPTS)] | None = None
    retry_backoff_seconds: Annotated[float, Field(gt=0)] | None = None
    retry_backoff_max_seconds: Annotated[float, Field(gt=0)] | None = None
    adjustment_reason: Annotated[str, Field(min_length=1)] | None = None
    do_not_cancel_membership: bool | None = None
    automatically_post_batch: bool | None = None
    post_unposted_batch: bool | None = None
    poll_interval_seconds: (
        Annotated[float, Field(ge=limits.MIN_POLL_INTERVAL_SECONDS, le=limits.MAX_POLL_INTERVAL_SECONDS)] | None
    ) = None
    stall_after_seconds: (
        Annotated[float, Field(ge=limits.MIN_STALL_AFTER_SECONDS, le=limits.MAX_STALL_AFTER_SECONDS)] | None
    ) = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle: Annotated[str, Field(min_length=1)]
    cron: str | None = None
    every: str | float | None = None
    billing: Literal["latest"] = "latest"
    run_name: Annotated[str, Field(min_length=1)] | None = None
    enabled: bool = True
    options: _Options = _Options()

    @model_validator(mode="after")
    def _one_timing(self) -> _Entry:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of `cron` or `every`")
        return self


class _File(BaseModel):
    """The file's top level; each schedule is checked on its own (`_Entry`), so every mistake is found."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    schedules: dict[Annotated[str, Field(pattern=_NAME)], dict[str, Any]] = {}

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value


def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {quoted(name)} (use an IANA name such as Europe/London)") from None


def duration(value: str | float) -> float:
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{quoted(value)} is not a duration such as 30s, 15m, 2h or 1d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 1:
        raise ValueError("an interval shorter than 1 s is not a schedule")
    return seconds


# --- loading ------------------------------------------------------------------------------------


def load_schedule(path: Path) -> Schedule:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScheduleFileError(
            str(path), [Problem(None, f"cannot read the schedule file ({error.strerror})")]
        ) from None
    return parse_schedule(text, str(path))


def parse_schedule(text: str, path: str = "<schedule>") -> Schedule:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(found.group(1)) if found else None
        problem = Problem(line, "not valid TOML: " + re.sub(r"\s*\(at line.*\)$", "", message))
        raise ScheduleFileError(path, [problem]) from None
    lines = _key_lines(text)
    problems: list[Problem] = []
    try:
        model = _File.model_validate(data)
        timezone, schedules = model.timezone, model.schedules
    except ValidationError as error:  # reported; the schedules are still checked one by one
        problems.extend(_validation_problems(error, (), lines))
        timezone = data["timezone"] if isinstance(data.get("timezone"), str) else "UTC"
        found = data.get("schedules")
        schedules = {
            name: entry
            for name, entry in (found.items() if isinstance(found, dict) else ())
            if isinstance(entry, dict) and re.match(_NAME, name)
        }
    tz = _zone_or_utc(timezone)
    entries: dict[str, ScheduleEntry] = {}
    for name, raw_entry in schedules.items():
        entry: _Entry | None = None
        try:
            entry = _Entry.model_validate(raw_entry)
        except ValidationError as error:
            problems.extend(_validation_problems(error, ("schedules", name), lines))
        timing = _timing(name, raw_entry, tz, lines, problems)
        if entry is None or timing is None:
            continue
        options = entry.options.model_dump(mode="json", exclude_none=True)
        entries[name] = ScheduleEntry(
            name=name,
            choice={"cycle": entry.cycle, "run_name": entry.run_name},
            timing=timing,
            enabled=entry.enabled,
            options={key: value for key, value in options.items() if key in _CORE_OPTIONS},
            provider_options={key: value for key, value in options.items() if key not in _CORE_OPTIONS},
            line=_line_of(lines, ("schedules", name)),
        )
    if problems:
        raise ScheduleFileError(path, sorted(problems, key=lambda problem: problem.line or 0))
    return Schedule(path=path, timezone=timezone, entries=entries)


def _validation_problems(
    error: ValidationError, prefix: tuple[str, ...], lines: dict[tuple[str, ...], int]
) -> list[Problem]:
    """One problem per issue pydantic found, each at its own line."""
    problems = []
    for issue in error.errors():
        loc = prefix + tuple(str(part) for part in issue["loc"] if part != "[key]")
        where = ".".join(loc) or "(file)"
        message = issue["msg"].removeprefix("Value error, ")
        if issue["type"] == "extra_forbidden":
            message = f"unknown setting {quoted(loc[-1])}"
        elif issue["type"] == "missing":
            message = f"{loc[-1]!r} is required"
        problems.append(Problem(_line_of(lines, loc), f"{where}: {message}"))
    return problems


def _timing(
    name: str, raw: dict[str, Any], tz: tzinfo, lines: dict[tuple[str, ...], int], problems: list[Problem]
) -> Timing | None:
    """The schedule's timing, checked even when other keys of the schedule are wrong (a problem is added
    when it cannot be read; a missing or doubled timing is `_Entry`'s to say)."""
    cron, every = raw.get("cron"), raw.get("every")
    key = "cron" if cron is not None else "every"
    try:
        if isinstance(cron, str) and every is None:
            return CronTiming.parse(cron, tz)
        if isinstance(every, str | int | float) and not isinstance(every, bool) and cron is None:
            return EveryTiming(duration(every))
    except ValueError as error:
        problems.append(Problem(_line_of(lines, ("schedules", name, key)), f"schedules.{name}.{key}: {error}"))
    return None


def _zone_or_utc(name: str) -> tzinfo:
    """The file's timezone; UTC while a bad one is reported (so the schedules are still checked)."""
    try:
        return zone(name)
    except ValueError:
        return UTC


# --- where each key is written, for messages ------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", text)
    return tuple(next(p for p in part if p) if any(part) else "" for part in parts)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line number of every table header and key, by its full dotted path (first occurrence wins)."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _dotted(header.group(1))
            found.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            found.setdefault(table + _dotted(key.group(1)), number)
    return found


def _line_of(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
