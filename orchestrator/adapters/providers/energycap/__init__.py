"""The EnergyCAP provider: the port over a typed REST client, filters, wire models, errors, the rebill file.

provider.py     EnergyCapProvider: the BillingProvider port (orchestrator.services.ports), a chunk per call
options.py      what a run asks for (selector, options, retry) and what it stores and keeps
platform.py     EnergyCAP's entry in the provider registry
client.py       EnergyCapClient: one datasource over an injected httpx transport (the kit's ApiChannel)
filters.py      a typed builder of the decided `filter=` subset (safe quoting, lists of at most 100)
wire.py         pydantic models of what EnergyCAP sends back (tolerant reading, Decimal money)
errors.py       classify(): one reply -> the typed error of orchestrator.domain.errors (BatchCodeInUse)
rebill_file.py  the corrected-bills CSV a user hands to a run, read and checked into typed rows
settings.py     EnergyCapSettings: REBILL_ENERGYCAP_BASE_URL, REBILL_ENERGYCAP_API_KEY, the tenant limits
"""

from orchestrator.adapters.providers.energycap.client import EnergyCapClient, Page
from orchestrator.adapters.providers.energycap.errors import BatchCodeInUse, classify
from orchestrator.adapters.providers.energycap.filters import Field, Filter, Op, chunked, where
from orchestrator.adapters.providers.energycap.platform import PLATFORM
from orchestrator.adapters.providers.energycap.provider import EnergyCapProvider
from orchestrator.adapters.providers.energycap.rebill_file import (
    CorrectedBill,
    RebillFile,
    RebillFileError,
    import_csv,
    read_rebill_file,
)
from orchestrator.adapters.providers.energycap.settings import EnergyCapSettings

__all__ = [
    "PLATFORM",
    "BatchCodeInUse",
    "CorrectedBill",
    "EnergyCapClient",
    "EnergyCapProvider",
    "EnergyCapSettings",
    "Field",
    "Filter",
    "Op",
    "Page",
    "RebillFile",
    "RebillFileError",
    "chunked",
    "classify",
    "import_csv",
    "read_rebill_file",
    "where",
]
