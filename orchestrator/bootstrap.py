"""The composition root: settings in, wired adapters out. Nothing else builds clients or engines."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from celery import Celery

from orchestrator.adapters.broker import embedded
from orchestrator.adapters.broker.celery import CeleryDispatcher, celery_config, producer_app
from orchestrator.adapters.ledger.database import LedgerEngines, create_engines, default_sqlite_url, migrate
from orchestrator.adapters.ledger.firings import SqlFiringLog
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.adapters.providers.platform import Connection
from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.adapters.providers.tenant_limit import LimitedTransport, TenantLimiter, tenant_key
from orchestrator.config import Settings
from orchestrator.domain.errors import ConfigurationError
from orchestrator.services.context import CallRecorder, Context, Tuning, WorkerIdentity
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


def broker_config(settings: Settings, url: str) -> dict[str, Any]:
    """Celery's configuration, the same for every process of a deployment."""
    return celery_config(
        url,
        queue=settings.queue,
        visibility_timeout_seconds=settings.visibility_timeout_seconds,
        reconcile_interval_seconds=settings.reconcile_interval_seconds,
    )


def database_url(settings: Settings) -> str:
    return settings.database_url or default_sqlite_url(Path(settings.data_dir))


def tuning(settings: Settings) -> Tuning:
    return Tuning(
        lease_seconds=settings.lease_seconds,
        dispatch_window=settings.dispatch_window or 16,
        dispatch_windows={name: settings.chunks_in_broker(name) for name in settings.providers},
        ramp_chunks={name: settings.provider(name).max_concurrency for name in settings.providers},
        lost_message_seconds=settings.lost_message_seconds,
        max_deliveries=settings.max_deliveries,
        rebill_settle_seconds=settings.rebill_settle_seconds,
        max_countdown_seconds=settings.visibility_timeout_seconds / 2,
        # A write may wait for a tenant slot (up to the pool timeout, the read timeout) then connect and read.
        write_budget_seconds=settings.longest_write_seconds(),
        claim_batch_size=settings.claim_batch_size,
        worker_dead_after_seconds=settings.worker_dead_after_seconds,
    )


def http_transport(settings: Settings, provider: str, *, limiter: TenantLimiter | None = None) -> httpx.BaseTransport:
    """One provider's httpx transport per process (its connection pool); it retries connect errors only.

    With a limiter, every exchange holds one of the tenant's slots (REBILL_<PROVIDER>_MAX_CONCURRENCY,
    REBILL_<PROVIDER>_RATE_LIMIT) shared through Redis by every worker. A slot wait counts against the
    pool timeout.
    """
    cap = settings.provider(provider).max_concurrency
    transport: httpx.BaseTransport = httpx.HTTPTransport(
        retries=2,
        # The tenant limit keeps at most `cap` exchanges in flight, so more idle connections than
        # that would only be scanned by httpcore on every request.
        limits=httpx.Limits(
            max_connections=settings.worker_concurrency * 2,
            max_keepalive_connections=min(settings.worker_concurrency, cap),
        ),
    )
    if limiter is not None:
        transport = LimitedTransport(transport, limiter)
    return transport


def tenant_limiter(settings: Settings, provider: str) -> TenantLimiter:
    """One tenant's shared limit, in the broker's Redis (a killed holder's slot returns after its lease)."""
    platform = settings.provider(provider)
    platform.require()
    return TenantLimiter.from_url(
        redis_url(settings),
        tenant_key(platform.base(), provider),
        max_concurrency=platform.max_concurrency,
        rate=platform.rate_limit,
        lease_seconds=platform.slot_lease_seconds,
        handoff_seconds=platform.slot_handoff_seconds,
    )


class ProviderRegistry:
    """The `Providers` port: each configured platform's provider, built on first use and kept."""

    def __init__(self, settings: Settings, container: Container) -> None:
        self._settings = settings
        self._container = container
        self._built: dict[str, BillingProvider] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return self._settings.configured_providers()

    def get(self, name: str) -> BillingProvider:
        with self._lock:
            provider = self._built.get(name)
            if provider is None:
                provider = self._built[name] = self._build(name)
            return provider

    def _build(self, name: str) -> BillingProvider:
        platform = PLATFORMS.get(name)
        if platform is None:
            raise ConfigurationError(f"no provider {name[:40]!r}: rebill knows {', '.join(PLATFORMS)}")
        settings = self._settings.provider(name)
        settings.require()
        connection = Connection(
            transport=self._container.transport(name),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            observer=functools.partial(self._container.recorder.record, provider=name),
        )
        return platform.build(settings, connection)

    def built(self) -> list[BillingProvider]:
        with self._lock:
            return list(self._built.values())


@dataclass
class Container:
    settings: Settings
    recorder: CallRecorder = field(default_factory=CallRecorder)
    worker: WorkerIdentity | None = None  # set by `rebill worker` before anything is built

    def __post_init__(self) -> None:
        self._transports: dict[str, httpx.BaseTransport] = {}
        self._limiters: dict[str, TenantLimiter] = {}
        self._transports_lock = threading.Lock()

    @functools.cached_property
    def engines(self) -> LedgerEngines:
        engines = create_engines(
            database_url(self.settings), session_label=self.worker.id if self.worker is not None else None
        )
        migrate(engines)
        return engines

    @functools.cached_property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self.engines.read, write_engine=self.engines.write)

    @functools.cached_property
    def firing_log(self) -> SqlFiringLog:
        """Where schedule firings are recorded: the ledger's database."""
        return SqlFiringLog(self.engines.read, write_engine=self.engines.write)

    @functools.cached_property
    def broker_url(self) -> str:
        return broker_url(self.settings)

    @functools.cached_property
    def producer(self) -> Celery:
        return producer_app(broker_config(self.settings, self.broker_url))

    @functools.cached_property
    def dispatcher(self) -> Dispatcher:
        return CeleryDispatcher(
            lambda: self.producer,
            queue=self.settings.queue,
            max_countdown_seconds=self.settings.visibility_timeout_seconds / 2,
            chunk_sizes=lambda chunk_id: self.ledger.chunk_seq_and_size(chunk_id),
        )

    def limiter(self, provider: str) -> TenantLimiter:
        """The provider's tenant limit (its Redis keys); one per process."""
        with self._transports_lock:
            return self._limiter_locked(provider)

    def _limiter_locked(self, provider: str) -> TenantLimiter:
        limiter = self._limiters.get(provider)
        if limiter is None:
            limiter = self._limiters[provider] = tenant_limiter(self.settings, provider)
        return limiter

    def transport(self, provider: str) -> httpx.BaseTransport:
        """The provider's transport, limited by its tenant's shared cap; one per process."""
        with self._transports_lock:
            transport = self._transports.get(provider)
            if transport is None:
                limiter = self._limiter_locked(provider)
                transport = self._transports[provider] = http_transport(self.settings, provider, limiter=limiter)
            return transport

    @functools.cached_property
    def providers(self) -> ProviderRegistry:
        return ProviderRegistry(self.settings, self)

    @functools.cached_property
    def context(self) -> Context:
        """Every service's dependencies; a provider that is not configured says what is missing when used."""
        return Context(
            ledger=self.ledger,
            providers=self.providers,
            dispatcher=self.dispatcher,
            recorder=self.recorder,
            tuning=tuning(self.settings),
            worker=self.worker,
        )

    def close(self) -> None:
        if "producer" in self.__dict__:
            self.producer.close()
        with self._transports_lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()
        if "engines" in self.__dict__:
            self.engines.dispose()
