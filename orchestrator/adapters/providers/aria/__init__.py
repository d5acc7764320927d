"""The Aria Billing Cloud provider: the port over typed calls, error classification, corrections.

client.py       AriaClient: one tenant over an injected httpx transport (via the kit's ApiChannel):
                get_invoice_information / iter_invoice_pages, get_invoice_details, get_invoice_history,
                gen_rb_m; ApiCall reports; the auth_key never shown
wire.py         pydantic models of what Aria sends back (tolerant reading), RebillLineItem to send
errors.py       classify(): one exchange -> the typed error of orchestrator.domain.errors; Aria's
                error_code carried by the AriaCodedError subclasses
queries.py      object-query strings, limited to the contract's decided subset
corrections.py  the corrections CSV, and the rb_line_items it makes of an invoice's lines
settings.py     AriaSettings: REBILL_ARIA_* (base URL, client_no, auth_key, the tenant-limit trio)
options.py      AriaSelector / AriaOptions (what `rebill run` asks), AriaSelection and AriaKept (what is stored)
eligibility.py  which invoices a run rebills, and the skip reasons of the others
provider.py     AriaProvider: the BillingProvider port (open, plan, settle, prepare, apply, preview)
platform.py     PLATFORM: Aria's entry in the provider registry
"""

from orchestrator.adapters.providers.aria import wire
from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.adapters.providers.aria.corrections import (
    Corrections,
    CorrectionsError,
    RebillLines,
    load_corrections,
    parse_corrections,
    rebill_lines,
)
from orchestrator.adapters.providers.aria.errors import (
    AriaAuthError,
    AriaBusyError,
    AriaCode,
    AriaCodedError,
    AriaNotFoundError,
    AriaRefusedError,
    AriaUnexpectedError,
    classify,
    error_code_of,
)
from orchestrator.adapters.providers.aria.platform import PLATFORM
from orchestrator.adapters.providers.aria.provider import AriaProvider
from orchestrator.adapters.providers.aria.queries import InvoiceQuery, bill_run, one_invoice
from orchestrator.adapters.providers.aria.settings import AriaSettings

__all__ = [
    "PLATFORM",
    "AriaAuthError",
    "AriaBusyError",
    "AriaClient",
    "AriaCode",
    "AriaCodedError",
    "AriaNotFoundError",
    "AriaProvider",
    "AriaRefusedError",
    "AriaSettings",
    "AriaUnexpectedError",
    "Corrections",
    "CorrectionsError",
    "InvoiceQuery",
    "RebillLines",
    "bill_run",
    "classify",
    "error_code_of",
    "load_corrections",
    "one_invoice",
    "parse_corrections",
    "rebill_lines",
    "wire",
]
