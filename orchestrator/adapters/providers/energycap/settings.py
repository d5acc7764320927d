"""How to reach one EnergyCAP datasource: `REBILL_ENERGYCAP_*` environment variables.

The API key inherits the permissions of the user who made it: reading bills, batches and tasks,
and BillsAndBatches (Edit/Create) to reverse and import. It never expires; deleting it revokes it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from orchestrator.adapters.providers.settings import ProviderSettings


class EnergyCapSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_ENERGYCAP_", extra="ignore", frozen=True)

    platform: ClassVar[str] = "EnergyCAP"
    required_fields: ClassVar[tuple[str, ...]] = ("base_url", "api_key")

    api_key: SecretStr | None = None


#: The variable an operator sets the key in; errors name it, never its value.
API_KEY_VARIABLE = EnergyCapSettings.env_name("api_key")
