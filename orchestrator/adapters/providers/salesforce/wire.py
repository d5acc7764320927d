"""What Salesforce sends back, parsed at the boundary (pydantic v2), and the kind of each field.

Tolerance rules (`../shared/reference/salesforce-billing-api.md`):

- Unknown extra fields are ignored; every model is frozen; a field a query did not select is None.
- Money is `Decimal` and never passes through `float`: bodies are decoded with `parse_float=Decimal`
  and a float reaching a money field is refused. Numeric strings are read as numbers.
- Dates are `yyyy-mm-dd`; date-times read with `+0000`, `+00:00` or `Z` offsets.
- Records carry `attributes` (`type`, `url`) and their fields in canonical case, `null` when empty.

Each record field is annotated with its `FieldKind`: the SOQL builder (`soql.py`) reads the
fields an object has, and what may be compared with them, from these models and nowhere else.

Only this package imports this module; the domain never sees these types.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "ApiUsage",
    "AsyncResponse",
    "BillingScheduleRecord",
    "ErrorItem",
    "FieldKind",
    "InvoiceLineRecord",
    "InvoiceRecord",
    "QueryPage",
    "Record",
    "RecoveryResult",
    "RecoveryResults",
    "ScheduleRecovery",
    "TokenError",
    "TokenResponse",
    "WireModel",
    "error_items",
    "parse_limit_info",
]


class FieldKind(enum.Enum):
    """What a record field holds, and so how SOQL may filter on it."""

    ID = "id"  # quoted, compared exactly
    TEXT = "text"  # quoted, `=` compares case-insensitively
    CURRENCY = "currency"  # bare numbers; the only kind `>` and `<` apply to
    DATE = "date"  # selected, never filtered
    DATETIME = "datetime"  # selected, never filtered


class WireModel(BaseModel):
    """Base of every Salesforce reply model: frozen, extra fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _no_float(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError("money must not travel as a binary float; decode bodies with parse_float=Decimal")
    return value


_OFFSET_WITHOUT_COLON = re.compile(r"([+-]\d{2})(\d{2})$")


def _iso_offset(value: Any) -> Any:
    """`2025-10-01T06:00:00.000+0000` (Salesforce's form) → `...+00:00`, which every ISO reader takes."""
    if isinstance(value, str):
        return _OFFSET_WITHOUT_COLON.sub(r"\1:\2", value.strip())
    return value


IdField = Annotated[str | None, FieldKind.ID]
TextField = Annotated[str | None, FieldKind.TEXT]
MoneyField = Annotated[Decimal | None, BeforeValidator(_no_float), FieldKind.CURRENCY]
DateField = Annotated[date | None, FieldKind.DATE]
DateTimeField = Annotated[datetime | None, BeforeValidator(_iso_offset), FieldKind.DATETIME]


# --- records -----------------------------------------------------------------------------------------


class Attributes(WireModel):
    type: str | None = None
    url: str | None = None


class Record(WireModel):
    """A query's record: `attributes`, then only the selected fields (the rest stay None)."""

    attributes: Attributes | None = None
    Id: IdField = None

    @classmethod
    def field_kinds(cls) -> Mapping[str, FieldKind]:
        """Every field of the object (canonical case) and its kind."""
        return _field_kinds(cls)


@functools.cache
def _field_kinds(model: type[Record]) -> Mapping[str, FieldKind]:
    kinds: dict[str, FieldKind] = {}
    for name, info in model.model_fields.items():
        kind = next((m for m in info.metadata if isinstance(m, FieldKind)), None)
        if kind is not None:
            kinds[name] = kind
    return MappingProxyType(kinds)


class InvoiceRecord(Record):
    InvoiceNumber: TextField = None
    Status: TextField = None
    BillingAccountId: IdField = None
    InvoiceBatchRunId: IdField = None
    InvoiceDate: DateField = None
    DueDate: DateField = None
    PostedDate: DateTimeField = None
    TotalAmount: MoneyField = None
    TotalAmountWithTax: MoneyField = None
    Balance: MoneyField = None
    NetPaymentsApplied: MoneyField = None
    NetCreditsApplied: MoneyField = None
    CurrencyIsoCode: TextField = None
    Description: TextField = None


class InvoiceLineRecord(Record):
    InvoiceId: IdField = None
    BillingScheduleId: IdField = None
    Name: TextField = None
    Type: TextField = None
    LineAmount: MoneyField = None
    TaxAmount: MoneyField = None
    InvoiceLineStartDate: DateField = None
    InvoiceLineEndDate: DateField = None


class BillingScheduleRecord(Record):
    BillingAccountId: IdField = None
    Status: TextField = None
    BilledAmount: MoneyField = None


R = TypeVar("R", bound=Record)


class QueryPage(WireModel, Generic[R]):
    """One page of `GET /query`: follow `nextRecordsUrl` until `done`; never assume a page size."""

    totalSize: int = 0
    done: bool = True
    nextRecordsUrl: str | None = None
    records: list[R] = Field(default_factory=list)

    @field_validator("records", mode="before")
    @classmethod
    def _null_records(cls, value: Any) -> Any:
        return [] if value is None else value


# --- actions -------------------------------------------------------------------------------------------


class ErrorItem(WireModel):
    """One entry of an error array: `[{"message", "errorCode", "fields"}]`."""

    message: str | None = None
    errorCode: str | None = None
    fields: list[str] = Field(default_factory=list)

    @field_validator("fields", mode="before")
    @classmethod
    def _null_fields(cls, value: Any) -> Any:
        return [] if value is None else value

    def describe(self) -> str:
        """`ERROR_CODE: message`, or whichever half there is."""
        return ": ".join(part for part in (self.errorCode, self.message) if part)


class AsyncResponse(WireModel):
    """The Revenue Async Response of void and generate; `success: false` is a refusal."""

    success: bool | None = None
    requestIdentifier: str | None = None
    errors: list[ErrorItem] = Field(default_factory=list)

    @field_validator("errors", mode="before")
    @classmethod
    def _null_errors(cls, value: Any) -> Any:
        return [] if value is None else value


class ScheduleRecovery(WireModel):
    billingScheduleId: str | None = None
    billingScheduleStatus: str | None = None


class RecoveryResult(WireModel):
    invoiceId: str | None = None
    invoiceStatus: str | None = None
    success: bool | None = None
    invoiceErrors: list[ErrorItem] = Field(default_factory=list)
    billingSchedules: list[ScheduleRecovery] = Field(default_factory=list)

    @field_validator("invoiceErrors", "billingSchedules", mode="before")
    @classmethod
    def _null_lists(cls, value: Any) -> Any:
        return [] if value is None else value


class RecoveryResults(WireModel):
    recoveryResults: list[RecoveryResult] = Field(default_factory=list)

    @field_validator("recoveryResults", mode="before")
    @classmethod
    def _null_results(cls, value: Any) -> Any:
        return [] if value is None else value


# --- OAuth ---------------------------------------------------------------------------------------------


class TokenResponse(WireModel):
    """`POST /services/oauth2/token`: no `expires_in`; a token lives as long as its session."""

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    instance_url: str | None = None
    issued_at: str | None = None


class TokenError(WireModel):
    error: str | None = None
    error_description: str | None = None


# --- errors and headers --------------------------------------------------------------------------------


def error_items(payload: Any) -> list[ErrorItem]:
    """The entries of an error body: the usual array, or a single object; [] for anything else."""
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        return []
    return [ErrorItem.model_validate(item) for item in payload if isinstance(item, dict)]


class ApiUsage(WireModel):
    """`Sforce-Limit-Info: api-usage=N/M`: requests in the rolling 24 hours, and the org's allocation."""

    used: int
    allocation: int

    @property
    def share(self) -> float:
        """How much of the allocation is used (1.0 and more: spent)."""
        return self.used / self.allocation if self.allocation > 0 else 1.0


_API_USAGE = re.compile(r"(?:^|[,;\s])api-usage=(\d+)/(\d+)")


def parse_limit_info(value: str | None) -> ApiUsage | None:
    """The `api-usage` item of a `Sforce-Limit-Info` header (others, such as `per-app-api-usage`, are ignored)."""
    if not value:
        return None
    match = _API_USAGE.search(value)
    if match is None:
        return None
    return ApiUsage(used=int(match.group(1)), allocation=int(match.group(2)))
