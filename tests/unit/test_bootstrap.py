"""The composition root's own decisions."""

from __future__ import annotations

import pytest

from orchestrator.bootstrap import environment_proxy

TENANT = "https://tenant.example.org"
PROXY = "http://proxy.corp.example:3128"


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": PROXY}, PROXY),
        ({"https_proxy": PROXY}, PROXY),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "tenant.example.org"}, None),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": ".example.org"}, None),
        ({"HTTP_PROXY": PROXY}, None),
        ({"ALL_PROXY": PROXY}, PROXY),
    ],
    ids=["none", "https", "lowercase", "no-proxy-host", "no-proxy-domain", "http-only", "all"],
)
def test_the_tenant_is_reached_through_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str | None
) -> None:
    # The transport is used without httpx.Client, so the proxy the environment names is applied here,
    # inside the tenant limit (a Client's proxy mount would have bypassed it).
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert environment_proxy(TENANT) == expected
