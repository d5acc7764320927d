"""One deployment for the operations tests: a worker with JSON logs at DEBUG and its metrics port,
the schedule file it reads, and helpers to start beat, Flower and `rebill metrics` as real processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.stack import Stack, running_stack, stack_backends


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class Deployment:
    stack: Stack
    schedule_file: Path
    worker_metrics_port: int
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, *args: str, **env: str) -> Process:
        log = self.stack.directory / f"{name}-{len(self.processes)}.log"
        with log.open("w") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.entrypoints.cli", *args],
                env={**os.environ, **self.stack.env, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        started = Process(process, log)
        self.processes.append(started)
        return started

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()

    def wait_for_line(self, process: Process, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, process.text())
            if found:
                return found
            if process.process.poll() is not None:
                raise AssertionError(f"{process.log.name} exited:\n{process.text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in {process.log.name} after {timeout} s:\n{process.text()[-3000:]}")


def http_get(url: str, *, auth: tuple[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URLs built by the tests
    if auth is not None:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="session", params=stack_backends())
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    directory: Path = tmp_path_factory.mktemp(f"ops-{request.param}")
    schedule_file = directory / "schedules.toml"
    schedule_file.write_text("")
    metrics_port = free_port()
    with running_stack(
        request.param,
        directory,
        worker=False,
        REBILL_SCHEDULE_FILE=str(schedule_file),
        REBILL_LOG_FORMAT="json",
        REBILL_BEAT_MAX_INTERVAL_SECONDS="1",
    ) as stack:
        stack.start_worker(REBILL_WORKER_METRICS_PORT=str(metrics_port), REBILL_LOG_LEVEL="DEBUG")
        deployed = Deployment(stack, schedule_file, metrics_port)
        try:
            yield deployed
        finally:
            deployed.stop_all()
