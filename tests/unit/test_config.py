"""The settings: every bad value named by its variable, and the values derived from them."""

from __future__ import annotations

import pytest

from orchestrator.config import load_settings
from orchestrator.domain.errors import ConfigurationError


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REBILL_CHUNK_SIZE", "0"),
        ("REBILL_IMIS_MAX_CONCURRENCY", "many"),
        ("REBILL_IMIS_BASE_URL", "not a url"),
        ("REBILL_LOG_FORMAT", "xml"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings()


def test_missing_tenant_settings_are_named() -> None:
    settings = load_settings(imis_base_url=None, imis_username=None, imis_password=None)

    assert "imis" not in settings.configured_providers()
    with pytest.raises(ConfigurationError, match="REBILL_IMIS_BASE_URL, REBILL_IMIS_USERNAME, REBILL_IMIS_PASSWORD"):
        settings.provider("imis").require()


@pytest.mark.parametrize(
    ("cap", "window", "expected"),
    [(4, None, 16), (8, None, 16), (24, None, 48), (24, 30, 30)],
    ids=["default-cap", "cap-8", "cap-24-follows-the-cap", "set-explicitly"],
)
def test_the_dispatch_window_lets_a_run_use_every_slot(cap: int, window: int | None, expected: int) -> None:
    # Each chunk in the broker has at most one call in flight: fewer chunks than slots would idle slots.
    assert load_settings(imis_max_concurrency=cap, dispatch_window=window).chunks_in_broker("imis") == expected


def test_a_lease_shorter_than_a_write_of_a_configured_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBILL_LEASE_SECONDS", "20")
    monkeypatch.setenv("REBILL_IMIS_TIMEOUT_SECONDS", "30")
    assert load_settings(imis_base_url=None).lease_seconds == 20  # iMIS is not configured: nothing to outlive

    configured = {"imis_base_url": "https://imis.example.org", "imis_username": "rebill", "imis_password": "pw"}
    with pytest.raises(ConfigurationError, match=r"REBILL_LEASE_SECONDS \(20\) must exceed twice REBILL_IMIS_TIMEOUT"):
        load_settings(**configured)


def test_a_worker_is_declared_dead_only_after_missing_two_heartbeats() -> None:
    with pytest.raises(ConfigurationError, match=r"REBILL_WORKER_DEAD_AFTER_SECONDS \(5\) must be at least twice"):
        load_settings(heartbeat_seconds=3, worker_dead_after_seconds=5)
