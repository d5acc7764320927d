"""Salesforce's entry in the provider registry."""

from __future__ import annotations

from orchestrator.adapters.providers.platform import Connection, Platform
from orchestrator.adapters.providers.salesforce.client import SalesforceClient
from orchestrator.adapters.providers.salesforce.options import SalesforceOptions, SalesforceSelector
from orchestrator.adapters.providers.salesforce.provider import SalesforceProvider
from orchestrator.adapters.providers.salesforce.settings import SalesforceSettings
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider


def defaults(settings: ProviderSettings) -> SalesforceOptions:
    return SalesforceOptions()


def build(settings: ProviderSettings, connection: Connection) -> BillingProvider:
    assert isinstance(settings, SalesforceSettings)
    assert settings.client_id is not None
    assert settings.client_secret is not None
    client = SalesforceClient(
        base_url=settings.base(),
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        api_version=settings.api_version,
        transport=connection.transport,
        timeout=connection.timeout,
        observer=connection.observer,
    )
    return SalesforceProvider(
        client,
        usage_pause_at=settings.usage_pause_at,
        time_zone=settings.zone(),
        generate_settle_seconds=settings.generate_settle_seconds,
        usage_recheck_seconds=settings.usage_recheck_seconds,
    )


PLATFORM = Platform(
    name="salesforce",
    settings=SalesforceSettings,
    build=build,
    selector=SalesforceSelector,
    options=SalesforceOptions,
    defaults=defaults,
)
