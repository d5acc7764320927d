"""What every provider's settings share: how to reach a tenant and how hard to push it.

Each provider package subclasses `ProviderSettings` with its own `REBILL_<NAME>_` prefix and adds its
credentials; `required` names what is missing, so a half-configured provider says which variable
to set instead of failing on its first call.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AnyHttpUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.domain.errors import ConfigurationError

PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class ProviderSettings(BaseSettings):
    """One tenant of one platform. Subclasses set `env_prefix` (e.g. `REBILL_ARIA_`) and `platform`."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    #: The platform's name as users read it in errors ("Aria", "EnergyCAP").
    platform: ClassVar[str] = ""
    #: The settings (field names) that must be set before anything is called.
    required_fields: ClassVar[tuple[str, ...]] = ()

    base_url: AnyHttpUrl | None = None
    timeout_seconds: PositiveFloat = 30.0
    connect_timeout_seconds: PositiveFloat = 5.0
    max_concurrency: PositiveInt = 4
    rate_limit: PositiveFloat | None = Field(None, description="requests per second, all workers")
    slot_lease_seconds: PositiveFloat = Field(
        20.0, description="how long a killed worker's tenant slot stays taken (live ones are renewed)"
    )
    slot_handoff_seconds: NonNegativeFloat = Field(
        1.0,
        description="a worker's threads pass a slot among themselves for this long before it goes back "
        "through Redis to every worker; 0 = always through Redis",
    )

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of one field, e.g. REBILL_ARIA_AUTH_KEY."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @property
    def configured(self) -> bool:
        """Every required setting is present (the provider can be called)."""
        return not self.missing()

    def base(self) -> str:
        """The tenant's URL without a trailing slash (set: `require()` passed)."""
        if self.base_url is None:
            raise ConfigurationError(f"{self.env_name('base_url')} must be set to talk to {self.platform}")
        return str(self.base_url).rstrip("/")

    def missing(self) -> list[str]:
        return [self.env_name(name) for name in self.required_fields if not getattr(self, name)]

    def require(self) -> None:
        """ConfigurationError naming every missing variable."""
        missing = self.missing()
        if missing:
            raise ConfigurationError(f"{', '.join(missing)} must be set to talk to {self.platform or 'the platform'}")
