"""`rebill run --wait` follows its run through a ledger that goes away: it waits, says so, and carries on;
past its patience it stops with one line naming REBILL_DATABASE_URL (exit 2), never an internal error.

PostgreSQL only (REBILL_TEST_DATABASE_URL): its connections can be cut from outside.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis
from sqlalchemy.engine import make_url

from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from orchestrator.domain.run import RunState
from orchestrator.entrypoints.cli.progress import follow
from tests.support.databases import named_connections, terminate_connections
from tests.support.proxy import TcpProxy
from tests.support.stack import Stack

CUTS = 3


@pytest.fixture
def postgres_stack(stack: Stack) -> Stack:
    if stack.backend != "services":
        pytest.skip("needs PostgreSQL (REBILL_TEST_DATABASE_URL): its connections can be cut")
    return stack


def test_run_wait_follows_through_its_connection_cut_three_times(postgres_stack: Stack) -> None:
    stack = postgres_stack
    stack.state.faults.update(latency_ms=5, task_step_seconds=3)  # the BillingLog takes seconds to complete
    billing = stack.seed(100)
    follower = f"rebill-follower-{uuid.uuid4().hex[:8]}"
    cut: list[int] = []

    def cut_the_followers_connections() -> None:
        container = stack.container()
        deadline = time.monotonic() + 60
        try:
            while len(cut) < CUTS and time.monotonic() < deadline:
                started = [
                    r
                    for r in container.ledger.list_runs(20)
                    if r.selection.selector.get("billing_log") == billing.original_key.lower()
                ]
                if started and started[0].state is not RunState.PLANNING:  # `rebill run` is following it
                    ended = terminate_connections(follower)
                    if ended:
                        cut.append(ended)
                        time.sleep(0.7)  # the follower reads again and reconnects
                time.sleep(0.05)
        finally:
            container.close()

    cutter = threading.Thread(target=cut_the_followers_connections)
    cutter.start()
    result = stack.cli(
        "run",
        "--billing-log",
        billing.original_key,
        "--wait",
        env={"REBILL_DATABASE_URL": named_connections(stack.env["REBILL_DATABASE_URL"], follower)},
    )
    cutter.join()

    assert len(cut) == CUTS
    assert result.exit_code == 0, result.output
    assert "waiting for the ledger (terminating connection due to administrator command)" in result.output
    assert "the ledger is back after" in result.output
    assert "internal error" not in result.output
    assert stack.wait_for(result.output.splitlines()[0]).state is RunState.COMPLETED


def test_run_wait_gives_up_on_a_ledger_gone_for_good_naming_the_setting(
    postgres_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = postgres_stack
    billing = stack.seed(5)
    nobody_reads = f"rebill-test-nobody-{uuid.uuid4().hex[:8]}"  # the run waits in PLANNING
    started = stack.cli("run", "--billing-log", billing.original_key, env={"REBILL_QUEUE": nobody_reads})
    assert started.exit_code == 0, started.output
    run_id = started.output.strip()
    database = make_url(stack.env["REBILL_DATABASE_URL"])
    proxy = TcpProxy((database.host or "127.0.0.1", database.port or 5432))
    proxy.open()
    through_proxy = database.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    container = Container(stack.settings(database_url=through_proxy))
    try:
        assert container.ledger.get_run(run_id) is not None
        proxy.close()  # gone for good: live connections dropped, new ones refused
        proxy.cut()
        with pytest.raises(ConfigurationError) as raised:
            follow(container, run_id, ledger_patience_seconds=1)
    finally:
        container.close()
        proxy.__exit__()
        redis.Redis.from_url(stack.env["REBILL_BROKER_URL"]).delete(nobody_reads)

    message = str(raised.value)
    assert "check REBILL_DATABASE_URL" in message
    assert f"`rebill status {run_id}`" in message
    assert "waiting for the ledger" in capsys.readouterr().err
