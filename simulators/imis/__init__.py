"""A stateful fake of the iMIS REST API (auth, billing logs, invoices, tasks, batches, faults).

It is an independent implementation of the vendor contract: it never imports orchestrator code.
"""

from simulators.imis.app import ImisApp
from simulators.imis.faults import FaultInjector, Faults
from simulators.imis.server import SimulatorServer, serve
from simulators.imis.state import ImisState, SeededBilling

__all__ = ["FaultInjector", "Faults", "ImisApp", "ImisState", "SeededBilling", "SimulatorServer", "serve"]
