"""Salesforce Revenue Cloud Billing: void a bad invoice run and generate it again from its billing schedules.
The contract is `../shared/reference/salesforce-billing-api.md`.

client.py       SalesforceClient: one org over an injected httpx transport (OAuth client credentials,
                the SOQL subset, void, generate, recover), ApiCall reports, the API usage header read
soql.py         the typed SOQL builder: nothing outside the contract's subset, nothing injected
wire.py         pydantic models of what Salesforce sends back (tolerant reading, money as Decimal)
errors.py       classify(): one exchange -> the typed error of orchestrator.domain.errors
eligibility.py  the contract's five rules: which invoices may be voided, else why not
verdicts.py     what planning reads per 200 invoices (lines, schedules, the invoices on them), and
                each invoice's verdict from it: no I/O (the provider and the bench's bare loop run it)
usage.py        UsageGate: pause a run at a share of the org's daily API allocation, resume below it
provider.py     SalesforceProvider: the BillingProvider port (orchestrator.services.ports)
options.py      what a run asks for (selector, options) and what the provider keeps between steps
settings.py     REBILL_SALESFORCE_*
platform.py     Salesforce's entry in the provider registry
"""

from orchestrator.adapters.providers.salesforce.client import SalesforceClient
from orchestrator.adapters.providers.salesforce.errors import (
    AllocationExhausted,
    CredentialsRejected,
    QueryLocatorExpired,
)
from orchestrator.adapters.providers.salesforce.platform import PLATFORM
from orchestrator.adapters.providers.salesforce.provider import SalesforceProvider
from orchestrator.adapters.providers.salesforce.settings import SalesforceSettings

__all__ = [
    "PLATFORM",
    "AllocationExhausted",
    "CredentialsRejected",
    "QueryLocatorExpired",
    "SalesforceClient",
    "SalesforceProvider",
    "SalesforceSettings",
]
