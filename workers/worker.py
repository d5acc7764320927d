"""`rebill worker`: a Celery worker on threads, with two loops of its own: its heartbeat (which also
takes over from dead workers within seconds) and the reconciler (lost messages), so no beat is
needed to recover."""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from celery import signals

from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services import liveness, reconciler
from orchestrator.services.context import WorkerIdentity
from workers.celery_app import configure
from workers.observability import start_worker_metrics
from workers.process import install

log = logging.getLogger(__name__)


class Every:
    """Runs `work` every `interval` seconds in a daemon thread; survives broker and database outages
    (a failed pass is logged and the next one comes as usual)."""

    def __init__(self, name: str, interval: float, work: Callable[[], object], *, at_once: bool = False) -> None:
        self._name = name
        self._interval = interval
        self._work = work
        self._at_once = at_once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rebill-{name}", daemon=True)

    def start(self, **_: Any) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self, **_: Any) -> None:
        self._stop.set()

    def _run(self) -> None:
        if self._at_once:
            self._pass()
        while not self._stop.wait(self._interval):
            self._pass()

    def _pass(self) -> None:
        try:
            self._work()
        except Exception as error:
            log.warning("%s pass failed: %s: %s", self._name, type(error).__name__, error)


def heartbeat(container: Container) -> None:
    """This worker's beat, then a look for workers that stopped beating."""
    assert container.worker is not None
    ctx = container.context
    liveness.beat(ctx, container.worker, host=socket.gethostname(), pid=os.getpid())
    liveness.take_over_from_dead_workers(ctx)


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
    container.worker = WorkerIdentity(f"rebill-{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:6]}")
    install(container)
    settings = container.settings
    app = configure(settings, container.broker_url)
    if not settings.configured_providers():  # fail fast before any message is taken
        names = ", ".join(PLATFORMS[name].settings.env_name("base_url") for name in PLATFORMS)
        raise ConfigurationError(f"no provider is configured: set the settings of one or more of them ({names}, ...)")
    if settings.worker_metrics_port is not None:
        start_worker_metrics(container)
    _warm_up(container)
    # The first beat before any message is taken: a claim is never made by a worker nobody can see.
    beating = Every("heartbeat", settings.heartbeat_seconds, lambda: heartbeat(container), at_once=True)
    beating.start()
    signals.worker_shutting_down.connect(beating.stop, weak=False)
    if reconcile:
        loop = Every("reconcile", settings.reconcile_interval_seconds, lambda: reconciler.reconcile(container.context))
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
