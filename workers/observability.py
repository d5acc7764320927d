"""Logs and metrics for the Celery processes (`rebill worker`, `rebill beat`, `rebill flower`).

- Logging: Celery leaves the loggers to us (we answer its `setup_logging` signal); every line is
  redacted and, with `REBILL_LOG_FORMAT=json`, a JSON object carrying the task id and the ids the
  task works on (run, chunk, schedule slot; the services add item and invoice).
- Metrics: a worker with `REBILL_WORKER_METRICS_PORT` serves its API-call metrics on /metrics; the
  services' call recorder feeds them (the container is rebuilt with a `MeteredRecorder`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from contextvars import Token
from typing import Any

from celery import Celery, signals
from prometheus_client import CollectorRegistry

from orchestrator.adapters.logs import configure_logging
from orchestrator.adapters.metrics import ApiMetrics, MeteredRecorder, TenantCollector, serve
from orchestrator.bootstrap import Container, tenant_limiter
from orchestrator.config import Settings
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services import logcontext
from workers import runtime

log = logging.getLogger(__name__)

# What each task's positional arguments are, for the log context (ids only).
TASK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "rebill.plan_run": ("run_id",),
    "rebill.reverse_chunk": ("run_id", "chunk_id"),
    "rebill.submit_rebill": ("run_id",),
    "rebill.poll_run": ("run_id",),
    "rebill.fire_schedule": ("schedule", "slot"),
}

_tokens: dict[str, Token[Any]] = {}
_tokens_lock = threading.Lock()
_installed = False


def secrets_of(settings: Settings) -> tuple[str | None, ...]:
    values = [settings.imis_password, settings.flower_basic_auth, settings.web_basic_auth]
    return tuple(value.get_secret_value() if value is not None else None for value in values)


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))


def install(app: Celery, settings: Settings) -> None:
    """Connect the signal handlers once per process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True

    def _logging(**_: Any) -> None:
        setup_logging(settings)

    signals.setup_logging.connect(_logging, weak=False)  # connected: Celery configures no logger itself
    signals.task_prerun.connect(_bind_task, weak=False)
    signals.task_postrun.connect(_unbind_task, weak=False)
    if settings.worker_metrics_port is not None:
        signals.worker_init.connect(lambda **_: start_worker_metrics(settings), weak=False)
    setup_logging(settings)


def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    if task_id is None:
        return
    name = getattr(task, "name", None)
    ids: dict[str, object] = {"task_id": task_id, "task": name}
    for field, value in zip(TASK_ARGUMENTS.get(str(name), ()), args or (), strict=False):
        ids[field] = value
    token = logcontext.bind(**ids)
    with _tokens_lock:
        _tokens[task_id] = token


def _unbind_task(task_id: str | None = None, **_: Any) -> None:
    with _tokens_lock:
        token = _tokens.pop(task_id or "", None)
    if token is not None:
        with contextlib.suppress(ValueError):  # bound in another context: nothing of ours to undo here
            logcontext.unbind(token)


def start_worker_metrics(settings: Settings) -> int:
    """Serve this worker's metrics and rebuild its container so every API call is counted."""
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    container = Container(settings, recorder=MeteredRecorder(metrics))
    runtime.install(container)
    registry.register(TenantCollector(settings.imis_max_concurrency, tenant_inflight(container)))
    signals.task_retry.connect(lambda sender=None, **_: metrics.task_retried(getattr(sender, "name", "?")), weak=False)
    server, _ = serve(registry, address=settings.metrics_address, port=settings.worker_metrics_port or 0)
    log.info("worker metrics on http://%s:%s/metrics", settings.metrics_address, server.server_port)
    return int(server.server_port)


def tenant_inflight(container: Container) -> Callable[[], int] | None:
    """The tenant limiter's count of calls in flight, all workers (it lives in Redis); None without a tenant."""
    try:
        limiter = tenant_limiter(container.settings)
    except ConfigurationError:
        return None
    return limiter.holders
