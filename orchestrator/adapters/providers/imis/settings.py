"""iMIS's settings: `REBILL_IMIS_*` (names unchanged since iMIS was the only platform), and the run
defaults of its reversals and rebill (`REBILL_ADJUSTMENT_REASON` and friends, kept as they were)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from orchestrator.adapters.providers.settings import PositiveInt, ProviderSettings


class ImisSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="REBILL_IMIS_", extra="ignore", frozen=True, populate_by_name=True)

    platform: ClassVar[str] = "iMIS"
    required_fields: ClassVar[tuple[str, ...]] = ("base_url", "username", "password")

    username: str | None = None
    password: SecretStr | None = None
    page_size: PositiveInt = Field(500, description="invoices asked per page (the server may cap it)")

    adjustment_reason: str = Field(
        "Reverse and rebill", validation_alias=AliasChoices("REBILL_ADJUSTMENT_REASON", "REBILL_IMIS_ADJUSTMENT_REASON")
    )
    do_not_cancel_membership: bool = Field(
        True,
        validation_alias=AliasChoices("REBILL_DO_NOT_CANCEL_MEMBERSHIP", "REBILL_IMIS_DO_NOT_CANCEL_MEMBERSHIP"),
    )
    automatically_post_batch: bool = Field(
        True,
        validation_alias=AliasChoices("REBILL_AUTOMATICALLY_POST_BATCH", "REBILL_IMIS_AUTOMATICALLY_POST_BATCH"),
    )
    post_unposted_batch: bool = Field(
        True, validation_alias=AliasChoices("REBILL_POST_UNPOSTED_BATCH", "REBILL_IMIS_POST_UNPOSTED_BATCH")
    )
