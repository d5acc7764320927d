"""REBILL_ENERGYCAP_* settings: what must be set, named by its variable, the key kept secret."""

from __future__ import annotations

import pytest

from orchestrator.adapters.providers.energycap.settings import API_KEY_VARIABLE, EnergyCapSettings
from orchestrator.domain.errors import ConfigurationError


def test_nothing_set_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REBILL_ENERGYCAP_BASE_URL", raising=False)
    monkeypatch.delenv("REBILL_ENERGYCAP_API_KEY", raising=False)
    settings = EnergyCapSettings()
    assert not settings.configured
    with pytest.raises(ConfigurationError) as missing:
        settings.require()
    assert str(missing.value) == (
        "REBILL_ENERGYCAP_BASE_URL, REBILL_ENERGYCAP_API_KEY must be set to talk to EnergyCAP"
    )


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_ENERGYCAP_BASE_URL", "https://app.energycap.com")
    monkeypatch.setenv("REBILL_ENERGYCAP_API_KEY", "k-123456789")
    monkeypatch.setenv("REBILL_ENERGYCAP_MAX_CONCURRENCY", "6")
    settings = EnergyCapSettings()
    settings.require()
    assert (settings.base(), settings.max_concurrency) == ("https://app.energycap.com", 6)
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "k-123456789"
    assert "k-123456789" not in repr(settings)
    assert API_KEY_VARIABLE == "REBILL_ENERGYCAP_API_KEY"
