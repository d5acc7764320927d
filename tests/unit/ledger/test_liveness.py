"""Worker heartbeats and taking over from the dead, in the ledger (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from orchestrator.adapters.ledger.database import LedgerEngines, create_engines
from orchestrator.adapters.ledger.sql import SqlLedger
from orchestrator.domain.run import ItemState
from orchestrator.services.ports import Released
from tests.fakes import FakeClock
from tests.unit.ledger.conftest import MakeRun

DEAD_AFTER = timedelta(seconds=7)


class TestDeclaringDead:
    def test_a_silent_worker_is_declared_dead_once_and_its_claims_and_deliveries_are_given_back(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(invoices=3)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        ledger.beat("w1", host="h", pid=1, now=clock())
        ledger.record_delivery(chunk_id, worker_id="w1")
        ledger.claim_items(chunk_id, owner="w1/1/a", now=clock(), lease_until=clock.now + timedelta(hours=1), limit=2)
        clock.advance(8)

        assert ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock()) == ["w1"]
        assert ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock()) == []  # one winner
        released = ledger.release_worker("w1", now=clock())

        assert released.claims == 2
        assert (run.id, chunk_id) in released.chunks
        clock.advance(1)
        taken = ledger.claim_items(chunk_id, owner="w2/1/b", now=clock(), lease_until=clock.now, limit=5)
        assert len(taken) == 3
        assert sum(1 for item in taken if item.claimed_before) == 2  # read before anything is sent again

    def test_a_worker_that_keeps_beating_is_never_declared_dead(self, ledger: SqlLedger, clock: FakeClock) -> None:
        ledger.beat("w1", host="h", pid=1, now=clock())
        for _ in range(5):
            clock.advance(5)
            assert ledger.beat("w1", host="h", pid=1, now=clock())
            assert ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock()) == []

    def test_a_worker_declared_dead_learns_it_on_its_next_beat_and_is_alive_again(
        self, ledger: SqlLedger, clock: FakeClock
    ) -> None:
        ledger.beat("w1", host="h", pid=1, now=clock())
        clock.advance(8)
        ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock())

        assert ledger.beat("w1", host="h", pid=1, now=clock()) is False
        assert ledger.beat("w1", host="h", pid=1, now=clock()) is True
        assert [worker.dead_at for worker in ledger.workers()] == [None]

    def test_a_dead_workers_sessions_are_ended_so_rows_it_locked_do_not_stop_the_takeover(
        self, engines: LedgerEngines, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        if engines.write.dialect.name != "postgresql":
            pytest.skip("PostgreSQL: SQLite has no sessions of other processes to end")
        worker = f"w-{uuid.uuid4().hex[:8]}"  # the label is server-wide: other tests' sessions are not ours
        run = make_run(invoices=3)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        ledger.beat(worker, host="h", pid=1, now=clock())
        owner = f"{worker}/1/a"
        ledger.claim_items(chunk_id, owner=owner, now=clock(), lease_until=clock.now + timedelta(hours=1), limit=2)
        # The worker's own connection, frozen while its transaction holds its items' rows.
        frozen = create_engines(engines.write.url.render_as_string(hide_password=False), session_label=worker)
        holder = frozen.write.connect()
        holder.begin()
        holder.execute(text("UPDATE items SET attempts = attempts WHERE lease_owner = :owner"), {"owner": owner})
        clock.advance(8)
        assert ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock()) == [worker]

        released: list[Released] = []
        taking_over = threading.Thread(target=lambda: released.append(ledger.release_worker(worker, now=clock())))
        taking_over.start()
        taking_over.join(timeout=10)  # PostgreSQL's own idle-in-transaction timeout is 15 s
        try:
            assert released, "the takeover waited on the dead worker's row locks"
            assert (released[0].sessions, released[0].claims) == (1, 2)
        finally:
            taking_over.join()
            holder.invalidate()
            frozen.write.dispose()


class TestRenewalAgainstDeath:
    """A renewal and a death declaration race on the worker's row: exactly one of them wins."""

    def test_a_renewal_after_the_declaration_fails(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(invoices=1)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        ledger.beat("w1", host="h", pid=1, now=clock())
        [item] = ledger.claim_items(chunk_id, owner="w1/1/a", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(8)
        ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock())

        renewed = ledger.renew_lease(
            [item.id], owner="w1/1/a", lease_until=clock.now + timedelta(minutes=2), worker_id="w1", now=clock()
        )

        assert renewed is False

    def test_a_renewal_before_the_declaration_is_a_heartbeat(
        self, ledger: SqlLedger, clock: FakeClock, make_run: MakeRun
    ) -> None:
        run = make_run(invoices=1)
        chunk_id = next(ledger.iter_items(run.id)).chunk_id
        assert chunk_id is not None
        ledger.beat("w1", host="h", pid=1, now=clock())
        [item] = ledger.claim_items(chunk_id, owner="w1/1/a", now=clock(), lease_until=clock.now, limit=1)
        clock.advance(8)

        assert ledger.renew_lease(
            [item.id], owner="w1/1/a", lease_until=clock.now + timedelta(minutes=2), worker_id="w1", now=clock()
        )
        assert ledger.declare_dead(silent_since=clock.now - DEAD_AFTER, now=clock()) == []
        assert next(ledger.iter_items(run.id)).state is ItemState.IN_FLIGHT
