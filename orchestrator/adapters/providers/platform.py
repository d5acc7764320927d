"""What a platform package tells the rest of rebill about itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import BaseModel

from orchestrator.adapters.providers.settings import ProviderSettings
from orchestrator.services.ports import BillingProvider, CallObserver


@dataclass(frozen=True, slots=True)
class Connection:
    """How a provider reaches its tenant: the process's limited transport, the timeout, the call observer."""

    transport: httpx.BaseTransport
    timeout: httpx.Timeout
    observer: CallObserver


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    #: Its `REBILL_<NAME>_*` settings.
    settings: type[ProviderSettings]
    #: Its provider, from its settings (complete: `settings.require()` passed) and a connection.
    build: Callable[[ProviderSettings, Connection], BillingProvider]
    #: What a run selects (`rebill run --billing-log ...`): fields become command-line options.
    selector: type[BaseModel]
    #: Its own run options, defaults from its settings (`defaults`).
    options: type[BaseModel]
    #: The options' defaults from the settings (None: no option has a default from the settings).
    defaults: Callable[[ProviderSettings], BaseModel] | None = None
    #: What `rebill retry` may additionally ask of it (fields become options of `retry`), kept in its state.
    retry_options: type[BaseModel] | None = None
    #: Invoices per chunk when the run does not say (None: REBILL_CHUNK_SIZE).
    default_chunk_size: int | None = None
