"""A stateful fake of Aria Billing Cloud's calls a rebill run makes (object query, invoice details,
invoice history, gen_rb_m), with seeding, faults and counters.

It is an independent implementation of the vendor contract (`reference/aria-api.md`): it never
imports orchestrator code.

state.py    AriaState: accounts, invoices and lines, gen_rb_m's rules, the query and history; no HTTP
seeding.py  seed_bill_run: a deterministic bill run (open, paid, part-paid, voided, rebilled) and an older one
wire.py     request bodies and parameters in (each refusal with its error_code), replies out
faults.py   AriaFaults: the kit's shared faults plus 3108 busy, 1001 and the page cap
app.py      AriaApp: the three paths, the four calls, the admin routes, on the simulator kit
cli.py      `rebill simulate aria`
"""

from simulators.aria.app import AriaApp
from simulators.aria.faults import AriaFaultInjector, AriaFaults, RebillFault
from simulators.aria.seeding import DEFAULT_BILL_DATE, SeededRun, seed_bill_run
from simulators.aria.state import AriaError, AriaState, ErrorCode

__all__ = [
    "DEFAULT_BILL_DATE",
    "AriaApp",
    "AriaError",
    "AriaFaultInjector",
    "AriaFaults",
    "AriaState",
    "ErrorCode",
    "RebillFault",
    "SeededRun",
    "seed_bill_run",
]
