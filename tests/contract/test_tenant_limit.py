"""The tenant limit against a real Redis and the simulator's own count of calls in flight.

Redis is REBILL_TEST_REDIS_URL when set, else an embedded one; every test uses its own keys.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from orchestrator.adapters.broker import embedded
from orchestrator.adapters.providers.imis import ImisClient
from orchestrator.adapters.providers.tenant_limit import (
    HANDOFF_SECONDS,
    LimitedTransport,
    LimiterUnavailable,
    Permit,
    SlotTimeout,
    TenantLimiter,
    tenant_key,
)
from orchestrator.bootstrap import Container
from orchestrator.config import load_settings
from orchestrator.domain.errors import ProviderNotFound, ProviderTimeout
from simulators.imis.seeding import SeededBilling
from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState
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


class CountingRedis(redis.Redis):
    """redis-py's client, counting the scripts it runs (slot acquires, releases and lease renewals alike)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts = 0
        self._count_lock = threading.Lock()

    def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        with self._count_lock:
            self.scripts += 1
        return super().evalsha(*args, **kwargs)


@pytest.fixture
def counting_redis(redis_url: str) -> Iterator[CountingRedis]:
    # redis-py annotates from_url as returning Redis, though it returns an instance of the class it is called on.
    client: CountingRedis = CountingRedis.from_url(redis_url)  # type: ignore[assignment]
    yield client
    client.close()


@pytest.fixture
def make_limiter(redis_url: str, key: str) -> Iterator[Callable[..., TenantLimiter]]:
    """`make_limiter(cap, ...)`: a limiter on the test's key; each one stands for one worker process."""
    made: list[TenantLimiter] = []

    def make(
        max_concurrency: int,
        *,
        lease_seconds: float = 10.0,
        rate: float | None = None,
        handoff_seconds: float = HANDOFF_SECONDS,
        client: redis.Redis | None = None,
    ) -> TenantLimiter:
        options: dict[str, Any] = {
            "max_concurrency": max_concurrency,
            "lease_seconds": lease_seconds,
            "rate": rate,
            "handoff_seconds": handoff_seconds,
        }
        if client is None:
            limiter = TenantLimiter.from_url(redis_url, key, **options)
        else:
            limiter = TenantLimiter(client, key, **options)
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
    opened: list[LimitedTransport] = []

    def make(limiter: TenantLimiter, *, timeout: float = 10.0) -> ImisClient:
        transport = LimitedTransport(httpx.HTTPTransport(), limiter)
        opened.append(transport)
        return ImisClient(
            base_url=server.base_url,
            username=USERNAME,
            password=SecretStr(PASSWORD),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=2.0),
        )

    yield make
    for transport in opened:
        transport.close()


def _hammer_in_process(
    base_url: str, redis_url: str, key: str, cap: int, invoice_ids: list[str], threads: int, start_at: float
) -> int:
    """One worker-like process: `threads` threads reading invoices through its own limited client."""
    limiter = TenantLimiter.from_url(redis_url, key, max_concurrency=cap, lease_seconds=10)
    transport = LimitedTransport(httpx.HTTPTransport(), limiter)
    client = ImisClient(
        base_url=base_url,
        username=USERNAME,
        password=SecretStr(PASSWORD),
        transport=transport,
        timeout=httpx.Timeout(10, connect=2.0),
    )
    time.sleep(max(0.0, start_at - time.time()))
    with ThreadPoolExecutor(threads) as pool:
        done = sum(1 for _ in pool.map(client.get_invoice, invoice_ids))
    transport.close()
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

    def test_threads_queued_behind_an_unreachable_redis_fail_as_unavailable(self, tmp_path: Path) -> None:
        limiter = TenantLimiter.from_url(
            f"unix://{tmp_path / 'no-redis.sock'}", tenant_key("http://x.test"), max_concurrency=1, lease_seconds=5
        )

        def acquire(_: int) -> None:
            with pytest.raises(LimiterUnavailable):
                limiter.acquire(timeout=0.6)

        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:  # one waits on Redis for the process, two in memory
            list(pool.map(acquire, range(3)))
        assert time.monotonic() - started < 3
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


def _acquire_in_thread(limiter: TenantLimiter, timeout: float) -> tuple[threading.Thread, list[Permit | Exception]]:
    """`limiter.acquire(timeout)` in a thread of its own; its permit (or error) lands in the list."""
    outcome: list[Permit | Exception] = []

    def run() -> None:
        try:
            outcome.append(limiter.acquire(timeout=timeout))
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _acquire_in_forked_child(limiter: TenantLimiter) -> None:
    """Exits 0 once the inherited limiter gave this process a slot of its own (and took it back)."""
    limiter.release(limiter.acquire(timeout=5))


class TestHandOff:
    """Threads of one process pass slots to each other in memory, still counted in Redis."""

    def test_threads_pass_slots_without_redis_and_never_exceed_the_cap(
        self, make_limiter: Callable[..., TenantLimiter], counting_redis: CountingRedis
    ) -> None:
        cap, threads, calls = 3, 12, 480
        limiter = make_limiter(cap, client=counting_redis)
        watcher = make_limiter(cap)
        lock = threading.Lock()
        in_use = [0, 0]  # now, peak
        redis_peak = 0
        stop = threading.Event()

        def watch() -> None:
            nonlocal redis_peak
            while not stop.is_set():
                redis_peak = max(redis_peak, watcher.holders())

        def call(_: int) -> None:  # like a worker's HTTP call
            permit = limiter.acquire(timeout=10)
            with lock:
                in_use[0] += 1
                in_use[1] = max(in_use)
            time.sleep(0.002)
            with lock:
                in_use[0] -= 1
            limiter.release(permit)

        watching = threading.Thread(target=watch)
        watching.start()
        with ThreadPoolExecutor(threads) as pool:
            done = len(list(pool.map(call, range(calls))))  # every acquire got its slot
        stop.set()
        watching.join()
        assert in_use[1] == cap  # reached, never passed
        assert 1 <= redis_peak <= cap
        assert limiter.handoffs > done * 0.8
        assert counting_redis.scripts < done / 10  # a slot, not a call, costs the round trips
        assert watcher.holders() == 0

    def test_processes_take_turns_once_a_slot_is_old(self, make_limiter: Callable[..., TenantLimiter]) -> None:
        # Two limiters on one key stand for two worker processes, each with more threads than slots.
        limiters = [make_limiter(2, handoff_seconds=0.2) for _ in range(2)]
        calls = [0, 0]
        lock = threading.Lock()
        start = threading.Barrier(8)
        until = time.monotonic() + 1.5

        def work(index: int) -> None:
            limiter = limiters[index % 2]
            start.wait()
            while time.monotonic() < until:
                permit = limiter.acquire(timeout=5)
                time.sleep(0.005)
                with lock:
                    calls[index % 2] += 1
                limiter.release(permit)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        total = sum(calls)
        assert min(calls) > total / 4, calls  # neither process is starved by the other's hand-offs
        assert all(limiter.handoffs > 0 for limiter in limiters)
        assert limiters[0].holders() == 0

    def test_waiters_timing_out_as_slots_are_handed_over_lose_no_slot(
        self, make_limiter: Callable[..., TenantLimiter]
    ) -> None:
        cap = 2
        limiter = make_limiter(cap)
        outcomes = {"slots": 0, "timeouts": 0}
        lock = threading.Lock()

        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(40):
                try:
                    permit = limiter.acquire(timeout=rng.uniform(0.0005, 0.01))
                except SlotTimeout:
                    with lock:
                        outcomes["timeouts"] += 1
                    continue
                time.sleep(rng.uniform(0, 0.002))
                limiter.release(permit)
                with lock:
                    outcomes["slots"] += 1

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(work, range(16)))
        assert outcomes["slots"] > 0
        assert outcomes["timeouts"] > 0
        assert limiter.handoffs > 0
        assert limiter.holders() == 0  # no slot was left behind, in Redis or with the process
        permits = [limiter.acquire(timeout=1) for _ in range(cap)]  # every slot can still be had
        for permit in permits:
            limiter.release(permit)

    def test_a_leader_that_times_out_passes_the_wait_on_redis_on(
        self, make_limiter: Callable[..., TenantLimiter]
    ) -> None:
        other, limiter = make_limiter(1), make_limiter(1)
        held = other.acquire(timeout=1)
        leader, leader_outcome = _acquire_in_thread(limiter, 0.3)  # waits on Redis for the process
        time.sleep(0.1)
        queued, queued_outcome = _acquire_in_thread(limiter, 3.0)  # waits in memory behind it
        leader.join()
        assert isinstance(leader_outcome[0], SlotTimeout)
        time.sleep(0.2)
        released_at = time.monotonic()
        other.release(held)
        queued.join()
        got = queued_outcome[0]
        assert isinstance(got, Permit)  # it took over the wait on Redis, and was woken there
        assert time.monotonic() - released_at < 0.5
        limiter.release(got)

    def test_a_permit_released_twice_does_not_free_the_slot_it_was_handed_to(
        self, make_limiter: Callable[..., TenantLimiter]
    ) -> None:
        limiter = make_limiter(1)
        first = limiter.acquire(timeout=1)
        leader, leader_outcome = _acquire_in_thread(limiter, 5.0)  # waits on Redis
        time.sleep(0.1)
        queued, queued_outcome = _acquire_in_thread(limiter, 5.0)  # waits in memory
        time.sleep(0.1)
        limiter.release(first)  # handed to the queued thread
        queued.join()
        handed = queued_outcome[0]
        assert isinstance(handed, Permit)
        assert handed.token == first.token
        limiter.release(first)  # stale: ignored
        time.sleep(0.3)
        assert not leader_outcome  # still waiting: the slot is the queued thread's
        assert limiter.holders() == 1
        limiter.release(handed)
        leader.join()
        got = leader_outcome[0]
        assert isinstance(got, Permit)
        limiter.release(got)
        assert limiter.holders() == 0

    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python 3.12+
    def test_a_forked_child_waits_for_itself_not_behind_the_parents_threads(
        self, make_limiter: Callable[..., TenantLimiter]
    ) -> None:
        limiter = make_limiter(1)
        first = limiter.acquire(timeout=1)
        leader, leader_outcome = _acquire_in_thread(limiter, 5.0)  # the parent's thread on Redis
        time.sleep(0.1)
        queued, queued_outcome = _acquire_in_thread(limiter, 5.0)  # and one in memory
        time.sleep(0.1)
        child = multiprocessing.get_context("fork").Process(target=_acquire_in_forked_child, args=(limiter,))
        child.start()
        time.sleep(0.2)
        limiter.release(first)  # to the queued thread, in the parent
        queued.join()
        handed = queued_outcome[0]
        assert isinstance(handed, Permit)
        limiter.release(handed)  # to Redis: the parent's leader or the child, then the other
        leader.join()
        got = leader_outcome[0]
        assert isinstance(got, Permit)
        limiter.release(got)
        child.join(10)
        assert child.exitcode == 0
        assert limiter.holders() == 0

    def test_no_hand_off_under_a_rate(
        self, make_limiter: Callable[..., TenantLimiter], counting_redis: CountingRedis
    ) -> None:
        limiter = make_limiter(2, rate=500, client=counting_redis)

        def work(_: int) -> None:
            for _ in range(5):
                permit = limiter.acquire(timeout=5)
                limiter.wait_to_send(permit)
                time.sleep(0.002)
                limiter.release(permit)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        assert limiter.handoffs == 0
        assert counting_redis.scripts >= 2 * 40  # every call took its slot and its send time from Redis


class TestOneSlotPerInvoice:
    """A worker thread's calls for one invoice (`LimitedTransport.one_slot`) share one slot."""

    def test_a_sequence_takes_one_slot_for_all_its_calls(
        self,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
        counting_redis: CountingRedis,
    ) -> None:
        limiter = make_limiter(2, handoff_seconds=0, client=counting_redis)
        client = limited_client(limiter)
        client.get_invoice(billing.invoice_ids[0])  # fetches the token: out of the count
        counting_redis.scripts = 0

        for invoice_id in billing.invoice_ids[1:4]:
            client.get_invoice(invoice_id)
        separate = counting_redis.scripts
        counting_redis.scripts = 0
        with client.one_slot():
            for invoice_id in billing.invoice_ids[4:7]:
                client.get_invoice(invoice_id)
        together = counting_redis.scripts

        assert separate == 6  # an acquire and a release per call
        assert together == 2  # one acquire, one release for the three
        assert limiter.holders() == 0

    def test_sequences_keep_the_cap(
        self,
        state: ImisState,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
    ) -> None:
        state.faults.update(latency_ms=20)
        client = limited_client(make_limiter(3))
        ids = list(billing.invoice_ids[:40])
        state.reset_counters()

        def two_calls(index: int) -> None:
            with client.one_slot():
                client.get_invoice(ids[index])
                client.get_invoice(ids[index + 20])

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(two_calls, range(20)))
        counters = state.counters()
        assert counters["peak_concurrency"] == 3
        assert counters["in_flight"] == 0

    def test_a_failing_call_gives_the_slot_back_when_the_sequence_ends(
        self,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
    ) -> None:
        limiter = make_limiter(1)
        client = limited_client(limiter, timeout=2.0)

        def read_then_fail() -> None:
            with client.one_slot():
                client.get_invoice(billing.invoice_ids[0])
                client.get_invoice("no-such-invoice")

        with pytest.raises(ProviderNotFound):
            read_then_fail()
        assert limiter.holders() == 0
        client.get_invoice(billing.invoice_ids[1])  # the only slot is free again

    def test_with_a_rate_every_call_takes_its_own_slot(
        self,
        billing: SeededBilling,
        make_limiter: Callable[..., TenantLimiter],
        limited_client: Callable[..., ImisClient],
        counting_redis: CountingRedis,
    ) -> None:
        client = limited_client(make_limiter(2, rate=1000, client=counting_redis))
        client.get_invoice(billing.invoice_ids[0])
        counting_redis.scripts = 0
        with client.one_slot():
            for invoice_id in billing.invoice_ids[1:4]:
                client.get_invoice(invoice_id)
        assert counting_redis.scripts == 6  # each send passes the rate


class TestWiring:
    def test_the_container_limits_its_client(self, redis_url: str, server: SimulatorServer, tmp_path: Path) -> None:
        settings = load_settings(
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
            transport = container.transport("imis")
            assert isinstance(transport, LimitedTransport)
            assert transport.limiter.max_concurrency == 3
            assert transport.limiter.rate == 25
        finally:
            container.close()
