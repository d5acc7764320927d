"""Every platform rebill can run on, by provider name: the one line a new platform adds.

A platform is one package under `orchestrator/adapters/providers/<name>/` exporting a `PLATFORM`:
its settings class, how to build its provider from them, and the typed selector and options its
runs take (the command line is generated from them).
"""

from __future__ import annotations

from orchestrator.adapters.providers import aria, energycap, imis, salesforce
from orchestrator.adapters.providers.platform import Platform

PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        imis.PLATFORM,
        aria.PLATFORM,
        salesforce.PLATFORM,
        energycap.PLATFORM,
    )
}

__all__ = ["PLATFORMS", "Platform"]
