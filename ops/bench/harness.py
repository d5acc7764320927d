"""The parts a benchmark scenario needs: the simulator in its own process, a fresh ledger and queue,
worker processes, and readings from /proc (CPU seconds, peak memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from tests.support.databases import scratch_postgres_schema

ROOT = Path(__file__).resolve().parents[2]
USERNAME = "bench"
PASSWORD = "bench-secret"  # noqa: S105 - the loopback simulator's login, nothing real


def ints(text: str) -> list[int]:
    """A comma list of whole numbers (a command-line sweep)."""
    return [int(x) for x in text.split(",") if x.strip()]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> float:
    return os.getloadavg()[0]


# --- the simulator --------------------------------------------------------------------------------


@dataclass
class SimulatorProcess:
    """A simulator in its own process, driven through its `/_sim/` admin API."""

    process: subprocess.Popen[str]
    url: str

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=600, trust_env=False)

    def set_latency(self, latency_ms: float) -> None:
        with self.admin() as client:
            client.patch("/_sim/faults", json={"latency_ms": latency_ms}).raise_for_status()

    def reset_counters(self) -> None:
        with self.admin() as client:
            client.post("/_sim/counters/reset").raise_for_status()

    def counters(self) -> dict[str, Any]:
        with self.admin() as client:
            counters: dict[str, Any] = client.get("/_sim/counters").json()
            return counters

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def sample_in_flight(self, interval: float = 0.02) -> InFlightSampler:
        return InFlightSampler(self.url, interval)


@dataclass
class Simulator(SimulatorProcess):
    """The iMIS simulator, with the billing it was started with."""

    original_key: str

    def seed(self, invoices: int, seed: int) -> dict[str, Any]:
        with self.admin() as client:
            reply = client.post("/_sim/billings", json={"invoices": invoices, "seed": seed})
            reply.raise_for_status()
            seeded: dict[str, Any] = reply.json()
            return seeded


class InFlightSampler:
    """Reads the simulator's calls in flight every `interval` s (the admin API is not counted)."""

    def __init__(self, url: str, interval: float) -> None:
        self._url = url
        self._interval = interval
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InFlightSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=10, trust_env=False) as client:
            while not self._stop.wait(self._interval):
                self._samples.append(int(client.get("/_sim/counters").json()["in_flight"]))

    @property
    def mean(self) -> float:
        return sum(self._samples) / len(self._samples) if self._samples else float("nan")


@contextmanager
def simulator_process(command: list[str], ready: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """A simulator (`python -m simulators.<name> ...`) on a free loopback port: its process, its URL, and
    the rest of the line starting with `ready` that it prints once it serves (the seeded selection)."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = selected = ""
    try:
        deadline = time.monotonic() + 300
        while not selected and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited before it was ready")
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].split()[0]
            if line.startswith(ready):
                selected = line[len(ready) :].strip()
        yield proc, url, selected
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def simulator(*, invoices: int, latency_ms: float, seed: int = 1) -> Iterator[Simulator]:
    """`python -m simulators.imis` on a free loopback port, one billing of `invoices` seeded."""
    command = [
        sys.executable,
        "-m",
        "simulators.imis",
        "--port",
        "0",
        "--invoices",
        str(invoices),
        "--seed",
        str(seed),
        "--username",
        USERNAME,
        "--password",
        PASSWORD,
        "--latency-ms",
        str(latency_ms),
        "--task-step-seconds",
        "0.05",
    ]
    with simulator_process(command, "original BillingLogKey: ") as (proc, url, key):
        yield Simulator(proc, url, original_key=key)


def token(url: str) -> str:
    reply = httpx.post(
        f"{url}/token",
        data={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
        timeout=30,
        trust_env=False,
    )
    reply.raise_for_status()
    access: str = reply.json()["access_token"]
    return access


# --- ledger and broker ----------------------------------------------------------------------------


@dataclass
class Backends:
    """Where the orchestrator keeps its state: a Redis URL (None = embedded) and a database URL (None = SQLite)."""

    redis_url: str | None
    database_url: str | None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rebill-bench-")))

    def describe(self) -> str:
        redis = "Redis " + (_safe(self.redis_url) if self.redis_url else "embedded (unix socket)")
        database = "PostgreSQL " + _safe(self.database_url) if self.database_url else "SQLite (WAL)"
        return f"{redis}; ledger {database}"

    @contextmanager
    def ledger_url(self) -> Iterator[str]:
        """A fresh, empty ledger per scenario: a new SQLite file or a new PostgreSQL schema."""
        if not self.database_url:
            yield f"sqlite:///{self.workdir / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
            return
        with scratch_postgres_schema(self.database_url, prefix="rebill_bench") as url:
            yield url


def _safe(url: str) -> str:
    parsed = make_url(url) if "://" in url else None
    if parsed is None:
        return url
    return parsed.render_as_string(hide_password=True)


# --- worker processes -----------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.tail()}")
            if " ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start in {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_worker(env: dict[str, str], *, threads: int, log: Path) -> Worker:
    with log.open("w") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.entrypoints.cli",
                "worker",
                f"--concurrency={threads}",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log)


def profile(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` (on-CPU samples only) into collapsed stacks; stop it with SIGINT."""
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
