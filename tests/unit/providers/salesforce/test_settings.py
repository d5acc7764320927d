"""REBILL_SALESFORCE_* settings: defaults, what is required, and the secret kept secret."""

from __future__ import annotations

import pydantic
import pytest

from orchestrator.adapters.providers.salesforce.settings import SalesforceSettings
from orchestrator.domain.errors import ConfigurationError


def test_defaults_and_the_missing_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET", "API_VERSION", "USAGE_PAUSE_AT", "MAX_CONCURRENCY"):
        monkeypatch.delenv(f"REBILL_SALESFORCE_{name}", raising=False)
    settings = SalesforceSettings()
    assert (settings.api_version, settings.usage_pause_at, settings.max_concurrency) == ("v62.0", 0.9, 8)
    assert settings.missing() == [
        "REBILL_SALESFORCE_BASE_URL",
        "REBILL_SALESFORCE_CLIENT_ID",
        "REBILL_SALESFORCE_CLIENT_SECRET",
    ]
    with pytest.raises(ConfigurationError, match=r"REBILL_SALESFORCE_CLIENT_SECRET.*Salesforce"):
        settings.require()


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_SALESFORCE_BASE_URL", "https://acme.my.salesforce.com")
    monkeypatch.setenv("REBILL_SALESFORCE_CLIENT_ID", "3MVG9")
    monkeypatch.setenv("REBILL_SALESFORCE_CLIENT_SECRET", "very-secret")
    monkeypatch.setenv("REBILL_SALESFORCE_API_VERSION", "v63.0")
    monkeypatch.setenv("REBILL_SALESFORCE_USAGE_PAUSE_AT", "0.8")
    monkeypatch.setenv("REBILL_SALESFORCE_MAX_CONCURRENCY", "12")
    settings = SalesforceSettings()
    settings.require()
    assert settings.configured
    assert (settings.api_version, settings.usage_pause_at, settings.max_concurrency) == ("v63.0", 0.8, 12)
    assert "very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"), [("API_VERSION", "62.0"), ("USAGE_PAUSE_AT", "1.5"), ("USAGE_PAUSE_AT", "0")]
)
def test_bad_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"REBILL_SALESFORCE_{name}", value)
    with pytest.raises(pydantic.ValidationError):
        SalesforceSettings()


def test_the_org_s_time_zone_and_the_follow_up_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIME_ZONE", "USAGE_RECHECK_SECONDS", "GENERATE_SETTLE_SECONDS"):
        monkeypatch.delenv(f"REBILL_SALESFORCE_{name}", raising=False)
    defaults = SalesforceSettings()
    assert (defaults.time_zone, defaults.usage_recheck_seconds, defaults.generate_settle_seconds) == ("UTC", 30, 10)
    monkeypatch.setenv("REBILL_SALESFORCE_TIME_ZONE", "America/New_York")
    assert str(SalesforceSettings().zone()) == "America/New_York"
    monkeypatch.setenv("REBILL_SALESFORCE_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(pydantic.ValidationError, match="not a time zone name"):
        SalesforceSettings()
