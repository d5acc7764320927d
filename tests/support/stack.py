"""A whole rebill deployment for integration and chaos tests: real Redis, a real Celery worker
process, a real ledger database and every platform's simulator over HTTP on loopback (one worker
serves them all, as in production).

Two backends: `embedded` (the default a newcomer gets: embedded Redis + SQLite under a data dir)
and `services` (REBILL_TEST_REDIS_URL + REBILL_TEST_DATABASE_URL, when set).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

from click.testing import CliRunner, Result

from orchestrator.adapters.broker import embedded
from orchestrator.bootstrap import Container
from orchestrator.config import Settings, load_settings
from orchestrator.domain.run import Run, RunState
from orchestrator.entrypoints.cli.main import CliState, cli
from simulators.imis.seeding import SeededBilling
from simulators.imis.state import ImisState
from tests.support.databases import POSTGRES_ENV, REDIS_ENV, database_url
from tests.support.platforms import SECRET, SIMULATED, Simulated, tuning

PASSWORD = SECRET  # every simulated platform's secret (the iMIS password among them)


class StatusEventDocument(TypedDict):
    subject: str
    status: str
    label: str
    at: str
    note: NotRequired[str]


class RunStatusDocument(TypedDict):
    """The part of `rebill status RUN --json` tests read (written by `orchestrator.services.reports.run_summary`)."""

    state: str
    reason_code: str | None
    reason: str | None
    details: dict[str, Any]
    items: dict[str, int]
    steps: list[dict[str, str]]
    status_history: list[StatusEventDocument]


def stack_backends() -> list[str]:
    both = os.environ.get(POSTGRES_ENV) and os.environ.get(REDIS_ENV)
    return ["embedded", "services"] if both else ["embedded"]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    backend: str
    directory: Path
    platforms: dict[str, Simulated]
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def state(self) -> ImisState:
        """The iMIS simulator's state (most scenarios run on iMIS)."""
        state: ImisState = self.platforms["imis"].state
        return state

    def platform(self, name: str) -> Any:
        """Another platform's simulator state."""
        return self.platforms[name].state

    # --- configuration ---
    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {k[len("REBILL_") :].lower(): v for k, v in self.env.items()}
        values.update(overrides)
        return load_settings(**values)

    def container(self) -> Container:
        return Container(self.settings())

    def create_ledger(self) -> None:
        """As the first `rebill worker` or `rebill run` would (`rebill runs` and the like never create one)."""
        container = self.container()
        try:
            container.ledger  # noqa: B018 - a cached property: building it creates and migrates the ledger
        finally:
            container.close()

    # --- processes ---
    def start_worker(self, concurrency: int = 8, /, **env: str) -> WorkerProcess:
        """A worker with `env` over the stack's settings (`concurrency` is positional: no setting can fill it)."""
        log = self.directory / f"worker-{len(self.workers)}.log"
        with log.open("w") as handle:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.entrypoints.cli", "worker", f"--concurrency={concurrency}"],
                env={**os.environ, **self.env, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(process, log)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    # --- the simulator ---
    def seed(self, invoices: int = 60, **kwargs: Any) -> SeededBilling:
        kwargs.setdefault("seed", uuid.uuid4().int % 1_000_000)
        return self.state.seed_billing(invoices=invoices, **kwargs)

    def counters(self) -> dict[str, Any]:
        return self.state.counters()

    # --- the command line ---
    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        """`rebill ARGS` in this process, with the stack's settings (and `env` on top)."""
        runner = CliRunner()
        return runner.invoke(cli, list(args), env={**self.env, **(env or {})}, obj=CliState(), catch_exceptions=False)

    def run_ids(self) -> set[str]:
        """Every run in the ledger, to show that a refused command left none behind."""
        container = self.container()
        try:
            return {run.id for run in container.ledger.list_runs(10_000)}
        finally:
            container.close()

    def run_status(self, run_id: str) -> RunStatusDocument:
        """`rebill status RUN --json`, parsed."""
        result = self.cli("status", run_id, "--json")
        assert result.exit_code == 0, result.output
        return cast(RunStatusDocument, json.loads(result.output, parse_float=Decimal))

    def issued_tokens(self) -> list[str]:
        with self.state.lock:
            return list(self.state._tokens)

    def wait_for(self, run_id: str, *, timeout: float = 120.0) -> Run:
        """Until the run rests in a final state (read from the ledger, as `--wait` does)."""
        container = self.container()
        try:
            deadline = time.monotonic() + timeout
            while True:
                run = container.ledger.get_run(run_id)
                assert run is not None, f"no run {run_id}"
                if run.state.is_final:
                    return run
                if time.monotonic() > deadline:
                    logs = "\n".join(w.tail() for w in self.workers)
                    raise AssertionError(f"run {run_id} still {run.state.value} after {timeout} s\n{logs}")
                time.sleep(0.2)
        finally:
            container.close()


@contextmanager
def running_stack(backend: str, directory: Path, *, worker: bool = True, **env: str) -> Iterator[Stack]:
    directory.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        platforms = {name: start(cleanup) for name, start in SIMULATED.items()}
        base_env = {
            "REBILL_DATA_DIR": str(directory / "data"),
            "REBILL_QUEUE": f"rebill-test-{uuid.uuid4().hex[:8]}",
            "REBILL_POLL_INTERVAL_SECONDS": "0.2",
            "REBILL_RECONCILE_INTERVAL_SECONDS": "1",
            "REBILL_RETRY_BACKOFF_SECONDS": "0.2",
            "REBILL_RETRY_BACKOFF_MAX_SECONDS": "2",
        }
        for name, simulated in platforms.items():
            base_env.update(simulated.env)
            base_env.update(tuning(name, timeout_seconds="5", max_concurrency="8"))
        if backend == "services":
            base_env["REBILL_BROKER_URL"] = env.get("REBILL_BROKER_URL") or os.environ[REDIS_ENV]
            base_env["REBILL_DATABASE_URL"] = cleanup.enter_context(database_url("postgresql", directory))
        else:
            cleanup.callback(embedded.stop, directory / "data")
        base_env.update(env)
        stack = Stack(backend, directory, platforms, base_env)
        stack.create_ledger()
        cleanup.callback(stack.stop_workers)
        if worker:
            stack.start_worker()
        yield stack


@dataclass(frozen=True)
class FailedRun:
    """A run of 40 invoices that ended NEEDS_ATTENTION with three failed: two the tenant refused, one it
    answered 500 for until the run's two attempts ran out."""

    run_id: str
    refused: tuple[str, str]
    gave_up: str
    output: str  # of `rebill run --wait` (not on a terminal)


def run_with_failures(stack: Stack) -> FailedRun:
    billing = stack.seed(40)
    refused, gave_up = billing.open_invoice_ids[:2], billing.open_invoice_ids[2]
    stack.state.faults.update(fail_invoices={refused[0]: "refuse", refused[1]: "refuse", gave_up: "500"})
    try:
        result = stack.cli("run", "--wait", "--billing-log", billing.original_key, "--max-attempts", "2")
    finally:
        stack.state.faults.update(fail_invoices={refused[0]: None, refused[1]: None, gave_up: None})
    assert result.exit_code == 1, result.output
    return FailedRun(result.output.splitlines()[0].strip(), (refused[0], refused[1]), gave_up, result.output)


def rebill_process(*args: str, env: dict[str, str], unset: Collection[str] = ()) -> subprocess.Popen[str]:
    """`rebill ARGS` as its own process (stdout and stderr piped, as text): our environment without
    `unset`, with `env` on top."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.entrypoints.cli", *args],
        env={**{k: v for k, v in os.environ.items() if k not in unset}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_exactly_once(stack: Stack, billing: SeededBilling, run: Run | None = None) -> dict[str, Any]:
    """Every open invoice of the billing reversed once, nothing else touched, at most one rebill."""
    counters = stack.counters()
    reversals: dict[str, int] = counters["reversals"]
    opened = set(billing.open_invoice_ids)
    assert {i: reversals.get(i, 0) for i in opened} == dict.fromkeys(opened, 1)
    untouched = (set(billing.invoice_ids) - opened) | set(billing.other_open_invoice_ids)
    assert not untouched & set(reversals)
    assert counters["refused_second_reversals"] == 0
    rebills = [r for r in counters["rebills"] if r.get("original_key") == billing.original_key]
    assert len(rebills) <= 1
    if run is not None:
        assert run.state is RunState.COMPLETED
    return counters
