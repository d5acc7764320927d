"""Prometheus metrics: what the ledger says (read at scrape time) and what the API calls of a process did.

- `LedgerCollector` (served by `rebill metrics`): runs by state; per run (active, or finished in the
  last `REBILL_METRICS_RECENT_HOURS`) its items by state, API calls by operation and outcome, the
  platform status it follows (iMIS: its BillingLog's), and seconds since it last moved; schedule
  firings by outcome.
  One process serves these for the whole deployment, so nothing is counted twice.
- `ApiMetrics` (served by every worker on `REBILL_WORKER_METRICS_PORT`): the worker's API calls by
  operation, outcome and HTTP status, their latency, transient failures (each one is retried), and
  Celery task retries. Prometheus sums them over the workers.
- `TenantCollector`: calls in flight against each provider's tenant and its cap
  (`REBILL_<PROVIDER>_MAX_CONCURRENCY`).

Labels are ids, names and states only: never an invoice amount, a party name or a credential.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.adapters.ledger.firings import ScheduleFiringRow
from orchestrator.adapters.ledger.models import ApiCallRow, ItemRow, RunRow, WorkerRow
from orchestrator.adapters.listening import cannot_listen
from orchestrator.adapters.schedule_file import Schedule
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import ACTIVE_RUN_STATES, ItemState, RunState
from orchestrator.services.context import CallRecorder

__all__ = ["ApiMetrics", "LedgerCollector", "MeteredRecorder", "ScheduleCollector", "TenantCollector", "serve"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MAX_RUNS = 200  # per-run series are bounded whatever the ledger holds


class ApiMetrics:
    """Counts every `ApiCall` a provider reports in this process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "rebill_api_calls",
            "Calls to the billing platform, by operation, outcome (ok, transient, permanent) and HTTP status",
            ["provider", "operation", "outcome", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "rebill_api_call_duration_seconds",
            "Latency of calls to the billing platform",
            ["provider", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "rebill_api_retries",
            "Calls that failed transiently (throttled, timed out, 5xx) and are retried later",
            ["provider", "operation"],
            registry=registry,
        )
        self.task_retries = Counter(
            "rebill_task_retries", "Celery task retries, by task name", ["task"], registry=registry
        )

    def observe(self, call: ApiCall, provider: str) -> None:
        status = str(call.status_code) if call.status_code is not None else "none"
        self.calls.labels(provider, call.operation, call.outcome.value, status).inc()
        self.latency.labels(provider, call.operation).observe(call.latency_ms / 1000)
        if call.outcome.value == "transient":
            self.retries.labels(provider, call.operation).inc()

    def task_retried(self, task_name: str) -> None:
        self.task_retries.labels(task_name).inc()


class MeteredRecorder(CallRecorder):
    """The services' call recorder, also feeding `ApiMetrics`: the composition root's fan-out."""

    def __init__(self, metrics: ApiMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def record(self, call: ApiCall, *, provider: str = "") -> None:
        super().record(call, provider=provider)
        try:
            self._metrics.observe(call, provider)
        except Exception:  # metrics must never break a reversal
            log.exception("metrics: could not count %s", call.operation)


class TenantCollector(Collector):
    """In-flight calls against each provider's tenant and its cap. `inflight[provider]` is that tenant
    limiter's count (shared by every worker through Redis); without one only the cap is reported."""

    def __init__(self, caps: dict[str, int], inflight: dict[str, Callable[[], int]] | None = None) -> None:
        self._caps = caps
        self._inflight = inflight or {}

    def collect(self) -> Iterable[Metric]:
        caps = GaugeMetricFamily(
            "rebill_tenant_max_concurrency", "Calls allowed in flight to the tenant", labels=["provider"]
        )
        for provider, cap in self._caps.items():
            caps.add_metric([provider], cap)
        yield caps
        inflight = GaugeMetricFamily(
            "rebill_tenant_inflight_calls", "Calls in flight to the tenant, all workers", labels=["provider"]
        )
        for provider, count in self._inflight.items():
            try:
                inflight.add_metric([provider], float(count()))
            except Exception as error:
                log.warning("metrics: %s in-flight count unavailable: %s", provider, type(error).__name__)
        yield inflight


class LedgerCollector(Collector):
    """Reads the ledger at each scrape (a handful of grouped queries, bounded by `_MAX_RUNS`)."""

    def __init__(
        self, engine: Engine, *, recent_hours: float = 24.0, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._engine = engine
        self._recent = timedelta(hours=recent_hours)
        self._clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("rebill_ledger_up", "1 when the ledger could be read for this scrape")
        try:
            families = self._families()
        except SQLAlchemyError as error:
            log.warning("metrics: cannot read the ledger: %s", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        now = self._clock()
        active = [state.value for state in ACTIVE_RUN_STATES]
        with self._engine.connect() as conn:
            by_state = dict(conn.execute(select(RunRow.state, func.count()).group_by(RunRow.state)).all())
            workers = conn.execute(select(WorkerRow.id, WorkerRow.beat_at, WorkerRow.dead_at)).all()
            runs = conn.execute(
                select(
                    RunRow.id,
                    RunRow.provider,
                    RunRow.selection_label,
                    RunRow.state,
                    RunRow.last_status_code,
                    RunRow.last_status_label,
                    RunRow.updated_at,
                    RunRow.schedule_slot,
                )
                .where(or_(RunRow.state.in_(active), RunRow.updated_at >= now - self._recent))
                .order_by(RunRow.updated_at.desc())
                .limit(_MAX_RUNS)
            ).all()
            ids = [run.id for run in runs]
            items = conn.execute(
                select(ItemRow.run_id, ItemRow.state, func.count())
                .where(ItemRow.run_id.in_(ids))
                .group_by(ItemRow.run_id, ItemRow.state)
            ).all()
            active_ids = [run.id for run in runs if run.state in active]
            item_moves = dict(
                conn.execute(
                    select(ItemRow.run_id, func.max(ItemRow.updated_at))
                    .where(ItemRow.run_id.in_(active_ids))
                    .group_by(ItemRow.run_id)
                ).all()
            )
            calls = conn.execute(
                select(ApiCallRow.run_id, ApiCallRow.operation, ApiCallRow.outcome, func.count())
                .where(ApiCallRow.run_id.in_(ids))
                .group_by(ApiCallRow.run_id, ApiCallRow.operation, ApiCallRow.outcome)
            ).all()
            firings = conn.execute(
                select(
                    ScheduleFiringRow.schedule,
                    ScheduleFiringRow.outcome,
                    func.count(),
                    func.max(ScheduleFiringRow.fired_at),
                    func.max(ScheduleFiringRow.slot_at),
                ).group_by(ScheduleFiringRow.schedule, ScheduleFiringRow.outcome)
            ).all()
        return [
            _runs_by_state(by_state),
            *_workers(workers, now),
            *_per_run(runs, items, calls, item_moves, now),
            *_firings(firings),
        ]


class ScheduleCollector(Collector):
    """The schedule file as beat sees it: which slot is due now and which comes next, per schedule.
    With `rebill_schedule_last_slot_timestamp_seconds` this tells a missed firing (beat down)."""

    def __init__(self, load: Callable[[], Schedule], *, clock: Callable[[], datetime] | None = None) -> None:
        self._load = load
        self._clock = clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterable[Metric]:
        valid = GaugeMetricFamily("rebill_schedule_file_valid", "1 when REBILL_SCHEDULE_FILE loads without error")
        try:
            schedule = self._load()
        except ConfigurationError as error:
            log.warning("metrics: %s", error)
            valid.add_metric([], 0)
            yield valid
            return
        valid.add_metric([], 1)
        yield valid
        now = self._clock()
        enabled = GaugeMetricFamily(
            "rebill_schedule_enabled", "1 per enabled schedule, 0 disabled", labels=["schedule"]
        )
        due = GaugeMetricFamily(
            "rebill_schedule_due_slot_timestamp_seconds", "The latest slot at or before now", labels=["schedule"]
        )
        upcoming = GaugeMetricFamily(
            "rebill_schedule_next_firing_timestamp_seconds", "The next slot", labels=["schedule"]
        )
        for entry in schedule.entries.values():
            enabled.add_metric([entry.name], 1 if entry.enabled else 0)
            if not entry.enabled:
                continue
            slot, following = entry.timing.slot_at(now), entry.timing.next_after(now)
            if slot is not None:
                due.add_metric([entry.name], slot.timestamp())
            if following is not None:
                upcoming.add_metric([entry.name], following.timestamp())
        yield from (enabled, due, upcoming)


def _workers(rows: Sequence[Any], now: datetime) -> list[Metric]:
    """Workers alive and declared dead, and each live one's heartbeat age: a worker that dies shows
    as one more dead and its age growing past REBILL_WORKER_DEAD_AFTER_SECONDS."""
    counts = GaugeMetricFamily("rebill_workers", "Worker processes by liveness (their heartbeats)", labels=["state"])
    dead = sum(1 for row in rows if row.dead_at is not None)
    counts.add_metric(["alive"], len(rows) - dead)
    counts.add_metric(["dead"], dead)
    age = GaugeMetricFamily(
        "rebill_worker_heartbeat_age_seconds", "Seconds since each live worker's last heartbeat", labels=["worker"]
    )
    for row in rows:
        beat = _utc(row.beat_at)
        if row.dead_at is None and beat is not None:
            age.add_metric([row.id], max(0.0, (now - beat).total_seconds()))
    return [counts, age]


def _runs_by_state(by_state: dict[str, int]) -> Metric:
    family = GaugeMetricFamily("rebill_runs", "Runs in the ledger, by state", labels=["state"])
    for state in RunState:
        family.add_metric([state.value], by_state.get(state.value, 0))
    return family


def _per_run(
    runs: Sequence[Any], items: Sequence[Any], calls: Sequence[Any], item_moves: dict[str, Any], now: datetime
) -> list[Metric]:
    info = GaugeMetricFamily(
        "rebill_run_info",
        "1 per recent run, with its provider, selection and state",
        labels=["run_id", "provider", "selection", "state", "schedule_slot"],
    )
    states = GaugeMetricFamily("rebill_run_state", "1 for the state each recent run is in", labels=["run_id", "state"])
    item_family = GaugeMetricFamily(
        "rebill_run_items", "Items (invoices) of each recent run, by state", labels=["run_id", "state"]
    )
    call_family = GaugeMetricFamily(
        "rebill_run_api_calls", "API calls recorded for each recent run", labels=["run_id", "operation", "outcome"]
    )
    status = GaugeMetricFamily(
        "rebill_run_platform_status",
        "1 per recent run that saw a platform status, labelled with the platform's own code and label "
        "(iMIS BillingLog: 5 reversing, 1 processing, 2 completed, 3 failed, 4 unposted batch, 6 batch deleted)",
        labels=["run_id", "provider", "code", "label"],
    )
    quiet = GaugeMetricFamily(
        "rebill_run_seconds_since_progress",
        "Seconds since an active run or one of its items last moved",
        labels=["run_id"],
    )
    counts: dict[str, dict[str, int]] = {}
    for run_id, state, count in items:
        counts.setdefault(run_id, {})[state] = count
    for run in runs:
        info.add_metric([run.id, run.provider, run.selection_label, run.state, run.schedule_slot or ""], 1)
        states.add_metric([run.id, run.state], 1)
        for item_state in ItemState:
            item_family.add_metric([run.id, item_state.value], counts.get(run.id, {}).get(item_state.value, 0))
        if run.last_status_code is not None:
            status.add_metric([run.id, run.provider, run.last_status_code, run.last_status_label or ""], 1)
        if run.id in item_moves or run.state in {s.value for s in ACTIVE_RUN_STATES}:
            moved = max(filter(None, (_utc(run.updated_at), _utc(item_moves.get(run.id)))))
            quiet.add_metric([run.id], max(0.0, (now - moved).total_seconds()))
    for run_id, operation, outcome, count in calls:
        call_family.add_metric([run_id, operation, outcome], count)
    return [info, states, item_family, call_family, status, quiet]


def _firings(rows: Sequence[Any]) -> list[Metric]:
    counts = GaugeMetricFamily(
        "rebill_schedule_firings", "Recorded schedule firings, by schedule and outcome", labels=["schedule", "outcome"]
    )
    last = GaugeMetricFamily(
        "rebill_schedule_last_firing_timestamp_seconds", "When each schedule last fired", labels=["schedule"]
    )
    last_slot = GaugeMetricFamily(
        "rebill_schedule_last_slot_timestamp_seconds", "The latest slot each schedule fired for", labels=["schedule"]
    )
    latest: dict[str, tuple[datetime, datetime]] = {}
    for schedule, outcome, count, fired_at, slot_at in rows:
        counts.add_metric([schedule, outcome], count)
        fired, slot = _utc(fired_at), _utc(slot_at)
        if fired is None or slot is None:
            continue
        before = latest.get(schedule)
        latest[schedule] = (max(fired, before[0]), max(slot, before[1])) if before else (fired, slot)
    for schedule, (fired, slot) in latest.items():
        last.add_metric([schedule], fired.timestamp())
        last_slot.add_metric([schedule], slot.timestamp())
    return [counts, last, last_slot]


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def serve(registry: CollectorRegistry, *, address: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """`/metrics` on a daemon thread; port 0 picks a free port (`server.server_port`)."""
    try:
        return start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise cannot_listen(address, port, error) from None
