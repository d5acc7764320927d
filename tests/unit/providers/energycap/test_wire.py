"""Tolerant reading of what EnergyCAP sends: case-blind keys, numbers as strings, Decimal money."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from orchestrator.adapters.providers.energycap.wire import (
    BatchData,
    BillData,
    ErrorsBody,
    TaskData,
    TaskStatus,
    UpdateResult,
    parse_task_guid,
)

GUID = "0b6f2c9e-5d1a-4c8e-9f47-3a2d18e0c6b1"


def decode(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


BILL = """{"billId": 100017, "account": {"accountId": 12, "accountCode": "AC-10028", "accountInfo": "City Hall"},
 "meters": [{"meterId": 3, "meterCode": "MT-1"}], "beginDate": "2025-09-01T00:00:00", "endDate": "2025-09-30",
 "billingPeriod": 202509, "accountPeriod": 202510, "totalCost": 1234.50, "void": false, "approved": true,
 "apExported": true, "glExported": false, "batch": {"batchId": 4, "batchCode": "IMP-1"},
 "isReversal": false, "reversalOfBillId": null, "isReversed": false, "reversedByBillId": null,
 "vendor": {"vendorCode": "ignored"}}"""


class TestBill:
    def test_reads_the_contract_fields(self) -> None:
        bill = BillData.model_validate(decode(BILL))
        assert bill.bill_id == 100017
        assert bill.account is not None
        assert (bill.account.account_id, bill.account.account_code) == (12, "AC-10028")
        assert [m.meter_code for m in bill.meters] == ["MT-1"]
        assert (bill.begin_date, bill.end_date) == (date(2025, 9, 1), date(2025, 9, 30))
        assert (bill.billing_period, bill.account_period) == (202509, 202510)
        assert bill.total_cost == Decimal("1234.50")
        assert str(bill.total_cost) == "1234.50"
        assert bill.ap_exported
        assert not bill.gl_exported
        assert bill.batch is not None
        assert bill.batch.batch_code == "IMP-1"
        assert bill.skip_reason is None  # exported bills are eligible

    def test_keys_in_any_case_numbers_as_strings_nulls_as_empty(self) -> None:
        bill = BillData.model_validate(
            {"BILLID": "5", "TotalCost": "-10.25", "meters": None, "void": None, "billingperiod": "202510"}
        )
        assert (bill.bill_id, bill.total_cost, bill.meters, bill.void) == (5, Decimal("-10.25"), [], False)
        assert bill.billing_period == 202510

    def test_money_never_passes_through_float(self) -> None:
        with pytest.raises(pydantic.ValidationError, match="float"):
            BillData.model_validate({"billId": 1, "totalCost": 10.1})

    @pytest.mark.parametrize("cost", ["ten", "", "1,50", "NaN", "-Infinity"])
    def test_money_that_is_not_a_number(self, cost: str) -> None:
        with pytest.raises(pydantic.ValidationError, match="not a number"):
            BillData.model_validate({"billId": 1, "totalCost": cost})

    @pytest.mark.parametrize(
        ("flags", "reason"),
        [
            ({"void": True, "isReversed": True}, "void"),
            ({"isReversal": True}, "reversal_bill"),
            ({"reversalOfBillId": 9}, "reversal_bill"),
            ({"isReversed": True}, "already_reversed"),
            ({"reversedByBillId": 9}, "already_reversed"),
            ({"apExported": True, "glExported": True}, None),
        ],
    )
    def test_skip_reasons_in_the_contract_order(self, flags: dict[str, Any], reason: str | None) -> None:
        assert BillData.model_validate({"billId": 1, "totalCost": 1, **flags}).skip_reason == reason

    @pytest.mark.parametrize("missing", ["billId", "totalCost"])
    def test_a_bill_needs_its_id_and_cost(self, missing: str) -> None:
        data = {"billId": 1, "totalCost": 1}
        del data[missing]
        with pytest.raises(pydantic.ValidationError):
            BillData.model_validate(data)


class TestBatchAndTask:
    def test_batch(self) -> None:
        batch = BatchData.model_validate(
            decode(
                '{"batchId": 9, "batchCode": "RB-1", "isOpen": false, "batchStatus": "Closed", "billCount": 3,'
                ' "runningTotal": -12.30, "startDate": "2025-10-02T14:03:11Z", "endDate": null, "note": "run"}'
            )
        )
        assert (batch.batch_id, batch.batch_code, batch.is_open, batch.bill_count) == (9, "RB-1", False, 3)
        assert batch.running_total == Decimal("-12.30")
        assert batch.start_date == datetime(2025, 10, 2, 14, 3, 11, tzinfo=UTC)

    def test_task_with_output(self) -> None:
        task = TaskData.model_validate(
            decode(
                '{"taskGUId": "' + GUID + '", "taskId": 4, "taskType": {"taskTypeCode": "BillImport"},'
                ' "status": "Completed with kickouts", "message": "done", "beginDate": "2025-10-02T14:03:11.1234567",'
                ' "endDate": "2025-10-02T14:03:15Z", "batch": {"batchId": 2, "batchCode": "RB-I1"},'
                ' "currentSuccessCount": 3, "output": {"rows": 4, "created": 3, "kickedOut": 1,'
                ' "createdBillIds": [7, 8, 9], "kickouts": [{"row": 4, "accountCode": "AC-1", "meterCode": "M",'
                ' "billingPeriod": 202510, "message": "Account code not found"}]}}'
            )
        )
        assert task.task_guid == GUID
        assert task.known_status is TaskStatus.COMPLETED_WITH_KICKOUTS
        assert task.known_status.done
        assert task.begin_date == datetime(2025, 10, 2, 14, 3, 11, 123456)
        assert task.output is not None
        assert (task.output.rows, task.output.created, task.output.kicked_out) == (4, 3, 1)
        assert task.output.created_bill_ids == [7, 8, 9]
        kickout = task.output.kickouts[0]
        assert (kickout.row, kickout.billing_period, kickout.message) == (4, "202510", "Account code not found")

    @pytest.mark.parametrize(
        ("status", "known"),
        [
            ("Queued", TaskStatus.QUEUED),
            ("RUNNING", TaskStatus.RUNNING),
            ("completed", TaskStatus.COMPLETED),
            ("Completed  With Kickouts", TaskStatus.COMPLETED_WITH_KICKOUTS),
            ("failed", TaskStatus.FAILED),
            ("Cancelled", None),
        ],
    )
    def test_status_is_read_case_blind(self, status: str, known: TaskStatus | None) -> None:
        assert TaskData.model_validate({"taskGuid": GUID, "status": status}).known_status is known

    def test_output_may_be_a_json_string_or_absent(self) -> None:
        task = TaskData.model_validate({"TaskGUID": GUID, "status": "Completed", "output": '{"rows": 2, "created": 2}'})
        assert task.output is not None
        assert (task.output.rows, task.output.kickouts) == (2, [])
        assert TaskData.model_validate({"taskGUId": GUID, "status": "Running", "output": ""}).output is None
        assert not TaskStatus.RUNNING.done


class TestSmallReplies:
    def test_update_result(self) -> None:
        assert UpdateResult.model_validate({"selected": "3", "Updated": 2}) == UpdateResult(selected=3, updated=2)

    @pytest.mark.parametrize(
        ("body", "messages"),
        [
            ({"errors": [{"message": "Batch code already exists"}, {"message": None}]}, ["Batch code already exists"]),
            ({"Errors": [{"Message": "a"}, {"message": "b"}]}, ["a", "b"]),
            ({"message": "lone"}, ["lone"]),
            ({"errors": None}, []),
        ],
    )
    def test_errors_body(self, body: dict[str, Any], messages: list[str]) -> None:
        assert ErrorsBody.model_validate(body).messages() == messages

    @pytest.mark.parametrize("payload", [GUID, f"  {GUID} ", {"taskGUId": GUID}, {"TaskGuid": GUID}])
    def test_task_guid_as_string_or_object(self, payload: Any) -> None:
        assert parse_task_guid(payload) == GUID

    @pytest.mark.parametrize("payload", ["", None, 5, {"id": GUID}, {"taskGUId": ""}, [GUID]])
    def test_no_task_guid(self, payload: Any) -> None:
        with pytest.raises(ValueError, match="no task GUID"):
            parse_task_guid(payload)
