"""The kit every platform simulator is built from: HTTP drivers, faults, counters, a server.

A new platform simulator (`simulators/<name>/`) is assembled from four pieces:

1. `state.py`, the tenant with no HTTP: entities and business rules behind one lock, raising the
   platform's own exceptions. It holds `faults = FaultInjector(<Name>Faults(), random.Random(seed))`
   and `traffic = RequestCounters()`, and offers `counters()` (merging `traffic.snapshot()`),
   `reset_counters()`, `reset()` and `close()`: the `SimulatedPlatform` protocol of `app.py`.
2. `faults.py`, the typed fault settings: `class <Name>Faults(Faults)` adding the platform's own
   (a per-invoice failure, a page cap...). Latency, jitter and the seven probabilistic faults, and
   how they are drawn, come with `Faults` and `FaultInjector` (see `faults.py` here).
3. `app.py`, routing only: `class <Name>App(SimulatorApp[<Name>State])` implements `api_route`
   (method, path -> `Route(operation, handler, params)`) and `authenticate`, and overrides
   `dispatch` (its exceptions -> replies), `error_reply` (its error body) and, if it has its own
   admin routes, `admin_routes`. Counting, delays, faults, the `/_sim/` admin API (health, counters,
   faults GET/PATCH, reset), ASGI and `handle` for `httpx.MockTransport` come from the base.
4. `cli.py`, a click command building the state from options (`--seed`, `--rng-seed`, faults) and
   calling `serve(SimulatorServer(<Name>App(state), host, port), on_ready=...)`.

The `simulators` package never imports `orchestrator`: a simulator is an independent reading of
the vendor's contract. `simulators/imis/` is the worked example.
"""

from simulators.common.app import AdminRoutes, SimulatedPlatform, SimulatorApp
from simulators.common.counters import RequestCounters
from simulators.common.faults import FaultDecision, FaultInjector, FaultKind, Faults, merge_patch
from simulators.common.http import (
    HTML,
    JSON,
    Handler,
    InvalidBody,
    PathParts,
    Reply,
    Request,
    Route,
    dumps,
    json_reply,
    load_json,
)
from simulators.common.server import SimulatorServer, serve

__all__ = [
    "HTML",
    "JSON",
    "AdminRoutes",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "Faults",
    "Handler",
    "InvalidBody",
    "PathParts",
    "Reply",
    "Request",
    "RequestCounters",
    "Route",
    "SimulatedPlatform",
    "SimulatorApp",
    "SimulatorServer",
    "dumps",
    "json_reply",
    "load_json",
    "merge_patch",
    "serve",
]
