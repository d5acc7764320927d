"""What EnergyCAP sends back, parsed at the boundary (pydantic v2), read tolerantly.

- Keys are matched case-blind (`taskGUId`, `taskGuid` and `TaskGUID` read the same); extra fields
  are ignored; every model is frozen.
- Numbers may come as numbers or numeric strings. Money is `Decimal` and never passes through
  `float`: bodies are decoded with `parse_float=Decimal`, and a float reaching a money field is refused.
- Dates come as `2025-09-01` or `2025-09-01T00:00:00`; date-times with or without `Z`/offset and
  with .NET's seven fractional digits. A null list reads as empty, a null flag as false.
- A task's `output` may come as an object or as a JSON string holding one; a task's `status` is
  compared case-blind; the import's reply is the task GUID as a JSON string or `{"taskGUId": ...}`.

Only this package imports this module; the domain never sees these types.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "AccountRef",
    "BatchData",
    "BatchRef",
    "BillData",
    "ErrorsBody",
    "ImportOutput",
    "KickoutData",
    "MeterRef",
    "TaskData",
    "TaskStatus",
    "UpdateResult",
    "WireModel",
    "parse_task_guid",
]


class WireModel(BaseModel):
    """Base of every EnergyCAP reply model: frozen, extra fields ignored, keys matched case-blind."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _case_blind_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        aliases = _ALIASES.get(cls)
        if aliases is None:
            aliases = {(info.alias or name).lower(): info.alias or name for name, info in cls.model_fields.items()}
            _ALIASES[cls] = aliases
        return {aliases.get(str(key).lower(), key): value for key, value in data.items()}


#: Per model: lower-case wire name -> the alias pydantic matches (filled on first use).
_ALIASES: dict[type[WireModel], dict[str, str]] = {}


def _money(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("money must not pass through float: decode the body with parse_float=Decimal")
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value[:40]!r}") from None
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"not a number: {value}")
    return value


def _flag(value: Any) -> Any:
    return False if value is None else value


def _list(value: Any) -> Any:
    return [] if value is None else value


_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _date(value: Any) -> Any:
    if isinstance(value, str):
        match = _DATE_PREFIX.match(value.strip())
        if match:
            return match.group()
    return value


def _datetime(value: Any) -> Any:
    if isinstance(value, str):
        return _FRACTION.sub(r"\1", value.strip())
    return value


Money = Annotated[Decimal, BeforeValidator(_money)]
Flag = Annotated[bool, BeforeValidator(_flag)]
WireDate = Annotated[date, BeforeValidator(_date)]
WireDateTime = Annotated[datetime, BeforeValidator(_datetime)]


class AccountRef(WireModel):
    account_id: int = Field(alias="accountId")
    account_code: str = Field(alias="accountCode")
    account_info: str | None = Field(None, alias="accountInfo")


class MeterRef(WireModel):
    meter_id: int = Field(alias="meterId")
    meter_code: str = Field(alias="meterCode")


class BatchRef(WireModel):
    batch_id: int | None = Field(None, alias="batchId")
    batch_code: str | None = Field(None, alias="batchCode")


class BillData(WireModel):
    """A bill (BillResponse), with the reversal links the contract decides."""

    bill_id: int = Field(alias="billId")
    account: AccountRef | None = None
    meters: Annotated[list[MeterRef], BeforeValidator(_list)] = []
    begin_date: WireDate | None = Field(None, alias="beginDate")
    end_date: WireDate | None = Field(None, alias="endDate")
    billing_period: int | None = Field(None, alias="billingPeriod")
    account_period: int | None = Field(None, alias="accountPeriod")
    total_cost: Money = Field(alias="totalCost")
    void: Flag = False
    approved: Flag = False
    ap_exported: Flag = Field(False, alias="apExported")
    gl_exported: Flag = Field(False, alias="glExported")
    batch: BatchRef | None = None
    is_reversal: Flag = Field(False, alias="isReversal")
    reversal_of_bill_id: int | None = Field(None, alias="reversalOfBillId")
    is_reversed: Flag = Field(False, alias="isReversed")
    reversed_by_bill_id: int | None = Field(None, alias="reversedByBillId")

    @property
    def skip_reason(self) -> str | None:
        """Why a reversal must leave this bill alone (the contract's order), or None: eligible.

        Exported bills are eligible: a reversal is how an exported bill is undone.
        """
        if self.void:
            return "void"
        if self.is_reversal or self.reversal_of_bill_id is not None:
            return "reversal_bill"
        if self.is_reversed or self.reversed_by_bill_id is not None:
            return "already_reversed"
        return None


class BatchData(WireModel):
    batch_id: int = Field(alias="batchId")
    batch_code: str = Field(alias="batchCode")
    is_open: bool | None = Field(None, alias="isOpen")
    batch_status: str | None = Field(None, alias="batchStatus")
    bill_count: int | None = Field(None, alias="billCount")
    running_total: Money | None = Field(None, alias="runningTotal")
    start_date: WireDateTime | None = Field(None, alias="startDate")
    end_date: WireDateTime | None = Field(None, alias="endDate")
    note: str | None = None


class TaskStatus(enum.StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    COMPLETED_WITH_KICKOUTS = "Completed with kickouts"
    FAILED = "Failed"

    @property
    def done(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.COMPLETED_WITH_KICKOUTS, TaskStatus.FAILED)


_STATUS_BY_KEY = {" ".join(status.value.lower().split()): status for status in TaskStatus}


class KickoutData(WireModel):
    row: int
    account_code: str | None = Field(None, alias="accountCode")
    meter_code: str | None = Field(None, alias="meterCode")
    billing_period: Annotated[str | None, BeforeValidator(lambda v: None if v is None else str(v))] = Field(
        None, alias="billingPeriod"
    )
    message: str = ""


def _json_text(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value, parse_float=Decimal) if value.strip() else None
    return value


class ImportOutput(WireModel):
    rows: int = 0
    created: int = 0
    kicked_out: int = Field(0, alias="kickedOut")
    created_bill_ids: Annotated[list[int], BeforeValidator(_list)] = Field([], alias="createdBillIds")
    kickouts: Annotated[list[KickoutData], BeforeValidator(_list)] = []


class TaskType(WireModel):
    task_type_code: str | None = Field(None, alias="taskTypeCode")


class TaskData(WireModel):
    """A task (GetTaskV3): an import and how it ended."""

    task_guid: str = Field(alias="taskGUId")
    task_id: int | None = Field(None, alias="taskId")
    task_type: TaskType | None = Field(None, alias="taskType")
    status: str
    message: str | None = None
    begin_date: WireDateTime | None = Field(None, alias="beginDate")
    end_date: WireDateTime | None = Field(None, alias="endDate")
    batch: BatchRef | None = None
    current_success_count: int | None = Field(None, alias="currentSuccessCount")
    output: Annotated[ImportOutput | None, BeforeValidator(_json_text)] = None

    @property
    def known_status(self) -> TaskStatus | None:
        """The status as one of the contract's five (case- and space-blind), None for any other."""
        return _STATUS_BY_KEY.get(" ".join(self.status.lower().split()))


class UpdateResult(WireModel):
    """The reply of a bulk bill action: ids selected, bills actually changed."""

    selected: int
    updated: int


class ErrorItem(WireModel):
    message: str | None = None


class ErrorsBody(WireModel):
    """A 4xx body: `{"errors": [{"message": ...}]}` (decided); a lone `{"message": ...}` reads too."""

    errors: Annotated[list[ErrorItem], BeforeValidator(_list)] = []
    message: str | None = None

    def messages(self) -> list[str]:
        found = [item.message for item in self.errors if item.message]
        return found or ([self.message] if self.message else [])


def parse_task_guid(payload: Any) -> str:
    """The task GUID an import answers: a JSON string, or an object with `taskGUId`; ValueError otherwise."""
    if isinstance(payload, Mapping):
        payload = next((value for key, value in payload.items() if str(key).lower() == "taskguid"), None)
    if isinstance(payload, str) and payload.strip():
        return payload.strip()
    raise ValueError('the reply holds no task GUID (a JSON string or {"taskGUId": ...} was expected)')
