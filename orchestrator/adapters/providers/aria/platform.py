"""Aria's entry in the provider registry."""

from __future__ import annotations

from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.adapters.providers.aria.options import AriaOptions, AriaSelector
from orchestrator.adapters.providers.aria.provider import AriaProvider
from orchestrator.adapters.providers.aria.settings import AriaSettings
from orchestrator.adapters.providers.platform import Connection, Platform
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider


def build(settings: ProviderSettings, connection: Connection) -> BillingProvider:
    assert isinstance(settings, AriaSettings)
    assert settings.client_no is not None
    assert settings.auth_key is not None
    client = AriaClient(
        base_url=settings.base(),
        client_no=settings.client_no,
        auth_key=settings.auth_key,
        transport=connection.transport,
        timeout=connection.timeout,
        observer=connection.observer,
    )
    return AriaProvider(client, page_size=settings.page_size, reads_at_once=settings.max_concurrency)


PLATFORM = Platform(
    name="aria",
    settings=AriaSettings,
    build=build,
    selector=AriaSelector,
    options=AriaOptions,
)
