"""Helpers every simulator's tests share: its command line in a child process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class SimulatorProcess:
    """A simulator's CLI in a child process, once it printed its ready line."""

    def __init__(self, proc: subprocess.Popen[str], lines: list[str], reader: threading.Thread, ready: str) -> None:
        self.proc = proc
        self.lines = lines
        self.reader = reader
        self.url = next(line.split("listening on ", 1)[1].split()[0] for line in lines if "listening on " in line)
        #: What the ready line says after its prefix (the billing log key, the account period...).
        self.value = next(line.removeprefix(ready) for line in lines if line.startswith(ready))

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process, wait for it, and release its pipe; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(5)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        return code


def start_simulator(module: str, ready: str, *args: str) -> SimulatorProcess:
    """`python -m <module> --port 0 <args>`, returned once it printed the line starting with `ready`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(ready):
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(30) or not any(line.startswith(ready) for line in lines):
        proc.kill()
        proc.wait()
        reader.join(5)
        proc.stdout.close()
        pytest.fail(f"the simulator did not get ready: {lines}")
    return SimulatorProcess(proc, lines, reader, ready)
