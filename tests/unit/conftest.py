from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.ledger.database import create_engines, migrate
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.run import RunOptions
from orchestrator.services.context import CallRecorder, Context, Runtime
from tests.fakes import FakeClock, FakeDispatcher, FakeProvider
from tests.support.databases import backends, database_url


@pytest.fixture(params=backends())
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlLedger]:
    with database_url(request.param, tmp_path) as url:
        engines = create_engines(url)
        migrate(engines)
        yield SqlLedger(engines.read, write_engine=engines.write)
        engines.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def dispatcher() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def ctx(ledger: SqlLedger, provider: FakeProvider, dispatcher: FakeDispatcher, clock: FakeClock) -> Context:
    return Context(
        ledger=ledger,
        provider=provider,
        dispatcher=dispatcher,
        recorder=CallRecorder(),
        runtime=Runtime(lease_seconds=60, dispatch_window=4, lost_message_seconds=30, rebill_settle_seconds=20),
        clock=clock,
    )


@pytest.fixture
def options() -> RunOptions:
    return RunOptions(
        chunk_size=5,
        max_attempts=3,
        retry_backoff_seconds=1,
        retry_backoff_max_seconds=4,
        poll_interval_seconds=1,
        stall_after_seconds=60,
    )
