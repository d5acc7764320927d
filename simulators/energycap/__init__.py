"""A stateful fake of the EnergyCAP API (keys, bills, batches, reversal, import tasks, kickouts, faults).

It is an independent reading of the vendor contract (reference/energycap-api.md): it never imports
orchestrator code. Built on the simulator kit (`simulators/common`).

state.py       EnergyCapState: entities and rules, no HTTP; seeding; counters
filters.py     the decided `filter=` subset, parsed and evaluated
import_csv.py  the import file as the server reads it (kickout rules)
wire.py        JSON both ways
app.py         EnergyCapApp: routes of the contract on the kit's SimulatorApp
faults.py      EnergyCapFaults: the kit's faults plus import time, kickouts, page cap
corrected.py   a corrected-bills CSV for a seeded period (demos, tests)
cli.py         `rebill simulate energycap`
"""

from simulators.energycap.app import EnergyCapApp
from simulators.energycap.corrected import corrected_bills_csv, write_corrected_bills
from simulators.energycap.faults import EnergyCapFaults
from simulators.energycap.state import EnergyCapState, SeededPeriod

__all__ = [
    "EnergyCapApp",
    "EnergyCapFaults",
    "EnergyCapState",
    "SeededPeriod",
    "corrected_bills_csv",
    "write_corrected_bills",
]
