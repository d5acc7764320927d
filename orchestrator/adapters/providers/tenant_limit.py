"""One limit per tenant, shared by every worker on every machine: calls in flight, and optionally a rate.

`TenantLimiter` is a counting semaphore held in Redis. Each holder is a member of a sorted set
scored by the end of its lease (Redis's own clock, so machines with skewed clocks agree). A
background thread renews the leases of the process's live holders every quarter lease, so a call
may last as long as it must; a holder killed mid-call stops being renewed and stops counting once
its lease ends, so a slot is never lost for good.
A caller that finds every slot taken registers as a waiter and blocks in BLPOP: a release pushes
one wake-up while waiters are registered, so the next call starts a Redis round trip after the last
one ended, with no polling and no CPU spent waiting. A waiter also wakes when the earliest lease
runs out (a dead holder), and at least every `max_block_seconds` in case a wake-up was lost.

Threads of one process pass slots to each other without Redis. At most one thread per process
waits on Redis (the leader: one waiter registration and one BLPOP per process); the others queue
in memory, oldest first, and a release hands its slot (the same token, still counted in Redis and
renewed by the process) straight to the first of them, so a saturated worker pays no round trip
per call. A slot passes on in memory only within `handoff_seconds` (default 1 s) of being taken
from Redis; after that it is released there, where the leaders of every process compete for it,
so other processes (and the leader itself) are passed over for at most about that long. With a
rate, nothing is handed over: every send must pass the GCRA.

The optional rate is a GCRA (generic cell rate algorithm) with a burst of one: successive sends
are spaced at least `1 / rate` seconds apart across all workers, so over any T seconds at most
`rate * T + 1` calls start. The slot and the send time are taken in the same script: a caller that
gets a slot is told how long to wait before sending (its place in the rate's queue) and keeps the
slot meanwhile. Callers are thereby spread over distinct send times instead of waking together.

If Redis loses its data (restarted empty), the slots of the calls in flight at that moment are
forgotten, so for the length of those calls up to twice the cap can be in flight; while Redis is
unreachable, callers wait for it up to their pool timeout and then fail with nothing sent.

`LimitedTransport` wraps the real httpx transport, so every exchange the process's iMIS client
hands to it (`/token` included) holds a slot from before the request is written until its
response is closed.

Why not a library. We looked at what is kept up and fits Redis:
- `limits` (Flask-Limiter's backend): rate windows only, timestamps from each client's clock,
  whole-second windows, no blocking wait; no concurrency limit.
- `pyrate-limiter`: leaky-bucket rates only, client clocks (its RedisBucket avoids Redis TIME).
- `throttled-py`: rates only (GCRA on Redis TIME, good), but its blocking wait sleeps at least
  200 ms per try (measured: 10 sends/s delivered for a 20/s quota) and its redis extra pins
  redis-py < 8 while we run 8.
- `dramatiq.rate_limits.ConcurrentRateLimiter`: a distributed semaphore, but one counter with one
  TTL for all holders: a dead holder's slot comes back only once the whole key sits idle for the
  TTL, i.e. never under steady load; no blocking acquire; and it brings a second task framework.
- `redis-limiters` / `self-limiters` Semaphore: a list of tokens taken with BLPOP; a dead holder's
  token never returns while the semaphore is in use, and an idle key's expiry can add a token.
None gives a cross-process semaphore with per-holder leases, so this is a small Lua-scripted one;
the rate lives in the same script so one round trip takes both, on one clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import redis

__all__ = [
    "HANDOFF_SECONDS",
    "SLOT_LEASE_SECONDS",
    "LimitedTransport",
    "LimiterUnavailable",
    "Permit",
    "SlotTimeout",
    "TenantLimiter",
    "tenant_key",
]

log = logging.getLogger(__name__)

#: How long a killed holder's slot stays taken (live holders are renewed every quarter of it).
SLOT_LEASE_SECONDS = 20.0

#: How long after a slot was taken from Redis it may still pass between threads of the process.
HANDOFF_SECONDS = 1.0

# KEYS: holders (zset token -> lease end ms), waiters (zset token -> registration end ms), rate (GCRA TAT)
# ARGV: limit, lease ms, token, rate interval ms (0: no rate), wait registration ms
# -> {1, send delay ms} with the slot taken, or {0, ms until the earliest lease ends} as a waiter
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local token = ARGV[3]
local interval = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local wait = tonumber(ARGV[5])
  redis.call('ZADD', KEYS[2], now + wait, token)
  redis.call('PEXPIRE', KEYS[2], wait + 1000)
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(first[2]) - now)}
end
local delay = 0
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[3]) or '0')
  if tat < now then tat = now end
  delay = tat - now
  redis.call('SET', KEYS[3], tat + interval, 'PX', delay + interval + 1000)
end
redis.call('ZADD', KEYS[1], now + delay + lease, token)
redis.call('PEXPIRE', KEYS[1], delay + lease + 1000)
redis.call('ZREM', KEYS[2], token)
return {1, delay}
"""

# KEYS: holders; ARGV: lease ms, tokens... -> how many of the tokens still held a slot (their leases renewed)
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'GT', 'CH', now + lease, ARGV[i])
end
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], lease + 1000) end
return renewed
"""

# KEYS: holders, waiters, wake (list); ARGV: token -> 1 if the token held a slot
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local waiting = redis.call('ZCARD', KEYS[2])
if waiting > 0 and redis.call('LLEN', KEYS[3]) < waiting then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('PEXPIRE', KEYS[3], 60000)
end
return held
"""


class LimiterUnavailable(httpx.ConnectError):
    """Redis could not be asked for a slot: nothing was sent to the tenant."""


class SlotTimeout(httpx.PoolTimeout):
    """No slot came free in time: nothing was sent to the tenant."""


@dataclass(frozen=True, slots=True)
class Permit:
    token: str
    send_at: float  # time.monotonic() before which the rate says not to send


@dataclass(slots=True)
class _Held:
    since: float  # time.monotonic() when the token was taken from Redis
    permit: Permit  # its holder now: a release of any other permit of the token is stale


@dataclass(eq=False, slots=True)
class _Waiter:
    """A thread queued for a slot from a thread of this process, or for the lead (its turn to wait on Redis)."""

    wake: threading.Condition
    permit: Permit | None = None
    lead: bool = False


def tenant_key(base_url: str, provider: str = "imis") -> str:
    """Redis key prefix of one tenant of one platform; the hash tag keeps every key of a limit on one
    cluster slot. Two platforms never share a slot, even behind one host."""
    return "rebill:limit:{" + provider + ":" + base_url.rstrip("/").lower() + "}"


class TenantLimiter:
    """At most `max_concurrency` holders at once across every process on the same Redis and key.

    `lease_seconds` is how long a dead holder's slot stays taken; live holders are renewed every
    quarter of it. `rate` is requests per second for all holders, or None. `handoff_seconds` is how
    long after a slot was taken from Redis it may pass straight to another thread of this process
    (0: never); it bounds how long other processes' waiters can be passed over. Hand-offs so far are
    counted in `handoffs`.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        max_concurrency: int,
        lease_seconds: float,
        rate: float | None = None,
        max_block_seconds: float = 2.0,
        handoff_seconds: float = HANDOFF_SECONDS,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        if handoff_seconds < 0:
            raise ValueError("handoff_seconds must not be negative")
        self._redis = client
        self._holders = f"{key}:holders"
        self._waiters = f"{key}:waiters"
        self._wake = f"{key}:wake"
        self._rate_key = f"{key}:rate"
        self.max_concurrency = max_concurrency
        self.rate = rate
        self._lease_ms = max(1, round(lease_seconds * 1000))
        self._interval_ms = 0 if rate is None else max(1, round(1000 / rate))
        self._max_block = max_block_seconds
        # Every send must pass the rate's schedule in Redis: with a rate, slots are never handed over.
        self._handoff_seconds = handoff_seconds if rate is None else 0.0
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        self._renew_script = client.register_script(_RENEW)
        self._prefix = f"{socket.gethostname()}:{os.getpid()}:"
        self.handoffs = 0
        self._unreachable: redis.RedisError | None = None  # Redis's error while it fails, for the queued threads
        self._renewer: threading.Thread | None = None
        self._renewer_pid = 0
        self._closed = threading.Event()
        self._forget_threads()
        _LIMITERS.add(self)

    def _forget_threads(self) -> None:
        """The state shared by this process's threads; new in a forked child (only the forking thread lives on,
        a lock another thread held stays held, and the parent's slots are the parent's to renew and release)."""
        self._lock = threading.Lock()  # guards everything below
        self._held: dict[str, _Held] = {}  # the process's live slots, renewed in the background
        self._leading = False  # a thread of the process is waiting on Redis
        self._queue: deque[_Waiter] = deque()  # the other waiting threads, oldest first

    @classmethod
    def from_url(
        cls,
        url: str,
        key: str,
        *,
        max_concurrency: int,
        lease_seconds: float,
        rate: float | None = None,
        max_block_seconds: float = 2.0,
        handoff_seconds: float = HANDOFF_SECONDS,
    ) -> TenantLimiter:
        # Blocking waits last at most max_block_seconds; the socket timeout leaves room above that.
        client = redis.Redis.from_url(
            url, socket_timeout=max_block_seconds + 5, socket_connect_timeout=5, health_check_interval=30
        )
        return cls(
            client,
            key,
            max_concurrency=max_concurrency,
            lease_seconds=lease_seconds,
            rate=rate,
            max_block_seconds=max_block_seconds,
            handoff_seconds=handoff_seconds,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self._holders!r}, max_concurrency={self.max_concurrency}, rate={self.rate})"

    def acquire(self, timeout: float | None = None) -> Permit:
        """Take a slot, waiting up to `timeout` seconds (None: without end).

        SlotTimeout if none came free in time; LimiterUnavailable if Redis stayed unreachable all
        that time (a short outage is waited out, so it costs no attempt of the item being worked).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._handoff_seconds:
            return self._acquire_in_redis(timeout, deadline)
        with self._lock:
            waiter = _Waiter(threading.Condition(self._lock)) if self._leading else None
            if waiter is None:
                self._leading = True
            else:
                self._queue.append(waiter)
        if waiter is not None:
            permit = self._wait_in_process(waiter, timeout, deadline)
            if permit is not None:
                return permit
        try:  # the lead: wait on Redis for the whole process
            return self._acquire_in_redis(timeout, deadline)
        finally:
            with self._lock:
                self._pass_lead()

    def _wait_in_process(self, waiter: _Waiter, timeout: float | None, deadline: float | None) -> Permit | None:
        """Wait in the queue: the permit another thread handed over, or None once it is this thread's turn to lead."""
        try:
            with self._lock:
                while waiter.permit is None and not waiter.lead:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        error = self._unreachable  # the leader's latest answer from Redis
                        raise self._slot_timeout(timeout) if error is None else _unavailable(error)
                    waiter.wake.wait(remaining)
                return waiter.permit
        except BaseException:
            # Timed out or interrupted. A slot or the lead may have come in meanwhile: pass it on, never drop it.
            with self._lock:
                permit, lead = waiter.permit, waiter.lead
                if lead:
                    self._pass_lead()
                elif permit is None:
                    self._queue.remove(waiter)
            if permit is not None:
                self.release(permit)
            raise

    def _pass_lead(self) -> None:
        """The leader is done waiting on Redis: the oldest queued thread waits there next (lock held)."""
        if self._queue:
            waiter = self._queue.popleft()
            waiter.lead = True
            waiter.wake.notify()
        else:
            self._leading = False

    def _acquire_in_redis(self, timeout: float | None, deadline: float | None) -> Permit:
        token = self._prefix + uuid.uuid4().hex
        while True:
            remaining = self._max_block if deadline is None else deadline - time.monotonic()
            wait = max(0.001, min(remaining, self._max_block))
            try:
                acquired, millis = self._acquire_script(
                    keys=[self._holders, self._waiters, self._rate_key],
                    args=[self.max_concurrency, self._lease_ms, token, self._interval_ms, round(wait * 1000) + 1000],
                )
            except redis.RedisError as error:
                self._outage(error, remaining)
                continue
            self._unreachable = None
            if acquired:
                return self._hold(token, time.monotonic() + millis / 1000)
            if remaining <= 0:
                self._forget_waiter(token)
                raise self._slot_timeout(timeout)
            # Block until a release wakes us or the earliest lease runs out, whichever comes first.
            block = max(0.001, min(wait, millis / 1000))
            try:
                self._redis.blpop([self._wake], block)
            except redis.RedisError as error:
                self._outage(error, remaining)

    def _slot_timeout(self, timeout: float | None) -> SlotTimeout:
        return SlotTimeout(
            f"no slot of {self.max_concurrency} free within {timeout or 0:g} s "
            "(REBILL_IMIS_MAX_CONCURRENCY, shared by every worker)"
        )

    def _outage(self, error: redis.RedisError, remaining: float) -> None:
        """Redis failed: try again shortly while time is left, else give up with nothing sent."""
        self._unreachable = error
        if remaining <= 0:
            raise _unavailable(error)
        time.sleep(min(0.5, remaining))

    def release(self, permit: Permit) -> None:
        """Give the slot back: to the oldest thread of the process waiting for one while the slot is young,
        else to Redis, waking one waiter there. A failure in Redis only costs the slot until its lease ends."""
        with self._lock:
            held = self._held.get(permit.token)
            if held is not None and held.permit is not permit:
                return  # released before: the slot has since gone to another thread, which still holds it
            if held is not None and self._queue and time.monotonic() - held.since < self._handoff_seconds:
                waiter = self._queue.popleft()
                waiter.permit = held.permit = Permit(permit.token, time.monotonic())
                self.handoffs += 1
                waiter.wake.notify()
                return
            self._held.pop(permit.token, None)
        try:
            self._release_script(keys=[self._holders, self._waiters, self._wake], args=[permit.token])
        except redis.RedisError as error:
            log.warning("could not release a tenant slot (it frees itself when its lease ends): %s", error)

    @staticmethod
    def wait_to_send(permit: Permit) -> None:
        """Sleep until the rate allows this permit's call (at once when no rate is set)."""
        delay = permit.send_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def holders(self) -> int:
        """Live holders now (for tests and monitoring)."""
        now_ms = _redis_now_ms(self._redis)
        return int(self._redis.zcount(self._holders, now_ms, "+inf"))

    def reset(self) -> None:
        """Forget every holder, waiter and the rate's schedule (tests, benchmarks)."""
        self._redis.delete(self._holders, self._waiters, self._wake, self._rate_key)

    def close(self) -> None:
        self._closed.set()
        self._redis.close()

    def _hold(self, token: str, send_at: float) -> Permit:
        permit = Permit(token, send_at)
        with self._lock:
            self._held[token] = _Held(time.monotonic(), permit)
            if self._renewer is None or self._renewer_pid != os.getpid() or not self._renewer.is_alive():
                # Started on first use, and again in a forked child (threads do not survive a fork).
                self._renewer_pid = os.getpid()
                self._renewer = threading.Thread(target=self._renew_forever, name="rebill-slot-leases", daemon=True)
                self._renewer.start()
        return permit

    def _renew_forever(self) -> None:
        interval = self._lease_ms / 4000
        while not self._closed.wait(interval):
            with self._lock:
                tokens = list(self._held)
            if not tokens:
                continue
            try:
                self._renew_script(keys=[self._holders], args=[self._lease_ms, *tokens])
            except redis.RedisError as error:
                log.warning("could not renew the leases of %s tenant slot(s): %s", len(tokens), error)

    def _forget_waiter(self, token: str) -> None:
        with contextlib.suppress(redis.RedisError):  # the registration also ends by itself
            self._redis.zrem(self._waiters, token)


_LIMITERS: weakref.WeakSet[TenantLimiter] = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    for limiter in list(_LIMITERS):
        limiter._forget_threads()


os.register_at_fork(after_in_child=_forget_threads_after_fork)


def _unavailable(error: redis.RedisError) -> LimiterUnavailable:
    unavailable = LimiterUnavailable(
        f"the broker's Redis, which holds the tenant's call limit, is unreachable (REBILL_BROKER_URL): {error}"
    )
    unavailable.__cause__ = error
    return unavailable


def _redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class _ReleasingStream(httpx.SyncByteStream):
    """The response body; closing it (httpx does once the body is read) gives the slot back, once."""

    def __init__(self, stream: httpx.SyncByteStream, release: Any) -> None:
        self._stream = stream
        self._release = release
        self._lock = threading.Lock()
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            with self._lock:
                released, self._released = self._released, True
            if not released:
                self._release()


class LimitedTransport(httpx.BaseTransport):
    """Every request holds one of the tenant's slots from before it is sent until its response is closed
    (inside `one_slot`, until the sequence ends).

    The slot wait is bounded by the request's pool timeout (the `pool` of the timeout the iMIS client
    sends with every request): running out raises `SlotTimeout`, an `httpx.PoolTimeout`, which the
    iMIS client classifies as transient with nothing sent. A Redis failure raises
    `LimiterUnavailable` (an `httpx.ConnectError`): also nothing sent.
    """

    def __init__(self, inner: httpx.BaseTransport, limiter: TenantLimiter) -> None:
        self._inner = inner
        self.limiter = limiter
        self._sequence = threading.local()  # `permit`: the slot this thread's open sequence holds, if any

    @contextlib.contextmanager
    def one_slot(self) -> Iterator[None]:
        """This thread's calls inside share one slot, taken at the first call and given back at the end.

        A thread makes one call at a time, so the cap still holds; the slot only sits idle between
        the sequence's calls, and each call after the first costs no slot round trip. With a rate,
        every call still takes its own slot (each send must pass the rate). Nested use is the outer one.
        """
        if hasattr(self._sequence, "permit") or self.limiter.rate is not None:
            yield
            return
        self._sequence.permit = None
        try:
            yield
        finally:
            permit: Permit | None = self._sequence.permit
            del self._sequence.permit
            if permit is not None:
                self.limiter.release(permit)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        in_sequence = hasattr(self._sequence, "permit")
        permit = self._sequence.permit if in_sequence else None
        if permit is None:
            timeouts = request.extensions.get("timeout") or {}
            permit = self.limiter.acquire(timeout=timeouts.get("pool"))
            if in_sequence:
                self._sequence.permit = permit  # given back when the sequence ends, whatever happens here
        try:
            self.limiter.wait_to_send(permit)
            response = self._inner.handle_request(request)
        except BaseException:
            if not in_sequence:
                self.limiter.release(permit)
            raise
        if in_sequence:
            return response
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream), "a sync transport answers with a sync stream"
        response.stream = _ReleasingStream(stream, lambda: self.limiter.release(permit))
        return response

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self.limiter.close()
