"""How to reach one Salesforce org: `REBILL_SALESFORCE_*` environment variables.

`REBILL_SALESFORCE_BASE_URL` is the org's My Domain URL; every call goes there (the token's
`instance_url` is not followed). The client id and secret are a connected app's, enabled for the
client-credentials flow with a run-as user holding the billing permission sets (Void a Posted
Invoice API, Generate Invoices From Billing Schedule API, Manage Errors Using Invoice Error Recovery
API). A run pauses at `REBILL_SALESFORCE_USAGE_PAUSE_AT` of the daily API allocation.
`REBILL_SALESFORCE_TIME_ZONE` is the org's default time zone (Setup, Company Information): a run's
generate dates default to today there. The tenant-limit trio and the timeouts come from
`ProviderSettings`; the cap defaults to 8 of the org's 25 long-running requests.
"""

from __future__ import annotations

from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from orchestrator.adapters.providers.settings import NonNegativeFloat, PositiveFloat, PositiveInt, ProviderSettings

__all__ = ["SalesforceSettings"]


class SalesforceSettings(ProviderSettings):
    """One org, reached with the OAuth client-credentials flow of a connected app."""

    model_config = SettingsConfigDict(env_prefix="REBILL_SALESFORCE_")

    platform: ClassVar[str] = "Salesforce"
    required_fields: ClassVar[tuple[str, ...]] = ("base_url", "client_id", "client_secret")

    client_id: str | None = Field(None, description="the connected app's consumer key")
    client_secret: SecretStr | None = Field(None, description="the connected app's consumer secret")
    api_version: str = Field("v62.0", pattern=r"^v\d+\.\d$", description="resources under /services/data/<version>")
    usage_pause_at: float = Field(
        0.9, gt=0, le=1, description="share of the daily API allocation (Sforce-Limit-Info) at which a run pauses"
    )
    usage_recheck_seconds: PositiveFloat = Field(
        30.0, description="while paused, how often a worker reads the usage again (one cheap query)"
    )
    max_concurrency: PositiveInt = 8
    time_zone: str = Field("UTC", description="the org's default time zone (IANA name): today's date for a run")
    generate_settle_seconds: NonNegativeFloat = Field(
        10.0,
        description="a generate call whose answer was lost counts as not applied only when its schedules still "
        "show nothing this long after it was sent (a real org may lag)",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value[:40]!r} is not a time zone name such as America/New_York") from None
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)
