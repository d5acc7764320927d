"""Serving the web view with uvicorn on a socket we bind first (`adapters.listening`), so a taken port
is a plain error."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from orchestrator.adapters.listening import bind

__all__ = ["bind", "serve", "serving"]


def serve(app: Any, sock: socket.socket, *, log_level: str, ready: Callable[[str], None] | None = None) -> None:
    """Serve `app` on `sock` until interrupted."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = _server(app, log_level)
    if ready is not None:
        ready(f"http://{shown}:{port}/")
    server.run(sockets=[sock])


@contextmanager
def serving(app: Any, *, address: str = "127.0.0.1", log_level: str = "warning") -> Iterator[str]:
    """`app` served on a thread on a free port, for as long as the block runs; yields its base URL."""
    sock = bind(address, 0)
    server = _server(app, log_level)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="web-view", daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"http://{address}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _server(app: Any, log_level: str) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level.lower(), access_log=False, lifespan="off"))
