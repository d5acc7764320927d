"""The composition root: settings in, wired adapters out. Nothing else builds clients or engines."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from celery import Celery

from orchestrator.adapters.broker import embedded
from orchestrator.adapters.ledger.database import LedgerEngines, create_engines, default_sqlite_url, migrate
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.adapters.providers.imis import ImisClient, ImisProvider
from orchestrator.adapters.providers.tenant_limit import (
    LimitedTransport,
    TenantLimiter,
    tenant_key,
)
from orchestrator.config import Settings
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services.context import CallRecorder, Context, Runtime
from orchestrator.services.ports import BillingProvider, Dispatcher


def broker_url(settings: Settings) -> str:
    """REBILL_BROKER_URL, or the embedded Redis under REBILL_DATA_DIR (started on first use)."""
    if settings.broker_url:
        return settings.broker_url
    return embedded.ensure_running(settings.data_dir).celery_url


def redis_url(settings: Settings) -> str:
    """The same Redis for our own keys (locks, limits), in redis-py's URL form."""
    if settings.broker_url:
        return settings.broker_url
    return embedded.ensure_running(settings.data_dir).redis_url


def database_url(settings: Settings) -> str:
    return settings.database_url or default_sqlite_url(Path(settings.data_dir))


def runtime(settings: Settings) -> Runtime:
    return Runtime(
        lease_seconds=settings.lease_seconds,
        dispatch_window=settings.chunks_in_broker(),
        lost_message_seconds=settings.lost_message_seconds,
        max_deliveries=settings.max_deliveries,
        rebill_settle_seconds=settings.rebill_settle_seconds,
        max_countdown_seconds=settings.visibility_timeout_seconds / 2,
        # A write may wait for a tenant slot (up to the pool timeout, the read timeout) then connect and read.
        write_budget_seconds=2 * (settings.imis_timeout_seconds + settings.imis_connect_timeout_seconds),
        claim_batch_size=settings.claim_batch_size,
    )


def http_transport(settings: Settings, *, limiter: TenantLimiter | None = None) -> httpx.BaseTransport:
    """The one httpx transport per process (its connection pool); it retries connect errors only.

    With a limiter, every exchange holds one of the tenant's slots (REBILL_IMIS_MAX_CONCURRENCY,
    REBILL_IMIS_RATE_LIMIT) shared through Redis by every worker. A slot wait counts against the
    pool timeout.
    """
    transport: httpx.BaseTransport = httpx.HTTPTransport(
        retries=2,
        # The tenant limit keeps at most imis_max_concurrency exchanges in flight, so more idle
        # connections than that would only be scanned by httpcore on every request.
        limits=httpx.Limits(
            max_connections=settings.worker_concurrency * 2,
            max_keepalive_connections=min(settings.worker_concurrency, settings.imis_max_concurrency),
        ),
    )
    if limiter is not None:
        transport = LimitedTransport(transport, limiter)
    return transport


def tenant_limiter(settings: Settings) -> TenantLimiter:
    """The tenant's shared limit, in the broker's Redis (a killed holder's slot returns after its lease)."""
    base_url, _, _ = settings.require_imis()
    return TenantLimiter.from_url(
        redis_url(settings),
        tenant_key(base_url),
        max_concurrency=settings.imis_max_concurrency,
        rate=settings.imis_rate_limit,
        lease_seconds=settings.imis_slot_lease_seconds,
        handoff_seconds=settings.imis_slot_handoff_seconds,
    )


class UnconfiguredProvider:
    """Stands in when REBILL_IMIS_* are unset: reading the ledger needs no tenant, calling one does."""

    name = "imis"

    def __init__(self, error: ConfigurationError) -> None:
        self._error = error

    def __getattr__(self, name: str) -> Any:
        raise self._error


@dataclass
class Container:
    settings: Settings
    recorder: CallRecorder = field(default_factory=CallRecorder)

    @functools.cached_property
    def engines(self) -> LedgerEngines:
        engines = create_engines(database_url(self.settings))
        migrate(engines)
        return engines

    @functools.cached_property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self.engines.read, write_engine=self.engines.write)

    @functools.cached_property
    def broker_url(self) -> str:
        return broker_url(self.settings)

    @functools.cached_property
    def producer(self) -> Celery:
        from workers.celery_app import producer_app  # the workers package depends on us, not the other way

        return producer_app(self.settings, self.broker_url)

    @functools.cached_property
    def dispatcher(self) -> Dispatcher:
        from workers.dispatch import CeleryDispatcher

        return CeleryDispatcher(
            self.producer, queue=self.settings.queue, max_countdown_seconds=self.settings.visibility_timeout_seconds / 2
        )

    @functools.cached_property
    def transport(self) -> httpx.BaseTransport:
        return http_transport(self.settings, limiter=tenant_limiter(self.settings))

    @functools.cached_property
    def provider(self) -> BillingProvider:
        base_url, username, password = self.settings.require_imis()
        client = ImisClient(
            base_url=base_url,
            username=username,
            password=password,
            transport=self.transport,
            timeout=httpx.Timeout(
                self.settings.imis_timeout_seconds, connect=self.settings.imis_connect_timeout_seconds
            ),
            observer=self.recorder.record,
        )
        return ImisProvider(client, page_size=self.settings.imis_page_size)

    @functools.cached_property
    def context(self) -> Context:
        """Every service's dependencies; without tenant settings the provider explains what is missing."""
        try:
            provider = self.provider
        except ConfigurationError as error:
            provider = cast(BillingProvider, UnconfiguredProvider(error))
        return Context(
            ledger=self.ledger,
            provider=provider,
            dispatcher=self.dispatcher,
            recorder=self.recorder,
            runtime=runtime(self.settings),
        )

    def close(self) -> None:
        if "producer" in self.__dict__:
            self.producer.close()
        if "transport" in self.__dict__:
            self.transport.close()
        if "engines" in self.__dict__:
            self.engines.dispose()
