"""EnergyCAP's JSON, both ways: entities rendered as the API sends them, request bodies read into commands.

Bills and batches are rendered by hand (bills are most of the traffic: a page of 1000 is one join
of cached bytes), exact: money is written from the `Decimal`'s own digits, never through float;
everything else goes through the kit's `dumps`. Request bodies are
read case-blind (ASP.NET binds member names that way); a body of the wrong shape is a `SimError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from simulators.common import dumps, load_json
from simulators.energycap.errors import SimError
from simulators.energycap.state import Batch, Bill, ImportRequest, ImportTask, ReverseRequest

# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _text(value: str | None) -> str:
    return json.dumps(value)


def _number(value: Decimal) -> str:
    if not value.is_finite():  # pragma: no cover - the state only holds finite amounts
        raise ValueError(f"not a finite amount: {value}")
    return str(value)


def _day(value: date) -> str:
    return f'"{value.isoformat()}T00:00:00"'


def render_moment(value: datetime | None) -> str | None:
    """A UTC date-time as the API writes it (`2025-10-02T14:03:11Z`), None as None."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _optional_int(value: int | None) -> str:
    return "null" if value is None else str(value)


def bill_json(bill: Bill) -> bytes:
    """One bill (BillResponse), cached per bill version (the lock must be held)."""
    cached = bill.rendered
    if cached is not None and cached[0] == bill.version:
        return cached[1]
    account = bill.account
    meters = ",".join(f'{{"meterId":{m.meter_id},"meterCode":{_text(m.meter_code)}}}' for m in bill.meters)
    batch = (
        "null"
        if bill.batch is None
        else f'{{"batchId":{bill.batch.batch_id},"batchCode":{_text(bill.batch.batch_code)}}}'
    )
    body = (
        f'{{"billId":{bill.bill_id},'
        f'"account":{{"accountId":{account.account_id},"accountCode":{_text(account.account_code)},'
        f'"accountInfo":{_text(account.account_info)}}},'
        f'"meters":[{meters}],'
        f'"beginDate":{_day(bill.begin_date)},"endDate":{_day(bill.end_date)},'
        f'"billingPeriod":{bill.billing_period},"accountPeriod":{bill.account_period},'
        f'"totalCost":{_number(bill.total_cost)},'
        f'"void":{_bool(bill.void)},"approved":{_bool(bill.approved)},'
        f'"apExported":{_bool(bill.ap_exported)},"glExported":{_bool(bill.gl_exported)},'
        f'"batch":{batch},'
        f'"isReversal":{_bool(bill.is_reversal)},"reversalOfBillId":{_optional_int(bill.reversal_of_bill_id)},'
        f'"isReversed":{_bool(bill.is_reversed)},"reversedByBillId":{_optional_int(bill.reversed_by_bill_id)}}}'
    ).encode()
    bill.rendered = (bill.version, body)
    return body


def bills_json(bills: list[Bill]) -> bytes:
    return b"[" + b",".join(bill_json(bill) for bill in bills) + b"]"


def batch_json(batch: Batch) -> bytes:
    end = render_moment(batch.end_date)
    return (
        f'{{"batchId":{batch.batch_id},"batchCode":{_text(batch.batch_code)},'
        f'"isOpen":{_bool(batch.is_open)},"batchStatus":{_text("Open" if batch.is_open else "Closed")},'
        f'"billCount":{len(batch.bill_ids)},"runningTotal":{_number(batch.running_total)},'
        f'"startDate":{_text(render_moment(batch.start_date))},"endDate":{_text(end)},'
        f'"note":{_text(batch.note)}}}'
    ).encode()


def batches_json(batches: list[Batch]) -> bytes:
    return b"[" + b",".join(batch_json(batch) for batch in batches) + b"]"


def task_dict(task: ImportTask) -> dict[str, Any]:
    """One task (GetTaskV3); `output` is there once the task has ended (not for a Failed one)."""
    output = task.output
    return {
        "taskGUId": task.guid,
        "taskId": task.task_id,
        "taskType": {"taskTypeId": 1, "taskTypeCode": "BillImport", "taskTypeInfo": "Bill import"},
        "status": task.status,
        "message": task.message,
        "beginDate": render_moment(task.begin_date),
        "endDate": render_moment(task.end_date),
        "batch": {"batchId": task.batch.batch_id, "batchCode": task.batch.batch_code},
        "currentSuccessCount": len(output.created_bill_ids) if output else 0,
        "output": None
        if output is None
        else {
            "rows": output.rows,
            "created": len(output.created_bill_ids),
            "kickedOut": len(output.kickouts),
            "createdBillIds": list(output.created_bill_ids),
            "kickouts": [
                {
                    "row": k.row,
                    "accountCode": k.account_code,
                    "meterCode": k.meter_code,
                    "billingPeriod": k.billing_period,
                    "message": k.message,
                }
                for k in output.kickouts
            ],
        },
    }


def errors(message: str) -> bytes:
    """A 4xx body (contract, decided)."""
    return dumps({"errors": [{"message": message}]})


# --------------------------------------------------------------------------------------------
# Reading requests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery:
    page_number: int
    page_size: int | None
    filter: str | None


def parse_list_query(query: str) -> ListQuery:
    """`pageNumber`, `pageSize` and `filter` (names case-blind); SimError for a number that is not one."""
    page_number, page_size, filter_text = 1, None, None
    for name, value in parse_qsl(query, keep_blank_values=True):
        key = name.lower()
        if key == "pagenumber":
            page_number = _query_int(name, value)
        elif key == "pagesize":
            page_size = _query_int(name, value)
        elif key == "filter":
            filter_text = value
    return ListQuery(page_number, page_size, filter_text)


def _query_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise SimError(f"{name} must be a whole number, got {value!r}.") from None


def parse_reverse(body: bytes) -> ReverseRequest:
    """A BillReversalRequestV202510 (the v3 body reads the same)."""
    data = _object(body, "the request body")
    settings = _member(data, "batchSettings", Mapping) or {}
    new_batch = _member(settings, "newBatch", Mapping) or {}
    ids = _member(data, "billIds", list)
    if ids is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise SimError("billIds must be an array of integers.")
    return ReverseRequest(
        bill_ids=None if ids is None else tuple(ids),
        batch_mode=_member(settings, "batchMode", str),
        batch_code=_member(new_batch, "batchCode", str),
        note=_member(new_batch, "note", str),
        account_period_year=_member(new_batch, "accountPeriodYear", int),
        account_period_number=_member(new_batch, "accountPeriodNumber", int),
    )


def parse_import(body: bytes) -> ImportRequest:
    """A bill import (BillImportV3): batch settings, the base64 file, its name and a note."""
    data = _object(body, "the request body")
    settings = _member(data, "batchSettings", Mapping) or {}
    return ImportRequest(
        batch_mode=_member(settings, "batchMode", str),
        batch_code=_member(settings, "newBatchCode", str),
        data=_member(data, "data", str),
        file_name=_member(data, "fileName", str),
        note=_member(data, "importNote", str),
    )


def parse_kickout(body: bytes) -> tuple[str | None, str | None]:
    """The batch mode and new batch code of a kickout re-import."""
    data = _object(body, "the request body")
    settings = _member(data, "batchSettings", Mapping) or {}
    return _member(settings, "batchMode", str), _member(settings, "newBatchCode", str)


def _object(body: bytes, what: str) -> Mapping[str, Any]:
    data = load_json(body)
    if not isinstance(data, dict):
        raise SimError(f"{what} must be a JSON object.")
    return data


def _member(data: Mapping[str, Any], name: str, kind: type) -> Any:
    """A member by case-blind name: None when absent or null, SimError when of another type."""
    lowered = name.lower()
    value = next((v for k, v in data.items() if k.lower() == lowered), None)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SimError(f"{name} has the wrong type.")
    return value
