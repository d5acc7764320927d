"""Bill import on the state: the task's life on a hand-moved clock, kickouts, and their re-import."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from simulators.energycap.corrected import corrected_bills_csv
from simulators.energycap.errors import NotFound, SimError
from simulators.energycap.state import (
    COMPLETED,
    COMPLETED_WITH_KICKOUTS,
    FAILED,
    QUEUED,
    RUNNING,
    EnergyCapState,
    SeededPeriod,
)
from tests.simulators.energycap.helpers import Clock, b64, csv_of, import_request, reverse


@pytest.fixture
def account(state: EnergyCapState) -> str:
    state.add_account("AC-1", ["MT-1", "MT-2"])
    state.add_account("AC-2", ["MT-3"])
    return "AC-1"


def good_row(meter: str = "MT-1", cost: str = "100.00", account: str = "AC-1") -> str:
    return f"{account},{meter},202510,2025-10-01,2025-10-31,{cost}"


class TestTaskLife:
    def test_queued_running_then_completed_and_bills_appear_at_the_end(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        task = state.import_bills(import_request(csv_of(good_row(), good_row("MT-2", "5.5"))))
        assert (task.status, task.batch.batch_code, task.batch.is_open) == (QUEUED, "RB-TEST-I1", True)
        assert state.batch_by_code("rb-test-i1") is task.batch  # the batch exists from the 200 on
        assert state.list_tasks("batchCode equals 'RB-TEST-I1'", 1, None).items == [task]
        bills_before = len(state.bills)
        clock.advance(1.0)
        assert state.task(task.guid).status == RUNNING
        # read through the state: asserting on `task` would have mypy take its end date for None from here on
        assert state.task(task.guid).end_date is None
        clock.advance(2.9)
        assert state.task(task.guid).status == RUNNING
        assert len(state.bills) == bills_before
        clock.advance(0.1)
        assert state.task(task.guid.upper()).status == COMPLETED
        assert task.output is not None
        assert (task.output.rows, len(task.output.created_bill_ids), task.output.kickouts) == (2, 2, ())
        assert task.end_date is not None
        assert task.batch.is_open is False
        created = [state.bills[i] for i in task.output.created_bill_ids]
        assert [(b.account.account_code, b.meters[0].meter_code, b.total_cost) for b in created] == [
            ("AC-1", "MT-1", Decimal("100.00")),
            ("AC-1", "MT-2", Decimal("5.5")),
        ]
        assert {(b.billing_period, b.account_period) for b in created} == {(202510, 202510)}
        assert task.batch.bill_ids == list(task.output.created_bill_ids)
        assert state.counters()["imports"] == [
            {
                "code": "RB-TEST-I1",
                "kind": "import",
                "task": task.guid,
                "status": COMPLETED,
                "rows": 2,
                "created": 2,
                "kicked_out": 0,
            }
        ]

    def test_any_read_moves_the_clock_on(self, state: EnergyCapState, clock: Clock, account: str) -> None:
        task = state.import_bills(import_request(csv_of(good_row())))
        clock.advance(10)
        assert state.list_bills("accountCode equals 'AC-1'", 1, None).total == 1
        assert task.status == COMPLETED

    def test_zero_seconds_ends_on_the_next_read(self, state: EnergyCapState, account: str) -> None:
        state.faults.update(import_seconds=0)
        task = state.import_bills(import_request(csv_of(good_row())))
        assert state.task(task.guid).status == COMPLETED

    def test_a_missing_required_column_fails_the_task_and_imports_nothing(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        bills_before = len(state.bills)
        task = state.import_bills(import_request("accountCode,meterCode\nAC-1,MT-1\n"))
        clock.advance(5)
        assert state.task(task.guid).status == FAILED
        assert task.message is not None
        assert "billingPeriod, beginDate, endDate, totalCost" in task.message
        assert task.output is None
        assert len(state.bills) == bills_before
        assert state.counters()["imports"][0]["status"] == FAILED


class TestKickouts:
    ROWS = (
        good_row(),
        good_row(account="AC-404"),
        good_row("MT-3"),
        "AC-1,MT-2,202513,2025-10-01,2025-10-31,1",
        "AC-1,MT-2,202510,2025-10-31,2025-10-01,1",
        "AC-2,MT-3,202510,2025-10-01,2025-10-31,1O.00",
    )

    def test_bad_rows_are_kicked_out_with_a_message_the_others_imported(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        task = state.import_bills(import_request(csv_of(*self.ROWS)))
        clock.advance(5)
        assert state.task(task.guid).status == COMPLETED_WITH_KICKOUTS
        assert task.output is not None
        assert len(task.output.created_bill_ids) == 1
        assert [(k.row, k.account_code, k.meter_code, k.billing_period) for k in task.output.kickouts] == [
            (2, "AC-404", "MT-1", "202510"),
            (3, "AC-1", "MT-3", "202510"),
            (4, "AC-1", "MT-2", "202513"),
            (5, "AC-1", "MT-2", "202510"),
            (6, "AC-2", "MT-3", "202510"),
        ]
        messages = [k.message for k in task.output.kickouts]
        assert "'AC-404' was not found" in messages[0]
        assert "'MT-3' is not on account 'AC-1'" in messages[1]
        assert "not a period" in messages[2]
        assert "not after beginDate" in messages[3]
        assert "not a number" in messages[4]

    def test_lines_must_add_up(self, state: EnergyCapState, clock: Clock, account: str) -> None:
        header = "accountCode,meterCode,billingPeriod,beginDate,endDate,totalCost,lineCaption1,lineCost1,lineCost2"
        text = csv_of(f"{good_row()},Energy,60,40", f"{good_row('MT-2')},Energy,60,30", header=header)
        task = state.import_bills(import_request(text))
        clock.advance(5)
        state.advance()
        assert task.output is not None
        assert [state.bills[i].lines for i in task.output.created_bill_ids] == [
            (("Energy", Decimal(60)), ("", Decimal(40)))
        ]
        assert "add up to 90" in task.output.kickouts[0].message

    def test_a_kicked_out_row_is_imported_again_once_the_cause_is_fixed(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        task = state.import_bills(import_request(csv_of(good_row(), good_row(account="AC-NEW"))))
        clock.advance(5)
        state.advance()
        state.add_account("AC-NEW", ["MT-1"])
        again = state.reimport_kickouts(task.guid, "new self-contained batch", "RB-TEST-I2")
        assert (again.kind, again.parent_guid, again.status) == ("kickout", task.guid, QUEUED)
        clock.advance(5)
        assert state.task(again.guid).status == COMPLETED
        assert again.output is not None
        assert again.output.rows == 1
        assert state.bills[again.output.created_bill_ids[0]].account.account_code == "AC-NEW"
        assert state.counters()["kickout_reimports"] == {task.guid: 1}

    def test_re_import_needs_a_task_completed_with_kickouts(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        with pytest.raises(NotFound):
            state.reimport_kickouts("00000000-0000-0000-0000-000000000000", "new self-contained batch", "RB-K")
        task = state.import_bills(import_request(csv_of(good_row())))
        with pytest.raises(SimError, match="'Queued', not 'Completed with kickouts'"):
            state.reimport_kickouts(task.guid, "new self-contained batch", "RB-K")
        clock.advance(5)
        with pytest.raises(SimError, match="'Completed', not"):
            state.reimport_kickouts(task.guid, "new self-contained batch", "RB-K")

    def test_random_kickouts_hit_the_first_import_of_a_row_only(
        self, state: EnergyCapState, clock: Clock, seeded: SeededPeriod
    ) -> None:
        state.faults.update(p_kickout=1.0)
        text = corrected_bills_csv(state, seeded)
        task = state.import_bills(import_request(text))
        clock.advance(5)
        state.advance()
        assert task.output is not None
        assert len(task.output.kickouts) == len(seeded.eligible_ids)
        assert all("simulated kickout" in k.message for k in task.output.kickouts)
        again = state.reimport_kickouts(task.guid, "new self-contained batch", "RB-TEST-I2")
        same_file = state.import_bills(import_request(text, "RB-TEST-I3"))
        clock.advance(5)
        state.advance()
        assert again.status == same_file.status == COMPLETED

    def test_random_kickouts_follow_the_probability(
        self, state: EnergyCapState, clock: Clock, seeded: SeededPeriod
    ) -> None:
        state.faults.update(p_kickout=0.25)
        task = state.import_bills(import_request(corrected_bills_csv(state, seeded)))
        clock.advance(5)
        state.advance()
        assert task.output is not None
        assert 0 < len(task.output.kickouts) < len(seeded.eligible_ids) / 2


class TestRefusedImports:
    @pytest.mark.parametrize(
        ("changes", "why"),
        [
            ({"data": None}, "data is required"),
            ({"data": ""}, "data is required"),
            ({"data": "not base64!"}, "not valid base64"),
            ({"file_name": None}, "fileName is required"),
            ({"file_name": " "}, "fileName is required"),
            ({"batch_mode": "new batch"}, "not supported here"),
            ({"batch_mode": "smart batch"}, "is not one of"),
            ({"batch_code": None}, "batchCode is required"),
            ({"note": "n" * 256}, "between 0 and 255"),
        ],
    )
    def test_refused_with_nothing_made(
        self, state: EnergyCapState, account: str, changes: dict[str, object], why: str
    ) -> None:
        request = dataclasses.replace(import_request(csv_of(good_row())), **changes)  # type: ignore[arg-type]  # ill-typed on purpose: refused as on the wire
        with pytest.raises(SimError, match=why):
            state.import_bills(request)
        assert (state.tasks, state.batches) == ({}, {})

    def test_the_same_code_twice_imports_once_and_counts_the_attempts(
        self, state: EnergyCapState, clock: Clock, account: str
    ) -> None:
        text = csv_of(good_row())
        state.import_bills(import_request(text, "RB-SAME"))
        with pytest.raises(SimError, match="already exists"):
            state.import_bills(import_request(text, "rb-same"))
        with pytest.raises(SimError, match="already exists"):
            state.reverse_bills(reverse([1], "RB-SAME"))
        clock.advance(5)
        state.advance()
        counters = state.counters()
        assert len(state.tasks) == 1
        assert state.list_bills("accountCode equals 'AC-1'", 1, None).total == 1
        assert counters["import_attempts"] == {"RB-SAME": 1, "rb-same": 1}
        assert counters["batch_code_attempts"] == {"RB-SAME": 2, "rb-same": 1}
        assert counters["batches"] == {"RB-SAME": 1}

    def test_the_file_is_any_base64_text(self, state: EnergyCapState, clock: Clock, account: str) -> None:
        task = state.import_bills(import_request("", data=b64("\ufeff" + csv_of(good_row()))))
        clock.advance(5)
        assert state.task(task.guid).status == COMPLETED
