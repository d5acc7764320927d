"""Salesforce Revenue Cloud Billing: the client (OAuth client credentials, SOQL subset, void, generate,
recover), its wire models, error table and settings. The contract is
`../shared/reference/salesforce-billing-api.md`."""

from orchestrator.adapters.providers.salesforce.client import SalesforceClient
from orchestrator.adapters.providers.salesforce.errors import (
    AllocationExhausted,
    CredentialsRejected,
    QueryLocatorExpired,
)
from orchestrator.adapters.providers.salesforce.settings import SalesforceSettings

__all__ = [
    "AllocationExhausted",
    "CredentialsRejected",
    "QueryLocatorExpired",
    "SalesforceClient",
    "SalesforceSettings",
]
