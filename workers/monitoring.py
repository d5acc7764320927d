"""`rebill beat`, `rebill flower` and `rebill metrics`: the same app and settings as the workers."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from orchestrator.adapters.listening import ensure_free
from orchestrator.adapters.metrics import LedgerCollector, ScheduleCollector, serve
from orchestrator.bootstrap import Container, redis_url
from orchestrator.domain.errors import ConfigurationError
from workers.beat import beat_config
from workers.celery_app import configure
from workers.observability import setup_logging, tenant_collector
from workers.schedule_task import schedule_of

log = logging.getLogger(__name__)


def run_beat(container: Container, *, loglevel: str) -> None:
    """Celery beat on redbeat: the reconciler every REBILL_RECONCILE_INTERVAL_SECONDS, and each enabled
    schedule of REBILL_SCHEDULE_FILE (an invalid file stops beat with the line at fault)."""
    settings = container.settings
    schedule = schedule_of(container) if settings.schedule_file is not None else None
    app = configure(settings, container.broker_url)
    app.conf.update(beat_config(settings, redis_url(settings), schedule))
    for entry in schedule.enabled if schedule is not None else []:
        log.info("schedule %s: %s, %s", entry.name, entry.timing.describe(), entry.describe())
    app.start(
        [
            "beat",
            f"--loglevel={loglevel}",
            "--scheduler=workers.beat:RebillScheduler",
            f"--max-interval={settings.beat_max_interval_seconds:g}",
        ]
    )


def run_flower(container: Container, *, address: str, port: int, max_tasks: int = 10_000) -> None:
    """Flower on the project's broker: basic auth required, read-only (no task can be sent or revoked).

    Flower shows what task events carry: our task names, their ids (run id, chunk id, schedule slot)
    and the label the dispatcher gives each (`run 3acc12ef… chunk 142 (50 invoices)`), never a
    payload. Per-run progress is in the ledger (`rebill status`, `rebill web`, `rebill metrics`).
    """
    settings = container.settings
    if settings.flower_basic_auth is None or ":" not in settings.flower_basic_auth.get_secret_value():
        raise ConfigurationError("REBILL_FLOWER_BASIC_AUTH must be set to user:password to start Flower")
    user, _, password = settings.flower_basic_auth.get_secret_value().partition(":")
    if not user or not password:
        raise ConfigurationError("REBILL_FLOWER_BASIC_AUTH must be user:password, both non-empty")
    ensure_free(address, port)
    app = configure(settings, container.broker_url)
    # The credentials stay in this process: Flower reads FLOWER_* options from the environment, and
    # nothing puts them on a command line that `ps` would show.
    os.environ["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    app.start(
        [
            "flower",
            f"--address={address}",
            f"--port={port}",
            "--read_only=True",
            f"--max_tasks={max_tasks}",
            "--conf=/dev/null",  # never execute a flowerconfig.py found in the working directory
        ]
    )


def metrics_registry(container: Container) -> CollectorRegistry:
    settings = container.settings
    registry = CollectorRegistry()
    registry.register(LedgerCollector(container.engines.read, recent_hours=settings.metrics_recent_hours))
    registry.register(tenant_collector(container))
    if settings.schedule_file is not None:
        registry.register(ScheduleCollector(lambda: schedule_of(container)))
    return registry


def run_metrics(container: Container, *, address: str, port: int, ready: Callable[[str], None] | None = None) -> None:
    """Serve the ledger's metrics (runs, items, API calls per run, BillingLog status, schedule
    firings) on http://address:port/metrics until interrupted."""
    setup_logging(container.settings)
    server, thread = serve(metrics_registry(container), address=address, port=port)
    url = f"http://{address}:{server.server_port}/metrics"
    log.info("serving metrics on %s", url)
    if ready is not None:
        ready(url)
    stop = threading.Event()
    try:
        while thread.is_alive() and not stop.wait(1.0):
            pass
    finally:
        server.shutdown()


__all__ = ["run_beat", "run_flower", "run_metrics"]
