"""Every platform's simulator, started over loopback HTTP for a test deployment, with the settings that
point rebill at it. One function per platform: a new platform adds one here (and one fixture in the
provider contract suite, `tests/providers/`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from simulators.aria import AriaApp, AriaState
from simulators.common import SimulatorServer
from simulators.energycap.app import EnergyCapApp
from simulators.energycap.state import EnergyCapState
from simulators.imis.server import SimulatorServer as ImisServer
from simulators.imis.state import ImisState
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState

SECRET = f"secret-{uuid.uuid4().hex}"


@dataclass
class Simulated:
    """One platform's simulator as a running deployment sees it."""

    name: str
    state: Any
    base_url: str
    env: dict[str, str]  # REBILL_<NAME>_* for rebill

    def variable(self, field: str) -> str:
        return f"REBILL_{self.name.upper()}_{field.upper()}"


def _started(cleanup: ExitStack, server: Any) -> str:
    cleanup.enter_context(server)
    return str(server.base_url)


def imis(cleanup: ExitStack) -> Simulated:
    state = ImisState(username="rebill-test", password=SECRET)
    cleanup.callback(state.close)
    url = _started(cleanup, ImisServer(state))
    env = {"REBILL_IMIS_BASE_URL": url, "REBILL_IMIS_USERNAME": "rebill-test", "REBILL_IMIS_PASSWORD": SECRET}
    return Simulated("imis", state, url, env)


def aria(cleanup: ExitStack) -> Simulated:
    state = AriaState(client_no=7_000_123, auth_key=SECRET)
    cleanup.callback(state.close)
    url = _started(cleanup, SimulatorServer(AriaApp(state)))
    env = {"REBILL_ARIA_BASE_URL": url, "REBILL_ARIA_CLIENT_NO": "7000123", "REBILL_ARIA_AUTH_KEY": SECRET}
    return Simulated("aria", state, url, env)


def salesforce(cleanup: ExitStack) -> Simulated:
    state = SalesforceState(client_id="rebill-test", client_secret=SECRET)
    cleanup.callback(state.close)
    url = _started(cleanup, simulator_server(state))
    env = {
        "REBILL_SALESFORCE_BASE_URL": url,
        "REBILL_SALESFORCE_CLIENT_ID": "rebill-test",
        "REBILL_SALESFORCE_CLIENT_SECRET": SECRET,
        "REBILL_SALESFORCE_USAGE_RECHECK_SECONDS": "0.5",  # a paused run resumes within a test's patience
        "REBILL_SALESFORCE_GENERATE_SETTLE_SECONDS": "1",
    }
    return Simulated("salesforce", state, url, env)


def energycap(cleanup: ExitStack) -> Simulated:
    state = EnergyCapState(api_key=SECRET)
    cleanup.callback(state.close)
    url = _started(cleanup, SimulatorServer(EnergyCapApp(state)))
    env = {"REBILL_ENERGYCAP_BASE_URL": url, "REBILL_ENERGYCAP_API_KEY": SECRET}
    return Simulated("energycap", state, url, env)


SIMULATED: dict[str, Callable[[ExitStack], Simulated]] = {
    "imis": imis,
    "aria": aria,
    "salesforce": salesforce,
    "energycap": energycap,
}


def tuning(name: str, **values: str) -> dict[str, str]:
    """`REBILL_<NAME>_<KEY>` for each value, e.g. short timeouts for every platform of a deployment."""
    return {f"REBILL_{name.upper()}_{key.upper()}": value for key, value in values.items()}
