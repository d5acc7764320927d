"""EnergyCAP's entry in the provider registry."""

from __future__ import annotations

from orchestrator.adapters.providers.energycap.client import EnergyCapClient
from orchestrator.adapters.providers.energycap.options import EnergyCapOptions, EnergyCapRetry, EnergyCapSelector
from orchestrator.adapters.providers.energycap.provider import EnergyCapProvider
from orchestrator.adapters.providers.energycap.settings import EnergyCapSettings
from orchestrator.adapters.providers.platform import Connection, Platform
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider

#: Bills per reverse call when the run does not say (EnergyCAP takes up to 1,000).
DEFAULT_CHUNK_SIZE = 500


def defaults(settings: ProviderSettings) -> EnergyCapOptions:
    return EnergyCapOptions()


def build(settings: ProviderSettings, connection: Connection) -> BillingProvider:
    assert isinstance(settings, EnergyCapSettings)
    assert settings.api_key is not None
    client = EnergyCapClient(
        base_url=settings.base(),
        api_key=settings.api_key,
        transport=connection.transport,
        timeout=connection.timeout,
        observer=connection.observer,
    )
    return EnergyCapProvider(client)


PLATFORM = Platform(
    name="energycap",
    settings=EnergyCapSettings,
    build=build,
    selector=EnergyCapSelector,
    options=EnergyCapOptions,
    defaults=defaults,
    retry_options=EnergyCapRetry,
    default_chunk_size=DEFAULT_CHUNK_SIZE,
)
