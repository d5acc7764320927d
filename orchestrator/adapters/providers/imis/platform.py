"""iMIS's entry in the provider registry."""

from __future__ import annotations

from orchestrator.adapters.providers.imis.api import ImisApi
from orchestrator.adapters.providers.imis.client import ImisClient
from orchestrator.adapters.providers.imis.options import ImisOptions, ImisSelector
from orchestrator.adapters.providers.imis.provider import ImisProvider
from orchestrator.adapters.providers.imis.settings import ImisSettings
from orchestrator.adapters.providers.platform import Connection, Platform
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider


def defaults(settings: ProviderSettings) -> ImisOptions:
    assert isinstance(settings, ImisSettings)
    return ImisOptions(
        adjustment_reason=settings.adjustment_reason,
        do_not_cancel_membership=settings.do_not_cancel_membership,
        automatically_post_batch=settings.automatically_post_batch,
        post_unposted_batch=settings.post_unposted_batch,
    )


def build(settings: ProviderSettings, connection: Connection) -> BillingProvider:
    assert isinstance(settings, ImisSettings)
    assert settings.username is not None
    assert settings.password is not None
    client = ImisClient(
        base_url=settings.base(),
        username=settings.username,
        password=settings.password,
        transport=connection.transport,
        timeout=connection.timeout,
        observer=connection.observer,
    )
    return ImisProvider(ImisApi(client, page_size=settings.page_size), defaults=defaults(settings))


PLATFORM = Platform(
    name="imis",
    settings=ImisSettings,
    build=build,
    selector=ImisSelector,
    options=ImisOptions,
    defaults=defaults,
)
