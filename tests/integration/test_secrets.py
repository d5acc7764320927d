"""No credential or token in any broker message, log line or command output of a run."""

from __future__ import annotations

import threading
from typing import Any

import redis

from orchestrator.bootstrap import redis_url
from tests.support.stack import PASSWORD, Stack


class BrokerRecorder:
    """Every command any client sends to the broker's Redis (MONITOR), kept for scanning."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self.commands: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> BrokerRecorder:
        self._thread.start()
        self._ready.wait(5)
        return self

    def _listen(self) -> None:
        with self._client.monitor() as monitor:
            self._monitor: Any = monitor
            self._ready.set()
            try:
                for command in monitor.listen():
                    self.commands.append(str(command.get("command", "")))
            except (redis.ConnectionError, ValueError, AttributeError, OSError):
                return

    def __exit__(self, *_: object) -> None:
        try:
            self._monitor.connection.disconnect()
        finally:
            self._thread.join(5)
            self._client.close()


def test_no_secret_reaches_the_broker_the_logs_or_the_output(stack: Stack) -> None:
    billing = stack.seed(60)
    url = redis_url(stack.settings())
    with BrokerRecorder(url) as broker:
        result = stack.cli("run", "--billing-log", billing.original_key, "--wait")
        run_id = result.output.splitlines()[0]
        status = stack.cli("status", run_id, "--json").output
    assert result.exit_code == 0, result.output

    tokens = stack.issued_tokens()
    assert tokens, "the run must have authenticated"
    assert any("rebill.reverse_chunk" in command for command in broker.commands), "the recorder saw no task"
    secrets = [PASSWORD, *tokens]
    places = {
        "broker": "\n".join(broker.commands),
        "worker logs": "\n".join(worker.log.read_text() for worker in stack.workers),
        "run output": result.output + status,
    }
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {place}"
