"""The fake platform of the service tests (`tests/fakes.py`) as a platform package: its settings, how
it is built, and what its runs take. `test_registry.py` adds it to rebill with one registry line and
nothing else, the way a new platform joins."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from orchestrator.adapters.providers.platform import Connection, Platform
from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider
from tests.fakes import FakeProvider

#: Tenants by base URL: the platform's "servers" (the fake keeps its state in memory).
TENANTS: dict[str, FakeProvider] = {}


class FakeSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_FAKE_")

    platform: ClassVar[str] = "Fake"
    required_fields: ClassVar[tuple[str, ...]] = ("base_url",)


class FakeSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")

    billing: str = Field(description="The fake billing to reverse and rebill.")


class FakeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release_held: bool = Field(False, description="Release a held job instead of waiting for an operator.")


def build(settings: ProviderSettings, connection: Connection) -> BillingProvider:
    tenant = TENANTS[settings.base()]
    tenant.observer = connection.observer
    return tenant


PLATFORM = Platform(
    name="fake",
    settings=FakeSettings,
    build=build,
    selector=FakeSelector,
    options=FakeOptions,
    defaults=lambda _settings: FakeOptions(),
)
