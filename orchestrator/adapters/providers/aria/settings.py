"""How to reach one Aria client (tenant): `REBILL_ARIA_*` variables.

`REBILL_ARIA_BASE_URL` is the host's root, e.g. `https://secure.ariasystems.net` (the client adds
`/v1/core` and `/api/AriaQuery/objects.php`); `REBILL_ARIA_CLIENT_NO` and `REBILL_ARIA_AUTH_KEY` go in
every request body. The tenant-limit trio (`_MAX_CONCURRENCY`, `_RATE_LIMIT`, `_SLOT_LEASE_SECONDS`)
and the timeouts come from `ProviderSettings`: Aria publishes no rate limit, so the cap is ours.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from orchestrator.adapters.providers.settings import PositiveInt, ProviderSettings

__all__ = ["AriaSettings"]


class AriaSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_ARIA_")

    platform: ClassVar[str] = "Aria"
    required_fields: ClassVar[tuple[str, ...]] = ("base_url", "client_no", "auth_key")

    client_no: PositiveInt | None = None
    auth_key: SecretStr | None = None
    page_size: PositiveInt = Field(500, description="invoices asked per object-query page (Aria caps it at 1000)")
