"""Run the Salesforce simulator over real HTTP: the kit's server with `SalesforceApp` in it.

with simulator_server(state) as server:
    httpx.get(f"{server.base_url}/_sim/counters")
"""

from __future__ import annotations

from simulators.common.server import SimulatorServer
from simulators.salesforce.app import SalesforceApp
from simulators.salesforce.state import SalesforceState

__all__ = ["simulator_server"]


def simulator_server(
    state: SalesforceState, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> SimulatorServer[SalesforceState]:
    """uvicorn serving `SalesforceApp(state)` in a daemon thread, once started (`with` or `.start()`)."""
    return SimulatorServer(SalesforceApp(state), host, port, log_level=log_level, thread_name="salesforce-simulator")
