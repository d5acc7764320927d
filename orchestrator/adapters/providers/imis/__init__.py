"""The iMIS (ASI) provider: typed REST client, seed-page envelopes, error classification.

client.py     ImisClient: one tenant over an injected httpx transport, token handling, ApiCall reports
provider.py   ImisProvider: the BillingProvider port (orchestrator.services.ports) over ImisClient
envelopes.py  pure builders of request bodies, byte-compatible with ASI's examples
wire.py       pydantic models of what iMIS sends back (tolerant reading)
errors.py     classify(): one exchange -> the typed error of orchestrator.domain.errors
"""

from orchestrator.adapters.providers.imis import envelopes, wire
from orchestrator.adapters.providers.imis.client import ImisClient, next_page_offset
from orchestrator.adapters.providers.imis.errors import (
    classify,
    outcome_of,
    parse_retry_after,
    protocol_error,
)
from orchestrator.adapters.providers.imis.provider import ImisProvider, to_batch, to_billing_log, to_invoice

__all__ = [
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
