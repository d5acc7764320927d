"""EnergyCapClient against the simulator over real HTTP: the contract, end to end, from the client's side."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.energycap.client import EnergyCapClient
from orchestrator.adapters.providers.energycap.errors import BatchCodeInUse
from orchestrator.adapters.providers.energycap.filters import Field, Op, where
from orchestrator.adapters.providers.energycap.rebill_file import import_csv, parse_rebill_csv
from orchestrator.adapters.providers.energycap.wire import TaskData, TaskStatus
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from simulators.common import SimulatorServer
from simulators.energycap import EnergyCapState, SeededPeriod, corrected_bills_csv
from tests.contract.energycap.conftest import API_KEY

PERIOD = where(Field.ACCOUNT_PERIOD, Op.EQUALS, 202510)


def wait_for(client: EnergyCapClient, guid: str, timeout: float = 10.0) -> TaskData:
    """Follow a task to its end, as the orchestrator's poller will (here every 20 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.get_task(guid)
        if task.known_status is not None and task.known_status.done:
            return task
        assert time.monotonic() < deadline, f"task {guid} still {task.status}"
        time.sleep(0.02)


def settle_reversal(client: EnergyCapClient, code: str) -> dict[int, int] | None:
    """The contract's settle step: the batch by its code; found -> original id -> reversal id."""
    if client.find_batch(code) is None:
        return None
    return {bill.reversal_of_bill_id: bill.bill_id for bill in client.bills_in_batch(code) if bill.reversal_of_bill_id}


class TestFiltersAndPaging:
    def test_every_clause_of_the_builder_is_understood(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        bills = list(client.iter_bills(PERIOD))
        assert [b.bill_id for b in bills] == sorted(period.bill_ids)
        codes = list(period.account_codes[:3])
        some = where(Field.ACCOUNT_CODE, Op.ONE_OF, codes[0].lower(), *codes[1:])
        assert {b.account.account_code for b in client.iter_bills(PERIOD & some) if b.account} == set(codes)
        others = client.iter_bills(PERIOD & where(Field.ACCOUNT_CODE, Op.NOT_ONE_OF, *codes))
        assert not {b.account.account_code for b in others if b.account} & set(codes)
        one = where(Field.ACCOUNT_CODE, Op.EQUALS, codes[0])
        assert {b.account.account_code for b in client.iter_bills(one) if b.account} == {codes[0]}
        not_one = list(client.iter_bills(PERIOD & where(Field.ACCOUNT_CODE, Op.NOT_EQUALS, codes[0])))
        assert codes[0] not in {b.account.account_code for b in not_one if b.account}
        late = list(client.iter_bills(PERIOD & where(Field.BILLING_PERIOD, Op.NOT_EQUALS, 202510)))
        assert late
        assert {b.billing_period for b in late} == {202509}
        older = list(client.iter_bills(where(Field.ACCOUNT_PERIOD, Op.NOT_EQUALS, 202510)))
        assert [b.bill_id for b in older] == list(period.other_period_ids)
        account_id = bills[0].account.account_id if bills[0].account else 0
        by_account = client.iter_bills(where(Field.ACCOUNT_ID, Op.ONE_OF, account_id))
        assert {b.account.account_id for b in by_account if b.account} == {account_id}
        assert client.get_bill(bills[0].bill_id) == bills[0]
        seeded_batch = where(Field.BATCH_CODE, Op.ONE_OF, "IMP-202510", "nope")
        assert len(list(client.iter_bills(seeded_batch))) == 300

    def test_bills_by_id_more_than_one_hundred_at_a_time(
        self, client: EnergyCapClient, calls: list[ApiCall], period: SeededPeriod
    ) -> None:
        wanted = list(period.bill_ids[:250])
        assert [b.bill_id for b in client.get_bills([*wanted, *wanted[:10], 1])] == wanted
        assert [c.operation for c in calls] == ["bill.list"] * 3

    def test_pages_follow_the_echoed_size_under_a_cap(
        self, client: EnergyCapClient, state: EnergyCapState, calls: list[ApiCall], period: SeededPeriod
    ) -> None:
        state.faults.update(page_cap=40)
        pages = list(client.iter_bill_pages(PERIOD, page_size=1000))
        expected_pages = math.ceil(len(period.bill_ids) / 40)
        assert {p.page_size for p in pages} == {40}
        assert [p.page_number for p in pages] == list(range(1, expected_pages + 1))
        assert {p.total_pages for p in pages} == {expected_pages}
        assert pages[0].total_records == len(period.bill_ids)
        assert [b.bill_id for p in pages for b in p.items] == sorted(period.bill_ids)
        assert len(calls) == expected_pages
        resumed = list(client.iter_bill_pages(PERIOD, page_size=pages[3].page_size, start_page=5))
        assert [b.bill_id for p in resumed for b in p.items] == [b.bill_id for p in pages[4:] for b in p.items]

    def test_no_match_is_one_empty_page(self, client: EnergyCapClient, period: SeededPeriod) -> None:
        pages = list(client.iter_bill_pages(where(Field.ACCOUNT_CODE, Op.EQUALS, "NOPE")))
        assert [(p.items, p.total_pages) for p in pages] == [([], 0)]

    def test_a_page_size_that_changes_while_paging_is_refused(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        state.faults.update(page_cap=100)
        pages = client.iter_bill_pages(PERIOD)
        next(pages)
        state.faults.update(page_cap=50)
        with pytest.raises(ProviderProtocolError, match="page size changed from 100 to 50"):
            next(pages)


class TestReverse:
    def test_all_or_nothing_and_the_read_back_of_what_was_not_updated(
        self, client: EnergyCapClient, period: SeededPeriod
    ) -> None:
        ids = [*period.eligible_ids[:5], period.void_ids[0], period.reversal_ids[0], period.reversed_ids[0]]
        with pytest.raises(ProviderRefused, match="Unknown bill id") as refused:
            client.reverse_bills([*ids, 42], "RB-0A1B2C3D-0001", "run-1")
        assert not refused.value.may_have_applied
        assert client.find_batch("RB-0A1B2C3D-0001") is None
        result = client.reverse_bills(ids, "RB-0A1B2C3D-0001", "run-1")
        assert (result.selected, result.updated) == (8, 5)
        reasons = {b.bill_id: b.skip_reason for b in client.get_bills(ids)}
        assert reasons == {
            **dict.fromkeys(period.eligible_ids[:5], "already_reversed"),
            period.void_ids[0]: "void",
            period.reversal_ids[0]: "reversal_bill",
            period.reversed_ids[0]: "already_reversed",
        }
        mapping = settle_reversal(client, "RB-0A1B2C3D-0001")
        assert mapping is not None
        assert set(mapping) == set(period.eligible_ids[:5])
        for original_id, reversal_id in mapping.items():
            original, reversal = client.get_bill(original_id), client.get_bill(reversal_id)
            assert original.reversed_by_bill_id == reversal_id
            assert reversal.total_cost == -original.total_cost
            assert isinstance(reversal.total_cost, Decimal)
        batch = client.find_batch("rb-0a1b2c3d-0001")
        assert batch is not None
        assert (batch.is_open, batch.bill_count, batch.note) == (False, 5, "run-1")

    def test_the_client_keeps_to_one_thousand_ids(self, client: EnergyCapClient, calls: list[ApiCall]) -> None:
        with pytest.raises(ValueError, match="1 to 1000 bill ids"):
            client.reverse_bills(range(1, 1002), "RB-X", "run")
        with pytest.raises(ValueError, match="1 to 1000 bill ids"):
            client.reverse_bills([], "RB-X", "run")
        assert calls == []

    def test_a_code_in_use_is_told_apart_and_settled(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        ids = list(period.eligible_ids[:4])
        client.reverse_bills(ids, "RB-0A1B2C3D-0002", "run-1")
        with pytest.raises(BatchCodeInUse) as in_use:
            client.reverse_bills(ids, "RB-0A1B2C3D-0002", "run-1")
        assert in_use.value.status_code == 400
        assert settle_reversal(client, "RB-0A1B2C3D-0002") is not None
        assert state.counters()["reversals"] == {str(i): 1 for i in ids}

    def test_a_lost_reply_is_settled_by_reading_the_batch(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        state.faults.update(p_reply_lost=1.0, fault_operations=["bill.reverse"])
        ids = list(period.eligible_ids[:6])
        with pytest.raises(ProviderUnavailable) as lost:
            client.reverse_bills(ids, "RB-0A1B2C3D-0003", "run-1")
        assert lost.value.may_have_applied
        assert lost.value.status_code == 502
        mapping = settle_reversal(client, "RB-0A1B2C3D-0003")
        assert mapping is not None
        assert set(mapping) == set(ids)
        counters = state.counters()
        assert counters["batch_code_attempts"] == {"RB-0A1B2C3D-0003": 1}
        assert counters["duplicate_reversals"] == {}

    def test_a_500_that_applied_nothing_is_settled_by_sending_the_same_body_again(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        state.faults.update(p_500=1.0, fault_operations=["bill.reverse"])
        ids = list(period.eligible_ids[:2])
        with pytest.raises(ProviderUnavailable) as failed:
            client.reverse_bills(ids, "RB-0A1B2C3D-0004", "run-1")
        assert failed.value.may_have_applied  # the client cannot know: settle first
        assert "500 - Internal server error." in failed.value.message
        assert settle_reversal(client, "RB-0A1B2C3D-0004") is None
        state.faults.update(p_500=0.0)
        assert client.reverse_bills(ids, "RB-0A1B2C3D-0004", "run-1").updated == 2

    def test_a_timeout_whose_call_landed_late(
        self,
        make_client: Callable[..., EnergyCapClient],
        state: EnergyCapState,
        period: SeededPeriod,
    ) -> None:
        impatient, patient = make_client(timeout=0.2), make_client(timeout=5.0)
        state.faults.update(latency_ms=500)
        ids = list(period.eligible_ids[:3])
        with pytest.raises(ProviderTimeout) as timed_out:
            impatient.reverse_bills(ids, "RB-0A1B2C3D-0005", "run-1")
        assert timed_out.value.may_have_applied
        # The settling read is answered after the first call was carried out: found, applied once.
        mapping = settle_reversal(patient, "RB-0A1B2C3D-0005")
        assert mapping is not None
        assert set(mapping) == set(ids)
        with pytest.raises(BatchCodeInUse):
            patient.reverse_bills(ids, "RB-0A1B2C3D-0005", "run-1")
        assert state.counters()["reversals"] == {str(i): 1 for i in ids}


class TestImport:
    def test_import_followed_to_its_end(
        self, client: EnergyCapClient, state: EnergyCapState, calls: list[ApiCall], period: SeededPeriod
    ) -> None:
        rows = parse_rebill_csv(corrected_bills_csv(state, period), "corrected.csv")
        guid = client.import_bills(import_csv(rows), "RB-0A1B2C3D-I1", "rebill-0a1b2c3d.csv", "run-1")
        task = wait_for(client, guid)
        assert task.known_status is TaskStatus.COMPLETED
        assert task.output is not None
        assert (task.output.rows, task.output.created, task.output.kicked_out) == (len(rows), len(rows), 0)
        assert task.batch is not None
        assert task.batch.batch_code == "RB-0A1B2C3D-I1"
        created = client.get_bills(task.output.created_bill_ids)
        assert [b.total_cost for b in created] == [row.total_cost for row in rows]
        assert [t.task_guid for t in client.find_tasks("RB-0A1B2C3D-I1")] == [guid]
        with pytest.raises(BatchCodeInUse):
            client.import_bills(import_csv(rows), "RB-0A1B2C3D-I1", "rebill-0a1b2c3d.csv", "run-1")
        assert state.counters()["imports"][0]["created"] == len(rows)
        assert {c.operation for c in calls} >= {"import.bill", "task.get", "task.list", "bill.list"}

    def test_the_guid_as_an_object(self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod) -> None:
        state.faults.update(task_guid_reply="object")
        rows = parse_rebill_csv(corrected_bills_csv(state, period), "corrected.csv")[:2]
        guid = client.import_bills(import_csv(rows), "RB-0A1B2C3D-I1", "f.csv", "run-1")
        assert wait_for(client, guid).known_status is TaskStatus.COMPLETED

    def test_a_lost_import_reply_is_settled_by_the_task_of_its_batch(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        state.faults.update(p_reply_lost=1.0, fault_operations=["import.bill"])
        rows = parse_rebill_csv(corrected_bills_csv(state, period), "corrected.csv")[:3]
        with pytest.raises(ProviderUnavailable) as lost:
            client.import_bills(import_csv(rows), "RB-0A1B2C3D-I1", "f.csv", "run-1")
        assert lost.value.may_have_applied
        assert client.find_batch("RB-0A1B2C3D-I1") is not None
        [task] = client.find_tasks("RB-0A1B2C3D-I1")
        assert wait_for(client, task.task_guid).known_status is TaskStatus.COMPLETED
        assert state.counters()["import_attempts"] == {"RB-0A1B2C3D-I1": 1}

    def test_kickouts_reported_per_row_and_imported_again(
        self, client: EnergyCapClient, state: EnergyCapState, period: SeededPeriod
    ) -> None:
        state.faults.update(p_kickout=1.0)
        rows = parse_rebill_csv(corrected_bills_csv(state, period), "corrected.csv")[:4]
        guid = client.import_bills(import_csv(rows), "RB-0A1B2C3D-I1", "f.csv", "run-1")
        task = wait_for(client, guid)
        assert task.known_status is TaskStatus.COMPLETED_WITH_KICKOUTS
        assert task.output is not None
        kicked = [(k.row, k.account_code, k.meter_code, k.billing_period) for k in task.output.kickouts]
        assert kicked == [
            (n, row.account_code, row.meter_code, str(row.billing_period)) for n, row in enumerate(rows, start=1)
        ]
        assert all(k.message for k in task.output.kickouts)
        again = client.reimport_kickouts(guid, "RB-0A1B2C3D-I2")
        finished = wait_for(client, again)
        assert finished.known_status is TaskStatus.COMPLETED
        assert finished.output is not None
        assert finished.output.created == 4
        with pytest.raises(ProviderRefused, match="not 'Completed with kickouts'"):
            client.reimport_kickouts(again, "RB-0A1B2C3D-I3")
        with pytest.raises(ProviderNotFound):
            client.reimport_kickouts("00000000-0000-4000-8000-000000000000", "RB-0A1B2C3D-I4")
        with pytest.raises(ProviderNotFound):
            client.get_task("00000000-0000-4000-8000-000000000000")


class TestTransportAndKey:
    def test_a_deprecated_reply_is_a_warning_naming_the_endpoint(
        self, client: EnergyCapClient, state: EnergyCapState, caplog: pytest.LogCaptureFixture
    ) -> None:
        state.faults.update(deprecated_operations=["batch.list"])
        with caplog.at_level(logging.WARNING, logger="orchestrator.adapters.providers.energycap.client"):
            assert client.find_batch("NOPE") is None
            client.get_bills([1])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "GET /api/v3/batch (batch.list)" in warnings[0]
        assert state.counters()["deprecated_calls"] == {"batch.list": 1}

    def test_a_wrong_or_revoked_key_stops_with_the_variable_named(
        self, make_client: Callable[..., EnergyCapClient], state: EnergyCapState, calls: list[ApiCall]
    ) -> None:
        wrong = make_client(api_key=SecretStr("not-the-key-9876"))
        with pytest.raises(ProviderAuthError, match="REBILL_ENERGYCAP_API_KEY") as rejected:
            list(wrong.iter_bills())
        assert rejected.value.status_code == 401
        state.add_api_key("reader-key-5555", bills_and_batches=False)
        reader = make_client(api_key=SecretStr("reader-key-5555"))
        assert list(reader.iter_bills()) == []
        with pytest.raises(ProviderAuthError, match="BillsAndBatches") as forbidden:
            reader.reverse_bills([1], "RB-X", "run")
        assert forbidden.value.status_code == 403
        assert [c.outcome for c in calls] == [CallOutcome.PERMANENT, CallOutcome.OK, CallOutcome.PERMANENT]

    def test_the_key_never_shows(
        self,
        make_client: Callable[..., EnergyCapClient],
        server: SimulatorServer[EnergyCapState],
        state: EnergyCapState,
        calls: list[ApiCall],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        client = make_client()
        gone = make_client(base_url="http://127.0.0.1:9")  # nothing listens on the discard port
        state.faults.update(p_500=1.0, fault_operations=["bill.get"])
        errors: list[ProviderError] = []
        with caplog.at_level(logging.DEBUG):
            attempts: list[Callable[[], object]] = [lambda: client.get_bill(1), lambda: gone.get_bill(1)]
            for attempt in attempts:
                with pytest.raises(ProviderError) as raised:
                    attempt()
                errors.append(raised.value)
        assert isinstance(errors[1], ProviderUnavailable)
        assert errors[1].__cause__ is None
        shown = [repr(client), str(client), *caplog.messages, *(e.message for e in errors), *(repr(e) for e in errors)]
        shown += [repr(c) for c in calls]
        assert calls
        assert not [text for text in shown if API_KEY in text]

    def test_every_request_carries_the_key_and_json_content_type(self, server: SimulatorServer[EnergyCapState]) -> None:
        seen: list[httpx.Request] = []

        class Recording(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                seen.append(request)
                return super().handle_request(request)

        with Recording() as transport:
            client = EnergyCapClient(
                base_url=server.base_url,
                api_key=SecretStr(API_KEY),
                transport=transport,
                timeout=httpx.Timeout(5, connect=2),
            )
            client.find_batch("X")
        assert [(r.method, r.headers["ECI-ApiKey"], r.headers["Content-Type"]) for r in seen] == [
            ("GET", API_KEY, "application/json")
        ]
