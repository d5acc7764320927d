"""Logs and metrics for the Celery processes (`rebill worker`, `rebill beat`, `rebill flower`).

- Logging: Celery leaves the loggers to us (we answer its `setup_logging` signal); every line is
  redacted and, with `REBILL_LOG_FORMAT=json`, a JSON object carrying the task id and the ids the
  task works on (run, chunk, schedule slot; the services add item and invoice).
- Metrics: a worker with `REBILL_WORKER_METRICS_PORT` serves its API-call metrics on /metrics; the
  services' call recorder feeds them (the worker's container gets a `MeteredRecorder` before it
  builds anything).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from contextvars import Token
from typing import Any

from celery import Celery, signals
from prometheus_client import CollectorRegistry

from orchestrator.adapters.broker.celery import TASK_ARGUMENTS
from orchestrator.adapters.logs import configure_logging
from orchestrator.adapters.metrics import ApiMetrics, MeteredRecorder, TenantCollector, serve
from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from orchestrator.services import logcontext

log = logging.getLogger(__name__)

_tokens: dict[str, Token[Any]] = {}
_tokens_lock = threading.Lock()
_installed = False


def setup_logging(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format, secrets=settings.secret_values())


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


def start_worker_metrics(container: Container) -> int:
    """Serve this worker's metrics; every API call its container's providers make is counted.

    Call before the container builds its context: the recorder is the one the services will use.
    """
    settings = container.settings
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    container.recorder = MeteredRecorder(metrics)
    registry.register(tenant_collector(container))
    signals.task_retry.connect(lambda sender=None, **_: metrics.task_retried(getattr(sender, "name", "?")), weak=False)
    server, _ = serve(registry, address=settings.metrics_address, port=settings.worker_metrics_port or 0)
    log.info("worker metrics on http://%s:%s/metrics", settings.metrics_address, server.server_port)
    return int(server.server_port)


def tenant_collector(container: Container) -> TenantCollector:
    """Each configured provider's cap, and its limiter's count of calls in flight (all workers, in Redis)."""
    names = container.settings.configured_providers()
    return TenantCollector(
        {name: container.settings.provider(name).max_concurrency for name in names},
        {name: container.limiter(name).holders for name in names},
    )
