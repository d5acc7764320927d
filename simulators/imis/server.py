"""Run the iMIS simulator over real HTTP: in a background thread (tests) or blocking (CLI).

    with SimulatorServer(state) as server:
        httpx.get(f"{server.base_url}/_sim/counters")

The server itself is `simulators.common.server`; this module only puts `ImisApp` in it.
"""

from __future__ import annotations

from collections.abc import Callable

from simulators.common import server as common
from simulators.imis.app import ImisApp
from simulators.imis.state import ImisState


class SimulatorServer(common.SimulatorServer[ImisState]):
    """uvicorn serving `ImisApp(state)` in a daemon thread; `base_url` is set once it accepts connections."""

    def __init__(
        self,
        state: ImisState,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            ImisApp(state),
            host,
            port,
            log_level=log_level,
            startup_timeout=startup_timeout,
            thread_name="imis-simulator",
        )


def serve(
    state: ImisState,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_ready: Callable[[SimulatorServer], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` runs once the server accepts connections."""
    common.serve(SimulatorServer(state, host, port, log_level=log_level), on_ready=on_ready)
