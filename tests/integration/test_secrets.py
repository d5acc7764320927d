"""No credential or token in any broker message, log line or command output of a run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import redis

from orchestrator.bootstrap import redis_url
from simulators.aria import AriaFaults
from tests.support.aria import run_options, seed, write_corrections
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
        with self._client.monitor() as monitor:  # type: ignore[no-untyped-call]  # redis-py leaves monitor() unannotated
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


def test_the_aria_auth_key_reaches_neither_the_broker_the_logs_the_output_nor_the_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    state = stack.platform("aria")
    seeded = seed(state, 40)
    state.faults.update(p_reply_lost=0.2, p_500=0.1, fault_operations=["gen_rb_m"])  # errors recorded too
    url = redis_url(stack.settings())
    try:
        with BrokerRecorder(url) as broker:
            result = stack.cli(
                "run", "--provider", "aria", "--bill-date", seeded.bill_date.isoformat(),
                *run_options(write_corrections(tmp_path), "--max-attempts", "20"), "--wait",
            )  # fmt: skip
            run_id = result.output.splitlines()[0]
            status = stack.cli("status", run_id, "--json").output
            report = stack.cli("report", run_id, "--format", "json").output
    finally:
        state.faults.replace(AriaFaults())
    assert result.exit_code == 0, result.output

    assert any("rebill.reverse_chunk" in command for command in broker.commands), "the recorder saw no task"
    container = stack.container()
    try:
        run = container.ledger.get_run(run_id)
        assert run is not None
        stored = json.dumps([run.selection.selector, run.provider_options, run.provider_state], default=str)
        errors = "\n".join(str(item.last_error) for item in container.ledger.iter_items(run_id))
    finally:
        container.close()
    places = {
        "broker": "\n".join(broker.commands),
        "worker logs": "\n".join(worker.log.read_text() for worker in stack.workers),
        "run output": result.output + status + report,
        "ledger": stored + errors,
    }
    for place, text in places.items():
        assert PASSWORD not in text, f"the auth key leaked into the {place}"
