"""Run a simulator app over real HTTP: in a background thread (tests) or blocking (CLI).

    with SimulatorServer(MyApp(state)) as server:
        httpx.get(f"{server.base_url}/_sim/counters")

uvicorn runs with uvloop and httptools when they are installed (they come with uvicorn[standard]).
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, Generic, Self, TypeVar

import click
import uvicorn

from simulators.common.app import S, SimulatorApp


class SimulatorServer(Generic[S]):
    """uvicorn serving one `SimulatorApp` in a daemon thread; `base_url` is set once it accepts connections.

    It can be stopped and started again; stopping cuts the app's fault sleeps short.
    """

    def __init__(
        self,
        app: SimulatorApp[S],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
        thread_name: str = "simulator",
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.thread_name = thread_name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def state(self) -> S:
        return self.app.state

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator server is not running")
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the simulator server is already running")
        self.app.reopen()  # a stopped app cuts every fault sleep short
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level=self.log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
            backlog=2048,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=self.thread_name, daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the simulator server did not start")
            time.sleep(0.002)
        self._port = sock.getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread (in-flight fault sleeps are cut short)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.app.close()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


ServerT = TypeVar("ServerT", bound="SimulatorServer[Any]")


class PortTaken(click.ClickException):
    """The simulator's port cannot be listened on: one line, exit 2 (bad input), never a traceback."""

    exit_code = 2


def serve(server: ServerT, *, on_ready: Callable[[ServerT], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then close the state; `on_ready` runs once the server accepts connections."""
    stop = threading.Event()
    try:
        server.start()
    except OSError as error:
        server.state.close()
        taken = error.errno == errno.EADDRINUSE
        raise PortTaken(
            f"port {server.requested_port} on {server.host} is already in use (choose another with --port)"
            if taken
            else f"cannot listen on {server.host}:{server.requested_port}: {error.strerror or error}"
        ) from None

    def _handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.state.close()
