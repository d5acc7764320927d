"""What iMIS sends back, parsed at the boundary (pydantic v2).

Tolerance rules, because iMIS versions and tenants differ (reference/imis-api.md):

- `$type` is never matched: older versions use other assembly names, so it is dropped on read.
- A primitive may come bare (`"8158"`) or wrapped (`{"$type": "System.String", "$value": "8158"}`);
  a collection may come bare (`[...]`) or wrapped (`{"$type": ..., "$values": [...]}`). Both read the same.
- Enumerations (`Status`, `AccountingMethod`, `AutoPayOption`) may come as integers, numeric strings or
  names (`"Cash"`, `"BillAllContacts"`, `"Reversing invoices"`); names compare case- and space-blind.
- Unknown extra fields are ignored; every model is frozen.
- Money is `Decimal` and never passes through `float`: bodies are decoded by the shared `decode_json`
  (`orchestrator.adapters.providers.http`, re-exported here), and a float reaching a money field is refused.
- Dates are read with or without `Z`/offset and with .NET's seven fractional digits.

Only `client.py` and `provider.py` import this module; the domain never sees these types.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from orchestrator.adapters.providers.http import decode_json
from orchestrator.adapters.providers.imis.model import AccountingMethod, AutoPayOption, BatchStatus, BillingLogStatus

__all__ = [
    "BatchSummaryData",
    "BillingLogData",
    "CurrencyData",
    "ErrorItem",
    "ErrorsBody",
    "GenericExecuteResult",
    "InvoiceSummaryData",
    "MonetaryAmountData",
    "PagedResult",
    "PartyRef",
    "ServiceResponse",
    "TokenResponse",
    "WireModel",
    "decode_json",
    "parse_accounting_method",
    "parse_auto_pay_option",
    "parse_batch_status",
    "parse_billing_log_status",
    "unwrap",
]


def unwrap(value: Any) -> Any:
    """`{"$type": ..., "$value": x}` → x and `{"$type": ..., "$values": [..]}` → [..], recursively for
    collection elements; anything else is returned unchanged (objects are unwrapped by their own model)."""
    while isinstance(value, Mapping):
        if "$value" in value:
            value = value["$value"]
        elif "$values" in value:
            return [unwrap(item) for item in value["$values"] or ()]
        else:
            return value
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


class WireModel(BaseModel):
    """Base of every iMIS reply model: frozen, extra fields ignored, `$`-keys dropped, values unwrapped."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _unwrap_fields(cls, data: Any) -> Any:
        data = unwrap(data)
        if isinstance(data, Mapping):
            return {key: unwrap(value) for key, value in data.items() if not str(key).startswith("$")}
        return data


# --- enumerations --------------------------------------------------------------------------------------

_E = TypeVar("_E", BillingLogStatus, AccountingMethod, AutoPayOption)


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _int_enum_parser(enum_cls: type[_E], names: Mapping[str, _E]) -> Callable[[Any], _E]:
    by_key = {_name_key(name): member for name, member in names.items()}

    def parse(value: Any) -> _E:
        value = unwrap(value)
        if isinstance(value, enum_cls):
            return value
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, Decimal) and value == value.to_integral_value():
            number = int(value)
        elif isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"-?\d+", text):
                number = int(text)
            elif _name_key(text) in by_key:
                return by_key[_name_key(text)]
        if number is not None:
            try:
                return enum_cls(number)
            except ValueError:
                pass
        raise ValueError(f"unknown {enum_cls.__name__} value {value!r}")

    return parse


parse_billing_log_status = _int_enum_parser(
    BillingLogStatus,
    {
        "Pending": BillingLogStatus.PENDING,
        "Processing": BillingLogStatus.PROCESSING,
        "Completed": BillingLogStatus.COMPLETED,
        "Complete": BillingLogStatus.COMPLETED,
        "Failed": BillingLogStatus.FAILED,
        "Unposted batch": BillingLogStatus.UNPOSTED_BATCH,
        "Reversing invoices": BillingLogStatus.REVERSING,
        "Reversing": BillingLogStatus.REVERSING,
        "Batch deleted": BillingLogStatus.BATCH_DELETED,
    },
)
parse_accounting_method = _int_enum_parser(
    AccountingMethod, {"Cash": AccountingMethod.CASH, "Accrual": AccountingMethod.ACCRUAL}
)
parse_auto_pay_option = _int_enum_parser(
    AutoPayOption,
    {
        "NotDefined": AutoPayOption.NOT_DEFINED,
        "Undefined": AutoPayOption.NOT_DEFINED,
        "None": AutoPayOption.NOT_DEFINED,
        "BillAllContacts": AutoPayOption.BILL_ALL_CONTACTS,
        "BillOnlyAutoPayEnrollments": AutoPayOption.BILL_ONLY_AUTOPAY_ENROLLMENTS,
        "BillOnlyAutoPayContacts": AutoPayOption.BILL_ONLY_AUTOPAY_ENROLLMENTS,
        "BillOnlyNonAutoPayContacts": AutoPayOption.BILL_ONLY_NON_AUTOPAY_CONTACTS,
        "BillOnlyNonAutoPayEnrollments": AutoPayOption.BILL_ONLY_NON_AUTOPAY_CONTACTS,
    },
)

_BATCH_STATUS_BY_KEY = {_name_key(member.value): member for member in BatchStatus}


def parse_batch_status(value: str | None) -> BatchStatus:
    """`Open`/`Ready`/`Posted` in any case; anything else (or nothing) is `UNKNOWN`."""
    if value is None:
        return BatchStatus.UNKNOWN
    return _BATCH_STATUS_BY_KEY.get(_name_key(value), BatchStatus.UNKNOWN)


StatusField = Annotated[BillingLogStatus, BeforeValidator(parse_billing_log_status)]
AccountingMethodField = Annotated[AccountingMethod, BeforeValidator(parse_accounting_method)]
AutoPayOptionField = Annotated[AutoPayOption, BeforeValidator(parse_auto_pay_option)]


# --- money -----------------------------------------------------------------------------------------------


class CurrencyData(WireModel):
    CurrencyCode: str | None = None
    DecimalPositions: int | None = None


class MonetaryAmountData(WireModel):
    """`{"Amount": 95.00, "Currency": {...}, "IsAmountDefined": true}`; a bare number is read as Amount."""

    Amount: Decimal | None = None
    Currency: CurrencyData | None = None
    IsAmountDefined: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_amount(cls, data: Any) -> Any:
        data = unwrap(data)
        if isinstance(data, int | Decimal | str | float) and not isinstance(data, bool):
            return {"Amount": data}
        return data

    @field_validator("Amount", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float):
            raise ValueError("money must not travel as a binary float; decode bodies with decode_json")
        return value

    @property
    def value(self) -> Decimal:
        """The amount; an undefined amount counts as zero."""
        return self.Amount if self.Amount is not None else Decimal("0")


# --- entities --------------------------------------------------------------------------------------------


class PartyRef(WireModel):
    Id: str | None = None
    PartyId: str | None = None
    Name: str | None = None

    @property
    def party_id(self) -> str | None:
        return self.PartyId or self.Id


class BillingLogData(WireModel):
    BillingLogKey: str
    BillingRunName: str | None = None
    BillingCycleName: str | None = None
    BillingType: str | None = None
    BillingDate: datetime | None = None
    EffectiveDate: datetime | None = None
    Status: StatusField
    AccountingMethod: AccountingMethodField = AccountingMethod.CASH
    BillingPartyId: str | None = None
    AutoPayOption: AutoPayOptionField = AutoPayOption.NOT_DEFINED
    OriginalBillingLogKey: str | None = None
    BatchId: str | None = None
    Information: str | None = None
    DoNotApplyCredits: bool | None = None
    DoNotProrate: bool | None = None


class InvoiceSummaryData(WireModel):
    InvoiceId: str
    InvoiceNumber: int | None = None
    AccountingMethod: AccountingMethodField
    InvoiceAmount: MonetaryAmountData = Field(default_factory=MonetaryAmountData)
    Balance: MonetaryAmountData = Field(default_factory=MonetaryAmountData)
    PaymentAmount: MonetaryAmountData = Field(default_factory=MonetaryAmountData)
    PendingPaymentAmount: MonetaryAmountData = Field(default_factory=MonetaryAmountData)
    BillToParty: PartyRef | None = None
    SoldToParty: PartyRef | None = None
    InvoiceDate: datetime | None = None
    DueDate: datetime | None = None
    Description: str | None = None
    BillingLogKey: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_cash_from_legacy_id(cls, data: Any) -> Any:
        # Legacy persisted cash invoices carry ids like "CASH:23415:<key>"; trust that when the
        # method itself is missing. Any other invoice without a method is refused by validation.
        if isinstance(data, Mapping) and data.get("AccountingMethod") is None:
            invoice_id = unwrap(data.get("InvoiceId"))
            if isinstance(invoice_id, str) and invoice_id.upper().startswith("CASH:"):
                return {**data, "AccountingMethod": AccountingMethod.CASH}
        return data


T = TypeVar("T", bound=WireModel)


class PagedResult(WireModel, Generic[T]):
    """One page of a list endpoint. Honour the `Limit` the server echoes, not the one asked."""

    Items: list[T] = Field(default_factory=list)
    Offset: int | None = None
    Limit: int | None = None
    Count: int | None = None
    TotalCount: int | None = None
    NextPageLink: str | None = None
    HasNext: bool | None = None
    NextOffset: int | None = None

    @field_validator("Items", mode="before")
    @classmethod
    def _null_items(cls, value: Any) -> Any:
        return [] if value is None else value


class ServiceResponse(WireModel):
    """Reply of the `_execute` endpoints. `IsSuccessStatusCode` is absent on a GenericExecuteResult:
    only an explicit `false` is a refusal (reference/imis-api.md)."""

    IsSuccessStatusCode: bool | None = None
    Message: str | None = None
    Result: Any = None

    @property
    def refused(self) -> bool:
        return self.IsSuccessStatusCode is False


GenericExecuteResult = ServiceResponse


class TokenResponse(WireModel):
    access_token: SecretStr
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: float | None = None
    userName: str | None = None


class BatchSummaryData(WireModel):
    BatchId: str
    BatchStatus: str | None = None
    TransactionCount: int | None = None
    PostingError: str | None = None


class ErrorItem(WireModel):
    Message: str | None = None
    FieldName: str | None = None


class ErrorsBody(WireModel):
    """A refusal body: iMIS `{"Errors": {"$values": [{"Message": ...}]}}`, ASP.NET `{"Message": ...}`,
    or OAuth `{"error": "invalid_grant", "error_description": ...}`."""

    Errors: list[ErrorItem] = Field(default_factory=list)
    Message: str | None = None
    error: str | None = None
    error_description: str | None = None

    @field_validator("Errors", mode="before")
    @classmethod
    def _errors_shapes(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [{"Message": value}]
        if isinstance(value, list):
            return [{"Message": item} if isinstance(item, str) else item for item in value]
        return value

    def messages(self) -> list[str]:
        found = [item.Message for item in self.Errors if item.Message]
        if not found and self.Message:
            found = [self.Message]
        if not found and (self.error_description or self.error):
            found = [self.error_description or self.error or ""]
        return found
