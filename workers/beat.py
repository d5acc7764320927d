"""`rebill beat`: Celery beat on celery-redbeat, the schedule file turned into beat entries.

redbeat keeps the entries and their last run times in Redis (a restarted beat carries on where it
stopped) and holds a lock there: a second beat started by mistake waits for the lock instead of
sending every firing twice, and takes over within `5 x REBILL_BEAT_MAX_INTERVAL_SECONDS` when the
first one dies. Each firing of a schedule is sent as `rebill.fire_schedule(name, slot)`, where the
slot is the scheduled time that came due; the ledger makes one run per slot whatever happens.
"""

from __future__ import annotations

from typing import Any

from redbeat import RedBeatScheduler

from orchestrator.adapters.broker.celery import FIRE_SCHEDULE, reconcile_entry
from orchestrator.adapters.schedule_file import Schedule, Timing
from orchestrator.config import Settings

ENTRY_PREFIX = "schedule:"

_timings: dict[str, Timing] = {}


def redis_py_url(url: str) -> str:
    """redbeat speaks redis-py URLs: Celery's `redis+socket://` (the embedded Redis) is `unix://`."""
    for prefix in ("redis+socket://", "socket://"):
        if url.startswith(prefix):
            return "unix://" + url[len(prefix) :]
    return url


def key_prefix(settings: Settings) -> str:
    """One deployment (one queue) per set of keys, so deployments sharing a Redis never meet."""
    return f"rebill:{settings.queue}:beat:"


def beat_config(settings: Settings, redis_url: str, schedule: Schedule | None) -> dict[str, Any]:
    entries: dict[str, Any] = reconcile_entry(settings.reconcile_interval_seconds)
    _timings.clear()
    for entry in schedule.enabled if schedule is not None else []:
        _timings[entry.name] = entry.timing
        entries[ENTRY_PREFIX + entry.name] = {
            "task": FIRE_SCHEDULE,
            "schedule": entry.timing.celery_schedule(),
            "args": [entry.name, ""],  # the slot is filled in when the entry comes due
        }
    interval = settings.beat_max_interval_seconds
    return {
        "beat_schedule": entries,
        "beat_scheduler": "workers.beat:RebillScheduler",
        "beat_max_interval": interval,
        "timezone": schedule.timezone if schedule is not None else "UTC",
        "redbeat_redis_url": redis_py_url(redis_url),
        "redbeat_redis_options": {},
        "redbeat_key_prefix": key_prefix(settings),
        "redbeat_lock_timeout": int(max(5.0, interval * 5)),
    }


class RebillScheduler(RedBeatScheduler):  # type: ignore[misc]  # redbeat is untyped
    """redbeat, plus the slot: the latest scheduled time at or before now, the same in every beat."""

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        if entry.task == FIRE_SCHEDULE and entry.args:
            name = entry.args[0]
            timing = _timings.get(name)
            now = self.app.now()
            slot = timing.slot_at(now) if timing is not None else None
            entry.args = [name, (slot or now).isoformat()]
        return super().apply_async(entry, producer, advance, **kwargs)
