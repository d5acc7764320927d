"""The iMIS (ASI) provider: typed REST client, seed-page envelopes, error classification.

client.py     ImisClient: one tenant over an injected httpx transport, token handling, ApiCall reports
api.py        ImisApi: the tenant in iMIS's own types (model.py) over ImisClient
provider.py   ImisProvider: the BillingProvider port (orchestrator.services.ports) over ImisApi
options.py    what a run asks for (selector, options) and what the provider keeps between steps
settings.py   REBILL_IMIS_* and iMIS's run defaults
platform.py   iMIS's entry in the provider registry
envelopes.py  pure builders of request bodies, byte-compatible with ASI's examples
wire.py       pydantic models of what iMIS sends back (tolerant reading)
errors.py     classify(): one exchange -> the typed error of orchestrator.domain.errors
"""

from orchestrator.adapters.providers.imis import envelopes, wire
from orchestrator.adapters.providers.imis.api import ImisApi, to_batch, to_billing_log, to_invoice
from orchestrator.adapters.providers.imis.client import ImisClient, next_page_offset
from orchestrator.adapters.providers.imis.errors import (
    classify,
    outcome_of,
    parse_retry_after,
    protocol_error,
)
from orchestrator.adapters.providers.imis.platform import PLATFORM
from orchestrator.adapters.providers.imis.provider import ImisProvider

__all__ = [
    "PLATFORM",
    "ImisApi",
    "ImisClient",
    "ImisProvider",
    "classify",
    "envelopes",
    "next_page_offset",
    "outcome_of",
    "parse_retry_after",
    "protocol_error",
    "to_batch",
    "to_billing_log",
    "to_invoice",
    "wire",
]
