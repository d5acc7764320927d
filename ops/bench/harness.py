"""The parts a benchmark scenario needs: the simulator in its own process, a fresh ledger and queue,
worker processes, an orchestrator run timed until its items settle, readings from /proc (CPU seconds,
peak memory), and the comparison of a platform's run with its bare loop (`python -m ops.bench.aria`,
`python -m ops.bench.salesforce`)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy.engine import make_url

from tests.support.databases import scratch_postgres_schema

if TYPE_CHECKING:
    from orchestrator.bootstrap import Container
    from orchestrator.config import Settings
    from orchestrator.domain.run import ItemState, Run

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


def wait_until_quiet(below: float | None, *, check_every: float = 15.0) -> float:
    """Sleep until the 1-minute load average is under `below` (None: do not wait); the load then.

    The machine is shared: a measurement started while other work runs measures that work too."""
    load = load_average()
    while below is not None and load >= below:
        print(f"  load average {load:.2f}, waiting for it to fall under {below:g}", flush=True)
        time.sleep(check_every)
        load = load_average()
    return load


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

    def stop_embedded_redis(self) -> None:
        """The embedded Redis a run started in `workdir` (when no Redis URL was given) outlives its workers: stop it."""
        from orchestrator.adapters.broker import embedded

        if not self.redis_url:
            embedded.stop(self.workdir / "data")

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


@contextmanager
def profiling(pids: list[int], folder: Path | None) -> Iterator[None]:
    """py-spy on each of `pids` while the block runs (nothing when `folder` is None)."""
    spies = [profile(pid, folder / f"worker-{i}.txt") for i, pid in enumerate(pids)] if folder else []
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)


# --- an orchestrator on a fresh ledger --------------------------------------------------------------


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The settings the workers read from `env` (REBILL_* variables), for this process's own container."""
    from orchestrator.config import load_settings

    return load_settings(**{k[len("REBILL_") :].lower(): v for k, v in env.items()})


def worker_env(backends: Backends, ledger_url: str, *, threads: int) -> dict[str, str]:
    """What every benchmark's orchestrator shares: the ledger, a queue of its own, the broker, the threads."""
    env = {
        "REBILL_WORKER_CONCURRENCY": str(threads),
        "REBILL_DATA_DIR": str(backends.workdir / "data"),
        "REBILL_DATABASE_URL": ledger_url,
        "REBILL_QUEUE": f"rebill-bench-{time.time_ns()}",
    }
    if backends.redis_url:
        env["REBILL_BROKER_URL"] = backends.redis_url
    return env


@dataclass
class Orchestrator:
    """This process's container on a fresh ledger (it starts runs and reads the ledger), and the worker
    processes, started and ready."""

    env: dict[str, str]
    container: Container
    workers: list[Worker]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(worker.pid) for worker in self.workers)

    def peak_rss_mib(self) -> float:
        return max(peak_rss_mib(worker.pid) for worker in self.workers)

    def start_run(
        self, provider: str, selector: Mapping[str, Any], provider_options: Mapping[str, Any] | None = None
    ) -> Run:
        """What `rebill run` does: open the run and hand its planning to a worker."""
        from orchestrator.services import planning

        return planning.start_run(
            self.container.context,
            provider,
            selector,
            self.container.settings.run_options(),
            provider_options=provider_options,
        )

    def timed_run(
        self,
        provider: str,
        selector: Mapping[str, Any],
        provider_options: Mapping[str, Any] | None = None,
        *,
        write: str,
        before: Callable[[], object],
        profile: Path | None = None,
    ) -> TimedRun:
        """A run started as `rebill run` starts it, timed until its items settle: wall seconds and the workers'
        CPU. `before` runs just before the clock starts (the simulator's counters reset); `write` names the
        operation (SQL LIKE) whose first call is the run's first write."""
        with profiling([worker.pid for worker in self.workers], profile):
            before()
            cpu_before = self.cpu_seconds()
            started = time.perf_counter()
            run = self.start_run(provider, selector, provider_options)
            counts = self.wait_settled(run.id)
            wall = time.perf_counter() - started
            cpu = self.cpu_seconds() - cpu_before
        times = run_times(self.container.ledger, run.id, write=write)
        return TimedRun(run.id, counts, wall, cpu, self.peak_rss_mib(), times)

    def wait_settled(self, run_id: str, *, timeout: float = 3600) -> dict[ItemState, int]:
        """Poll the ledger until the run is planned and none of its items is open; its item counts then."""
        from orchestrator.domain.run import OPEN_ITEM_STATES

        ledger = self.container.ledger
        deadline = time.monotonic() + timeout
        while True:
            run = ledger.get_run(run_id)
            assert run is not None
            if run.planned:
                counts = ledger.item_counts(run_id)
                if not any(counts.get(state, 0) for state in OPEN_ITEM_STATES):
                    return counts
            if run.state.is_final or time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} stopped as {run.state.value}: {run.reason}")
            time.sleep(0.05)


@dataclass(frozen=True)
class TimedRun:
    run_id: str
    counts: dict[ItemState, int]
    wall: float
    cpu_seconds: float
    peak_rss_mib: float
    times: RunTimes

    def measured(
        self, done: int, *, counters: Mapping[str, Any], writes: int, extra: Mapping[str, Any] | None = None
    ) -> Measured:
        """The orchestrator's result: `done` items from the run's creation to the last settled (the ledger's
        times), the rate from its first write on, what the simulator counted (`counters`), and `extra`."""
        return Measured(
            "orchestrator",
            done,
            self.times.settled_seconds(self.wall),
            self.cpu_seconds,
            counters["peak_concurrency"],
            writes,
            {
                "first_write_seconds": self.times.first_write_seconds(),
                "steady_per_second": self.times.steady_per_second(done),
                "worker_peak_rss_mib": self.peak_rss_mib,
                "requests": counters["requests"],
                **(extra or {}),
            },
        )


@contextmanager
def orchestrator(
    backends: Backends, provider_env: Mapping[str, str], *, threads: int, workdir: Path, workers: int = 1
) -> Iterator[Orchestrator]:
    """A fresh ledger and queue, migrated before `workers` worker processes start on them (so they do not
    race to migrate it); the workers are stopped on the way out."""
    from orchestrator.bootstrap import Container

    with backends.ledger_url() as ledger_url:
        env = {**worker_env(backends, ledger_url, threads=threads), **provider_env}
        container = Container(settings_from_env(env))
        started: list[Worker] = []
        try:
            container.ledger  # noqa: B018 - migrated here, before the workers start
            started += [start_worker(env, threads=threads, log=workdir / f"worker-{i}.log") for i in range(workers)]
            for worker in started:
                worker.wait_ready()
            yield Orchestrator(env, container, started)
        finally:
            for worker in started:
                worker.stop()
            container.close()


@dataclass
class RunTimes:
    created_at: datetime
    first_reversal_at: datetime | None
    last_settled_at: datetime | None

    def settled_seconds(self, wall: float) -> float:
        """From the run's creation to its last item settled (`wall`, as the bench timed it, when none did)."""
        return (self.last_settled_at - self.created_at).total_seconds() if self.last_settled_at else wall

    def first_write_seconds(self) -> float | None:
        """From the run's creation to its first write: opening, planning the first page, the first claim."""
        return (self.first_reversal_at - self.created_at).total_seconds() if self.first_reversal_at else None

    def steady_per_second(self, settled: int) -> float | None:
        """`settled` items over the time from the first write to the last item settled (planning's head left out)."""
        if self.first_reversal_at is None or self.last_settled_at is None:
            return None
        seconds = (self.last_settled_at - self.first_reversal_at).total_seconds()
        return settled / seconds if seconds > 0 else None


def run_times(ledger: Any, run_id: str, *, write: str) -> RunTimes:
    """When the run was created, its first write (an operation LIKE `write`) was sent, and its last item
    settled (from the ledger)."""
    from sqlalchemy import func, select

    from orchestrator.adapters.ledger.models import ApiCallRow, ItemRow, RunRow

    with ledger._read.connect() as conn:
        created = conn.execute(select(RunRow.created_at).where(RunRow.id == run_id)).scalar_one()
        first = conn.execute(
            select(func.min(ApiCallRow.started_at)).where(ApiCallRow.run_id == run_id, ApiCallRow.operation.like(write))
        ).scalar()
        last = conn.execute(select(func.max(ItemRow.updated_at)).where(ItemRow.run_id == run_id)).scalar()
    return RunTimes(created, _utc(first), _utc(last))


def calls_until(ledger: Any, run_id: str, until: datetime | None) -> dict[str, int]:
    """The run's API calls (as the ledger recorded them) started by `until` (all when None), per operation."""
    from sqlalchemy import func, select

    from orchestrator.adapters.ledger.models import ApiCallRow

    query = select(ApiCallRow.operation, func.count()).where(ApiCallRow.run_id == run_id)
    if until is not None:
        query = query.where(ApiCallRow.started_at <= until)
    with ledger._read.connect() as conn:
        return {str(operation): int(n) for operation, n in conn.execute(query.group_by(ApiCallRow.operation))}


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- a platform's run against its bare loop ---------------------------------------------------------


@dataclass
class Measured:
    name: str
    invoices: int
    seconds: float
    cpu_seconds: float
    peak_in_flight: int
    reversals: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.invoices / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_ms_per_invoice(self) -> float:
        return self.cpu_seconds / self.invoices * 1000 if self.invoices else float("nan")


def show(result: Measured, *, done: str = "invoices") -> None:
    """One contender's line of progress on stdout."""
    extra = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.extra.items())
    print(
        f"  {result.name:22} {result.invoices:6} {done} in {result.seconds:7.2f} s = {result.per_second:7.1f}/s, "
        f"peak in flight {result.peak_in_flight}, CPU {result.cpu_ms_per_invoice:.3f} ms/invoice"
        + (f"; {extra}" if extra else ""),
        flush=True,
    )


def platform_args(
    prog: str,
    doc: str | None,
    argv: list[str] | None = None,
    *,
    configure: Callable[[argparse.ArgumentParser], object] | None = None,
) -> argparse.Namespace:
    """The command line every platform's bench shares: the sizes, latencies and caps it sweeps, and where;
    `configure` adds a platform's own options."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").splitlines()[0])
    if configure is not None:
        configure(parser)
    parser.add_argument("--invoices", type=ints, default=[2000, 20000], help="run sizes")
    parser.add_argument("--latency-ms", type=floats, default=[50.0, 0.0], help="simulator latency per call")
    parser.add_argument("--cap", type=ints, default=[8], help="the tenant limit (REBILL_<PLATFORM>_MAX_CONCURRENCY)")
    parser.add_argument("--threads", type=int, default=16, help="worker threads")
    parser.add_argument("--quiet-below", type=float, help="before each contest, wait for the load average under this")
    parser.add_argument("--redis-url", default=os.environ.get("REBILL_BENCH_REDIS_URL"), help="default: embedded")
    parser.add_argument("--database-url", default=os.environ.get("REBILL_BENCH_DATABASE_URL"), help="default: SQLite")
    parser.add_argument("--profile", type=Path, help="py-spy the workers (collapsed stacks into this folder)")
    parser.add_argument("--json", type=Path, help="where to write the results (default .rebill/bench/)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Contest:
    """One comparison of a platform's bench: where the orchestrator keeps its state, the simulator's
    latency, the run's size, the tenant's cap, the worker's threads, and where py-spy writes (if at all)."""

    backends: Backends
    latency_ms: float
    invoices: int
    cap: int
    threads: int
    profile: Path | None

    def workdir(self, name: str) -> Path:
        """A fresh folder for one orchestrator's worker logs."""
        folder = self.backends.workdir / f"{name}-{time.time_ns()}"
        folder.mkdir(parents=True)
        return folder


#: A platform's contest: the bare loop's and the orchestrator's results.
Contender = Callable[[Contest], tuple[Measured, Measured]]


def compare_platform(
    platform_name: str, args: argparse.Namespace, contest: Contender, *, calls_per_invoice: int, done: str
) -> None:
    """Every (latency, size, cap) of `args` contested, each row with its ratio to the bare loop, to the
    theoretical limit `cap / (calls per invoice x latency)`, and the CPU orchestrating adds; a table on
    stdout and the results as JSON."""
    backends = Backends(args.redis_url, args.database_url)
    info = machine()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"machine: {info}\nbackends: {backends.describe()}\nload average before: {load_average():.2f}")
    rows: list[dict[str, Any]] = []
    try:
        for latency, invoices, cap in itertools.product(args.latency_ms, args.invoices, args.cap):
            load = wait_until_quiet(args.quiet_below)
            print(f"\n== {platform_name}: {invoices} invoices, {latency:g} ms latency, cap {cap} ==", flush=True)
            print(f"  load average {load:.2f}", flush=True)
            profile = args.profile / f"{latency:g}ms-{invoices}-cap{cap}" if args.profile else None
            bare, ours = contest(Contest(backends, latency, invoices, cap, args.threads, profile))
            show(bare, done=done)
            show(ours, done=done)
            limit = cap / (calls_per_invoice * latency / 1000) if latency > 0 else math.inf
            rows += [
                {
                    "latency_ms": latency,
                    "invoices": invoices,
                    "cap": cap,
                    "contender": result.name,
                    done: result.invoices,
                    "seconds": round(result.seconds, 3),
                    "per_second": round(result.per_second, 1),
                    "vs_bare": round(result.per_second / bare.per_second, 3),
                    # From the first write on: what acting achieves once planning has handed it work.
                    "steady_vs_bare": (
                        round(result.extra["steady_per_second"] / bare.per_second, 3)
                        if result.extra.get("steady_per_second")
                        else None
                    ),
                    "vs_theoretical": round(result.per_second / limit, 3) if math.isfinite(limit) else None,
                    "peak_in_flight": result.peak_in_flight,
                    "cpu_ms_per_invoice": round(result.cpu_ms_per_invoice, 3),
                    "orchestration_cpu_ms_per_invoice": (
                        round(result.cpu_ms_per_invoice - bare.cpu_ms_per_invoice, 3) if result is not bare else None
                    ),
                    "load_average_before": round(load, 2),
                    **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.extra.items()},
                }
                for result in (bare, ours)
            ]
    finally:
        backends.stop_embedded_redis()
    print(f"\n| latency | invoices | cap | contender | {done}/s | vs bare | from the first write, vs bare "
          "| vs theoretical | CPU ms/invoice | orchestration CPU ms/invoice | load average |")  # fmt: skip
    print("|---" * 11 + "|")
    for row in rows:
        print(
            f"| {row['latency_ms']:g} ms | {row['invoices']} | {row['cap']} | {row['contender']} | {row['per_second']} "
            f"| {row['vs_bare']} | {row['steady_vs_bare'] or '-'} | {row['vs_theoretical'] or '-'} "
            f"| {row['cpu_ms_per_invoice']} "
            f"| {row['orchestration_cpu_ms_per_invoice'] or '-'} | {row['load_average_before']} |"
        )
    results = {
        "platform": platform_name.lower(),
        "machine": info,
        "backends": backends.describe(),
        "commit": commit(),
        "started_at": started_at,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
        "throughput": rows,
        "load_average_after": round(load_average(), 2),
    }
    target = args.json or ROOT / ".rebill" / "bench" / f"{platform_name.lower()}-{int(time.time())}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {target}")


def commit() -> str:
    """The checked-out commit (with `+dirty` when the work tree differs), for the record."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return head.stdout.strip() + ("+dirty" if dirty else "")
