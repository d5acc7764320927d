"""A celery worker on the Redis broker dies when the broker restarts while it holds a message.

Standalone: needs only celery, kombu, redis-py and a `redis-server` binary (on PATH, or named by
REDIS_SERVER). It starts its own redis-server on a free loopback port in a temporary directory.

    python reproduce.py           # kombu alone: the clean-up sequence celery's consumer runs (deterministic)
    python reproduce.py --worker  # a real worker holding a countdown message; the broker restarted under it

Exit status 1 when the failure reproduced, 0 when it did not.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery
from kombu import Connection, Consumer, Queue
from kombu.common import ignore_errors

REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")
HERE = Path(__file__).resolve().parent

# The app the --worker scenario's worker runs (`celery -A reproduce worker`).
app = Celery("reproduce", broker=os.environ.get("REPRODUCE_BROKER_URL"))
app.conf.broker_connection_retry_on_startup = True


@app.task(name="later")
def later() -> None:
    print("the countdown task ran")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(port: int, directory: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def kill(server: subprocess.Popen[bytes]) -> None:
    server.kill()
    server.wait()


def with_kombu(url: str, server: subprocess.Popen[bytes]) -> bool:
    """An idle consumer holding one unacknowledged message, BRPOPs pending on two channels (as a
    worker's task channel and a second channel); the broker dies; then what celery's
    `Consumer.on_connection_error_after_connected` does: `collect()`, then `close()`."""
    connection = Connection(url)
    channel = connection.default_channel
    channel.basic_publish(channel.prepare_message("{}"), exchange="", routing_key="held")
    Consumer(channel, [Queue("held")], callbacks=[lambda _body, _message: None]).consume()  # never acked
    Consumer(connection.channel(), [Queue("idle")]).consume()
    connection.drain_events(timeout=2)
    with contextlib.suppress(TimeoutError):
        connection.drain_events(timeout=0.2)  # returns with both BRPOPs still in flight

    kill(server)
    connection.collect()
    try:
        ignore_errors(connection, connection.close)
    except AttributeError as error:
        print(f"connection.close() after connection.collect() raised {error!r}")
        return True
    return False


def with_a_worker(url: str, server: subprocess.Popen[bytes], port: int, directory: str) -> bool:
    log_path = Path(directory) / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "reproduce", "worker", "--pool=threads", "-c", "2",
             "--without-gossip", "--without-mingle", "--loglevel=INFO"],
            cwd=HERE,
            env={**os.environ, "REPRODUCE_BROKER_URL": url},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        time.sleep(5)  # the worker is up
        Celery(broker=url).send_task("later", countdown=60)  # held in the worker's memory, unacknowledged
        time.sleep(2)
        kill(server)
        time.sleep(4)
        server = start_redis(port, directory)
        time.sleep(8)  # the worker reconnects, or has exited
        alive = worker.poll() is None
        print("\n".join(line for line in log_path.read_text().splitlines() if "CRITICAL" in line or "lost" in line))
        print(f"worker alive after the broker restart: {alive}")
        return not alive
    finally:
        if worker.poll() is None:
            worker.kill()
        kill(server)


def main() -> int:
    import celery
    import kombu

    print(f"celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}")
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = start_redis(port, directory)
        url = f"redis://127.0.0.1:{port}/0"
        if "--worker" in sys.argv[1:]:
            reproduced = with_a_worker(url, server, port, directory)
        else:
            reproduced = with_kombu(url, server)
    print("REPRODUCED" if reproduced else "not reproduced")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
