"""The tenant limit against a real Redis and the simulator's own count of calls in flight.

Redis is REBILL_TEST_REDIS_URL when set, else an embedded one; every test uses its own keys.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.broker import embedded
from orchestrator.adapters.providers.imis import ImisClient
from orchestrator.adapters.providers.tenant_limit import (
    LimitedTransport,
    LimiterUnavailable,
    SlotTimeout,
    TenantLimiter,
    tenant_key,
)
from orchestrator.bootstrap import Container
from orchestrator.config import Settings
from orchestrator.domain.errors import ProviderTimeout
from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState, SeededBilling
from tests.contract.conftest import PASSWORD, USERNAME
from tests.support.databases import REDIS_ENV


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get(REDIS_ENV):
        yield os.environ[REDIS_ENV]
        return
    data_dir = tmp_path_factory.mktemp("limit-redis")
    yield embedded.ensure_running(data_dir).redis_url
    embedded.stop(data_dir)


@pytest.fixture
def key() -> str:
    return tenant_key(f"http://tenant-{uuid.uuid4().hex}.test")


@pytest.fixture
def make_limiter(redis_url: str, key: str) -> Iterator[Callable[..., TenantLimiter]]:
    made: list[TenantLimiter] = []

    def make(max_concurrency: int, *, lease_seconds: float = 10.0, rate: float | None = None) -> TenantLimiter:
        limiter = TenantLimiter.from_url(
            redis_url, key, max_concurrency=max_concurrency, lease_seconds=lease_seconds, rate=rate
        )
        made.append(limiter)
        return limiter

    yield make
    if made:
        made[0].reset()
    for limiter in made:
        limiter.close()


@pytest.fixture
def limited_client(server: SimulatorServer) -> Iterator[Callable[..., ImisClient]]:
    """`limited_client(limiter, timeout=...)`: an ImisClient whose every exchange holds a slot."""
    opened: list[httpx.Client] = []

    def make(limiter: TenantLimiter, *, timeout: float = 10.0) -> ImisClient:
        http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=2.0), transport=LimitedTransport(httpx.HTTPTransport(), limiter)
        )
        opened.append(http)
        return ImisClient(base_url=server.base_url, username=USERNAME, password=SecretStr(PASSWORD), http=http)

    yield make
    for http in opened:
        http.close()


def _hammer_in_process(
    base_url: str, redis_url: str, key: str, cap: int, invoice_ids: list[str], threads: int, start_at: float
) -> int:
    """One worker-like process: `threads` threads reading invoices through its own limited client."""
    limiter = TenantLimiter.from_url(redis_url, key, max_concurrency=cap, lease_seconds=10)
    http = httpx.Client(
        timeout=httpx.Timeout(10, connect=2.0), transport=LimitedTransport(httpx.HTTPTransport(), limiter)
    )
    client = ImisClient(base_url=base_url, username=USERNAME, password=SecretStr(PASSWORD), http=http)
    time.sleep(max(0.0, start_at - time.time()))
    with ThreadPoolExecutor(threads) as pool:
        done = sum(1 for _ in pool.map(client.get_invoice, invoice_ids))
    http.close()
    return done


def _hold_a_slot_then_hang(redis_url: str, key: str, lease_seconds: float) -> None:
    limiter = TenantLimiter.from_url(redis_url, key, max_concurrency=1, lease_seconds=lease_seconds)
    limiter.acquire(timeout=5)
    time.sleep(60)  # killed long before this ends


class TestConcurrencyCap:
    def test_threads_never_exceed_the_cap(
        self,
        state: ImisState,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
    ) -> None:
        state.faults.update(latency_ms=20)
        client = limited_client(make_limiter(3))
        state.reset_counters()
        with ThreadPoolExecutor(12) as pool:
            invoices = list(pool.map(client.get_invoice, billing.invoice_ids[:48]))
        assert len(invoices) == 48
        counters = state.counters()
        assert counters["peak_concurrency"] == 3  # reached, never passed
        assert counters["in_flight"] == 0

    def test_two_processes_share_one_cap(
        self, state: ImisState, server: SimulatorServer, billing: SeededBilling, redis_url: str, key: str
    ) -> None:
        state.faults.update(latency_ms=20)
        ids = list(billing.invoice_ids[:40])
        start_at = time.time() + 2.0  # both processes start their calls together
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            jobs = [
                pool.apply_async(_hammer_in_process, (server.base_url, redis_url, key, 4, ids[i::2], 6, start_at))
                for i in range(2)
            ]
            assert sum(job.get(timeout=60) for job in jobs) == 40
        assert state.counters()["peak_concurrency"] == 4

    def test_a_killed_holder_frees_its_slot_after_its_lease(
        self, make_limiter: Callable[..., TenantLimiter], redis_url: str, key: str
    ) -> None:
        context = multiprocessing.get_context("spawn")
        holder = context.Process(target=_hold_a_slot_then_hang, args=(redis_url, key, 1.0))
        holder.start()
        limiter = make_limiter(1, lease_seconds=1.0)
        deadline = time.monotonic() + 30
        while limiter.holders() == 0:  # the holder has its slot
            assert time.monotonic() < deadline
            assert holder.is_alive()
            time.sleep(0.02)
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        killed_at = time.monotonic()
        permit = limiter.acquire(timeout=5)
        waited = time.monotonic() - killed_at
        limiter.release(permit)
        assert waited < 1.5  # the lease (1 s) ended, and the waiter woke for it

    def test_a_live_holder_keeps_its_slot_past_the_lease(self, make_limiter: Callable[..., TenantLimiter]) -> None:
        holder, other = make_limiter(1, lease_seconds=0.4), make_limiter(1, lease_seconds=0.4)
        permit = holder.acquire(timeout=1)
        with pytest.raises(SlotTimeout):
            other.acquire(timeout=1.2)  # three leases long: renewed all along
        holder.release(permit)
        other.release(other.acquire(timeout=1))

    def test_a_waiter_wakes_on_release_without_spinning(self, make_limiter: Callable[..., TenantLimiter]) -> None:
        holder, waiter = make_limiter(1), make_limiter(1)
        permit = holder.acquire(timeout=1)
        released_at: list[float] = []

        def release_later() -> None:
            time.sleep(0.5)
            released_at.append(time.monotonic())
            holder.release(permit)

        thread = threading.Thread(target=release_later)
        thread.start()
        cpu_before = time.thread_time()
        got = waiter.acquire(timeout=5)
        woke_at = time.monotonic()
        cpu_spent = time.thread_time() - cpu_before
        thread.join()
        waiter.release(got)
        assert woke_at - released_at[0] < 0.05
        assert cpu_spent < 0.05  # blocked in Redis, not polling

    def test_timeout_is_a_pool_timeout_nothing_sent(
        self,
        state: ImisState,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
    ) -> None:
        other = make_limiter(1)
        client = limited_client(make_limiter(1), timeout=0.3)
        client.get_invoice(billing.invoice_ids[0])  # the token, while the slot is free
        permit = other.acquire(timeout=1)
        state.reset_counters()
        with pytest.raises(ProviderTimeout) as caught:
            client.get_invoice(billing.invoice_ids[0])
        other.release(permit)
        assert not caught.value.may_have_applied
        assert state.counters()["requests"] == {}

    def test_an_unreachable_redis_is_waited_for_then_nothing_is_sent(self, tmp_path: Path) -> None:
        limiter = TenantLimiter.from_url(
            f"unix://{tmp_path / 'no-redis.sock'}", tenant_key("http://x.test"), max_concurrency=1, lease_seconds=5
        )
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            limiter.acquire(timeout=0.6)
        assert 0.5 <= time.monotonic() - started < 3
        limiter.close()


class TestRate:
    def test_sends_are_spaced_by_the_rate_across_holders(self, make_limiter: Callable[..., TenantLimiter]) -> None:
        rate = 40.0
        limiters = [make_limiter(8, rate=rate) for _ in range(2)]  # two "processes"
        sent: list[float] = []
        lock = threading.Lock()

        def send(index: int) -> None:
            limiter = limiters[index % 2]
            permit = limiter.acquire(timeout=10)
            limiter.wait_to_send(permit)
            with lock:
                sent.append(time.monotonic())
            limiter.release(permit)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, range(40)))
        sent.sort()
        span = sent[-1] - sent[0]
        assert span >= (len(sent) - 1) / rate * 0.95
        assert span < (len(sent) - 1) / rate * 2  # paced, not stalled
        for start in sent:  # any one second: at most rate + 1 sends
            assert sum(1 for t in sent if start <= t < start + 1.0) <= rate + 1


class TestWiring:
    def test_the_container_limits_its_client(self, redis_url: str, server: SimulatorServer, tmp_path: Path) -> None:
        settings = Settings(
            broker_url=redis_url,
            data_dir=tmp_path,
            imis_base_url=server.base_url,
            imis_username=USERNAME,
            imis_password=PASSWORD,
            imis_max_concurrency=3,
            imis_rate_limit=25,
        )
        container = Container(settings)
        try:
            transport = container.http._transport
            assert isinstance(transport, LimitedTransport)
            assert transport.limiter.max_concurrency == 3
            assert transport.limiter.rate == 25
        finally:
            container.close()
