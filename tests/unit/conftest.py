from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.ledger.database import LedgerEngines, create_engines, migrate
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.run import RunOptions
from orchestrator.services.context import CallRecorder, Context, Tuning
from tests.fakes import FakeBulkProvider, FakeClock, FakeDispatcher, FakeProvider, FakeProviders
from tests.support.databases import backends, database_url


@pytest.fixture(params=backends())
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerEngines]:
    """A migrated ledger database of its own: SQLite, and PostgreSQL when configured."""
    with database_url(request.param, tmp_path) as url:
        created = create_engines(url)
        migrate(created)
        yield created
        created.dispose()


@pytest.fixture
def ledger(engines: LedgerEngines) -> SqlLedger:
    return SqlLedger(engines.read, write_engine=engines.write)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> CallRecorder:
    return CallRecorder()


@pytest.fixture
def provider(clock: FakeClock, recorder: CallRecorder) -> FakeProvider:
    return FakeProvider(observer=recorder.record, now=clock)


@pytest.fixture
def bulk_provider(clock: FakeClock, recorder: CallRecorder) -> FakeBulkProvider:
    return FakeBulkProvider(observer=recorder.record, now=clock)


@pytest.fixture
def providers(provider: FakeProvider, bulk_provider: FakeBulkProvider) -> FakeProviders:
    return FakeProviders({provider.name: provider, bulk_provider.name: bulk_provider})


@pytest.fixture
def dispatcher() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def ctx(
    ledger: SqlLedger, providers: FakeProviders, dispatcher: FakeDispatcher, recorder: CallRecorder, clock: FakeClock
) -> Context:
    return Context(
        ledger=ledger,
        providers=providers,
        dispatcher=dispatcher,
        recorder=recorder,
        tuning=Tuning(lease_seconds=60, dispatch_window=4, lost_message_seconds=30, rebill_settle_seconds=20),
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
