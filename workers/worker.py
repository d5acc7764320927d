"""`rebill worker`: a Celery worker on threads, plus a reconcile loop so no beat is needed to recover."""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Any

from celery import signals

from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services import reconciler
from workers.celery_app import configure
from workers.observability import start_worker_metrics
from workers.runtime import install

log = logging.getLogger(__name__)


class ReconcileLoop:
    """Re-dispatches lost work every interval, from the ledger; survives broker and database outages."""

    def __init__(self, container: Container, interval: float) -> None:
        self._container = container
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rebill-reconcile", daemon=True)

    def start(self, **_: Any) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self, **_: Any) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                reconciler.reconcile(self._container.context)
            except Exception as error:
                log.warning("reconcile pass failed: %s: %s", type(error).__name__, error)


def _warm_up(container: Container) -> None:
    """Build the ledger, clients and their imports before the first message, not inside it.

    Then freeze what was built, so the cyclic garbage collector stops rescanning it on every pass.
    An unreachable database only postpones this to the first task, which retries it.
    """
    try:
        container.context  # noqa: B018 - a cached property: building it is the point
    except Exception as error:
        log.warning("could not prepare the worker before its first task (it will retry): %s", error)
    gc.freeze()


def run_worker(container: Container, *, concurrency: int, loglevel: str, reconcile: bool = True) -> None:
    install(container)
    settings = container.settings
    app = configure(settings, container.broker_url)
    if not settings.configured_providers():  # fail fast before any message is taken
        names = ", ".join(PLATFORMS[name].settings.env_name("base_url") for name in PLATFORMS)
        raise ConfigurationError(f"no provider is configured: set the settings of one or more of them ({names}, ...)")
    if settings.worker_metrics_port is not None:
        start_worker_metrics(container)
    _warm_up(container)
    if reconcile:
        loop = ReconcileLoop(container, settings.reconcile_interval_seconds)
        signals.worker_ready.connect(loop.start, weak=False)
        signals.worker_shutting_down.connect(loop.stop, weak=False)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            f"--queues={settings.queue}",
            f"--hostname=rebill-{os.getpid()}@%h",
            "--task-events",
            "--without-gossip",
            "--without-mingle",
        ]
    )
