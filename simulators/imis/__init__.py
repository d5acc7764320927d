"""A stateful fake of the iMIS REST API (auth, billing logs, invoices, tasks, batches, faults).

It is an independent implementation of the vendor contract: it never imports orchestrator code.

state.py     ImisState: the store, its lock and its rules (reads, Invoice/_execute, batches); no HTTP
entities.py  parties, invoices, billing logs (and their Status values), batches, task records
commands.py  what requests are parsed into (InvoiceAction, TaskRequest...)
errors.py    SimError and the refusals the HTTP layer answers (404, 409, 400, business refusals)
filters.py   the list endpoints' `?Property=operation:value` query filters
tasks.py     TaskRunner: the reverse-and-rebill task, walking its billing log 5 -> 1 -> 2 in the background
seeding.py   seed_billing (a deterministic billing and older ones) and seed_examples
store.py     the protocols seeding.py and tasks.py are typed against (ImisState fits them): no import cycle
examples.py  the seed pages' examples, as data
wire.py      iMIS's JSON both ways ($type envelopes, money, dates)
faults.py    Faults: the kit's shared faults plus iMIS's own (refusals, task pace and end, fail_invoices)
app.py       ImisApp: /token, the API routes and the /_sim admin routes, on the simulator kit
server.py    SimulatorServer: the app on uvicorn in a thread
cli.py       `rebill simulate imis`
"""

from simulators.imis.app import ImisApp
from simulators.imis.faults import FaultInjector, Faults
from simulators.imis.seeding import SeededBilling
from simulators.imis.server import SimulatorServer, serve
from simulators.imis.state import ImisState

__all__ = ["FaultInjector", "Faults", "ImisApp", "ImisState", "SeededBilling", "SimulatorServer", "serve"]
