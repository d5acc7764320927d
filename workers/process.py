"""The worker process's container, built once per process (and again in a forked child)."""

from __future__ import annotations

import os
import threading

from orchestrator.bootstrap import Container
from orchestrator.config import load_settings
from orchestrator.services.context import Context

_lock = threading.Lock()
_container: Container | None = None


def install(container: Container) -> None:
    global _container
    with _lock:
        _container = container


def container() -> Container:
    global _container
    with _lock:
        if _container is None:
            _container = Container(load_settings())
        return _container


def context() -> Context:
    return container().context


def _forget_after_fork() -> None:
    """Sockets and pools must not cross a fork: a prefork child builds its own."""
    global _container
    if _container is not None:
        _container = Container(_container.settings)


os.register_at_fork(after_in_child=_forget_after_fork)
