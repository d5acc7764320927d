"""Run the Salesforce simulator over real HTTP: in a background thread (tests) or blocking (CLI).

    with SimulatorServer(state) as server:
        httpx.get(f"{server.base_url}/_sim/counters")

The server itself is `simulators.common.server`; this module only puts `SalesforceApp` in it.
"""

from __future__ import annotations

from simulators.common import server as common
from simulators.salesforce.app import SalesforceApp
from simulators.salesforce.state import SalesforceState

__all__ = ["SimulatorServer"]


class SimulatorServer(common.SimulatorServer[SalesforceState]):
    """uvicorn serving `SalesforceApp(state)` in a daemon thread; `base_url` is set once it accepts connections."""

    def __init__(
        self,
        state: SalesforceState,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            SalesforceApp(state),
            host,
            port,
            log_level=log_level,
            startup_timeout=startup_timeout,
            thread_name="salesforce-simulator",
        )
