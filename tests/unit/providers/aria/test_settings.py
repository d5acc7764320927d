"""REBILL_ARIA_* settings: credentials required by name, the tenant-limit trio from the base."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.adapters.providers.aria.settings import AriaSettings
from orchestrator.domain.errors import ConfigurationError


def test_reads_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_ARIA_BASE_URL", "https://secure.future.stage.ariasystems.net")
    monkeypatch.setenv("REBILL_ARIA_CLIENT_NO", "7000123")
    monkeypatch.setenv("REBILL_ARIA_AUTH_KEY", "k3y-that-stays-secret")
    monkeypatch.setenv("REBILL_ARIA_MAX_CONCURRENCY", "6")
    monkeypatch.setenv("REBILL_ARIA_RATE_LIMIT", "25")
    monkeypatch.setenv("REBILL_ARIA_SLOT_LEASE_SECONDS", "15")
    monkeypatch.setenv("REBILL_IMIS_MAX_CONCURRENCY", "99")
    settings = AriaSettings()
    assert settings.configured
    assert (settings.client_no, settings.max_concurrency, settings.rate_limit, settings.slot_lease_seconds) == (
        7000123,
        6,
        25.0,
        15.0,
    )
    assert str(settings.base_url).startswith("https://secure.future.stage.ariasystems.net")
    assert "k3y-that-stays-secret" not in repr(settings)
    assert settings.auth_key is not None
    assert settings.auth_key.get_secret_value() == "k3y-that-stays-secret"


def test_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASE_URL", "CLIENT_NO", "AUTH_KEY"):
        monkeypatch.delenv(f"REBILL_ARIA_{name}", raising=False)
    monkeypatch.setenv("REBILL_ARIA_CLIENT_NO", "7000123")
    settings = AriaSettings()
    assert not settings.configured
    with pytest.raises(
        ConfigurationError, match="REBILL_ARIA_BASE_URL, REBILL_ARIA_AUTH_KEY must be set to talk to Aria"
    ):
        settings.require()


def test_a_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_ARIA_CLIENT_NO", "not-a-number")
    with pytest.raises(ValidationError, match="client_no"):
        AriaSettings()
