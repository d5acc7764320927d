"""Request bodies for iMIS, built as plain dicts in exactly the shape of ASI's own examples.

Every builder is pure. Key order and `$type` strings follow the seed pages
(`imis-adjusting-invoices.txt`, `imis-reverse-and-rebill.txt`) so that `json.dumps(builder(...))`
is byte-compatible with them; `tests/unit/providers/imis/test_envelopes.py` holds each builder to
a verbatim copy of the page's example. Optional properties are left out when not given, and take
their place in the order the page lists them when they are.

Dates render the way Json.NET renders them: `YYYY-MM-DDTHH:MM:SS`, then the fraction with trailing
zeros dropped, then `Z` for UTC or `+HH:MM` for another offset, nothing for a naive value. A `str`
date is sent unchanged, so a value read from iMIS (up to 100 ns precision) goes back as it came.
Adjustment dates are days: `YYYY-MM-DDT00:00:00`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

__all__ = [
    "ASSEMBLY",
    "batch_post",
    "bill_generation_action",
    "billing_log_body",
    "can_cash_invoice_be_reversed",
    "can_invoice_be_reversed",
    "cash_reversal_data",
    "dues_reversal_data",
    "generic_execute",
    "primitive",
    "process_accrual_reversal",
    "process_cash_reversal",
    "render_adjustment_date",
    "render_datetime",
    "reverse_invoice_action",
    "task_adhoc_request",
]

ASSEMBLY = "Asi.Contracts"
_COMMERCE = "Asi.Soa.Commerce.DataContracts"
_COMMUNICATIONS = "Asi.Soa.Communications.DataContracts"

GENERIC_EXECUTE_REQUEST = f"Asi.Soa.Core.DataContracts.GenericExecuteRequest, {ASSEMBLY}"
OBJECT_COLLECTION = "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib"
STRING_COLLECTION = "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib"
SYSTEM_STRING = "System.String"
SYSTEM_INT32 = "System.Int32"

CASH_REVERSAL_DATA = f"{_COMMERCE}.InvoiceActionCashReversalData, {ASSEMBLY}"
DUES_REVERSAL_DATA = f"{_COMMERCE}.InvoiceActionDuesReversalData, {ASSEMBLY}"
BILLING_LOG_DATA = f"{_COMMERCE}.BillingLogData, {ASSEMBLY}"
LEGACY_BILLING_DATA = f"{_COMMERCE}.LegacyBillingData, {ASSEMBLY}"
BILLING_ADDITIONAL_OPTIONS = f"{_COMMERCE}.BillingAdditionalOptionsData, {ASSEMBLY}"

TASK_ADHOC_REQUEST = f"{_COMMUNICATIONS}.TaskAdhocRequest, {ASSEMBLY}"
TASK_DEFINITION_DATA = f"{_COMMUNICATIONS}.TaskDefinitionData, {ASSEMBLY}"
TASK_ACTION_COLLECTION = f"{_COMMUNICATIONS}.TaskDefinitionActionDataCollection, {ASSEMBLY}"
REVERSE_INVOICE_ACTION = f"{_COMMUNICATIONS}.TaskDefinitionActionAdhocReverseInvoiceData, {ASSEMBLY}"
BILL_GENERATION_ACTION = f"{_COMMUNICATIONS}.TaskDefinitionActionAdHocBillGenerationData, {ASSEMBLY}"

DateLike = date | datetime | str


# --- rendering -------------------------------------------------------------------------------------------


def render_datetime(value: DateLike) -> str:
    """Json.NET's ISO rendering (see the module docstring); a `date` is its midnight, naive."""
    if isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        return f"{value.isoformat()}T00:00:00"
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is None:
        return text
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def render_adjustment_date(value: DateLike) -> str:
    """An adjustment is recorded for a day: `YYYY-MM-DDT00:00:00` (a `str` goes unchanged)."""
    if isinstance(value, str):
        return value
    return f"{date(value.year, value.month, value.day).isoformat()}T00:00:00"


def primitive(type_name: str, value: Any, *, wrap: bool = False) -> Any:
    """A primitive `_execute` parameter: bare as the seed page shows it, or `$value`-wrapped."""
    return {"$type": type_name, "$value": value} if wrap else value


# --- GenericExecuteRequest -------------------------------------------------------------------------------


def generic_execute(*, entity: str, operation: str, parameters: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The `GenericExecuteRequest` wrapper; `parameters` are `(ParameterTypeName, value)` pairs."""
    return {
        "$type": GENERIC_EXECUTE_REQUEST,
        "OperationName": operation,
        "EntityTypeName": entity,
        "Parameters": {"$type": OBJECT_COLLECTION, "$values": [value for _, value in parameters]},
        "ParameterTypeName": {"$type": STRING_COLLECTION, "$values": [name for name, _ in parameters]},
        "UseJson": False,
    }


def can_cash_invoice_be_reversed(invoice_id: str, *, wrap_primitives: bool = False) -> dict[str, Any]:
    return generic_execute(
        entity="Invoice",
        operation="CanCashInvoiceBeReversed",
        parameters=[(SYSTEM_STRING, primitive(SYSTEM_STRING, invoice_id, wrap=wrap_primitives))],
    )


def can_invoice_be_reversed(invoice_number: int, *, wrap_primitives: bool = False) -> dict[str, Any]:
    return generic_execute(
        entity="Invoice",
        operation="CanInvoiceBeReversed",
        parameters=[(SYSTEM_INT32, primitive(SYSTEM_INT32, int(invoice_number), wrap=wrap_primitives))],
    )


def cash_reversal_data(
    *,
    invoice_id: str,
    adjustment_date: DateLike,
    reason: str | None = None,
    do_not_cancel_membership: bool | None = True,
    ship_to_party_id: str | None = None,
    bill_date: DateLike | None = None,
) -> dict[str, Any]:
    """`InvoiceActionCashReversalData`; omit `ship_to_party_id` to reverse every line."""
    data: dict[str, Any] = {"$type": CASH_REVERSAL_DATA, "InvoiceId": invoice_id}
    if ship_to_party_id is not None:
        data["ShipToPartyId"] = ship_to_party_id
    if bill_date is not None:
        data["BillDate"] = render_datetime(bill_date)
    data["AdjustmentDate"] = render_adjustment_date(adjustment_date)
    if reason is not None:
        data["AdjustmentReason"] = reason
    if do_not_cancel_membership is not None:
        data["DoNotCancelMembership"] = do_not_cancel_membership
    return data


def dues_reversal_data(
    *,
    invoice_id: str,
    adjustment_date: DateLike,
    reason: str | None = None,
    do_not_cancel_membership: bool | None = True,
    delivery_id: str | None = None,
) -> dict[str, Any]:
    """`InvoiceActionDuesReversalData`: the accrual reversal, also the reverse action's invoice list."""
    data: dict[str, Any] = {
        "$type": DUES_REVERSAL_DATA,
        "InvoiceId": invoice_id,
        "AdjustmentDate": render_adjustment_date(adjustment_date),
    }
    if reason is not None:
        data["AdjustmentReason"] = reason
    if delivery_id is not None:
        data["DeliveryId"] = delivery_id
    if do_not_cancel_membership is not None:
        data["DoNotCancelMembership"] = do_not_cancel_membership
    return data


def process_cash_reversal(data: Mapping[str, Any]) -> dict[str, Any]:
    """`ProcessCashReversal` carrying a `cash_reversal_data(...)`."""
    return generic_execute(
        entity="Invoice", operation="ProcessCashReversal", parameters=[(CASH_REVERSAL_DATA, dict(data))]
    )


def process_accrual_reversal(data: Mapping[str, Any]) -> dict[str, Any]:
    """`ProcessAccrualReversal` carrying a `dues_reversal_data(...)`."""
    return generic_execute(
        entity="Invoice", operation="ProcessAccrualReversal", parameters=[(DUES_REVERSAL_DATA, dict(data))]
    )


def batch_post(batch_id: str, *, wrap_primitives: bool = False) -> dict[str, Any]:
    """`POST /api/BatchSummary/_execute` `Post` with the BatchId (reference/imis-api.md, Batches)."""
    return generic_execute(
        entity="BatchSummary",
        operation="Post",
        parameters=[(SYSTEM_STRING, primitive(SYSTEM_STRING, batch_id, wrap=wrap_primitives))],
    )


# --- BillingLog ------------------------------------------------------------------------------------------


def billing_log_body(
    *,
    key: str,
    cycle_name: str,
    status: int,
    run_name: str | None = None,
    billing_type: str | None = None,
    billing_date: DateLike | None = None,
    effective_date: DateLike | None = None,
    accounting_method: int | None = None,
    party_id: str | None = None,
    auto_pay_option: int | None = None,
    original_key: str | None = None,
) -> dict[str, Any]:
    """The `POST /api/BillingLog` body of the seed page's step 2; properties left `None` are omitted."""
    fields: list[tuple[str, Any]] = [
        ("BillingLogKey", key),
        ("BillingRunName", run_name),
        ("BillingCycleName", cycle_name),
        ("BillingType", billing_type),
        ("BillingDate", None if billing_date is None else render_datetime(billing_date)),
        ("EffectiveDate", None if effective_date is None else render_datetime(effective_date)),
        ("Status", int(status)),
        ("AccountingMethod", None if accounting_method is None else int(accounting_method)),
        ("BillingPartyId", party_id),
        ("AutoPayOption", None if auto_pay_option is None else int(auto_pay_option)),
        ("OriginalBillingLogKey", original_key),
    ]
    body: dict[str, Any] = {"$type": BILLING_LOG_DATA}
    body.update((name, value) for name, value in fields if value is not None)
    return body


# --- TaskDefinition/_execute -----------------------------------------------------------------------------


def reverse_invoice_action(
    *,
    original_billing_log_key: str | None = None,
    invoices: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The reverse action: every open, unpaid invoice of `original_billing_log_key`, or exactly
    `invoices` (each a `dues_reversal_data(...)`), in which case OriginalBillingLogKey is null."""
    if (original_billing_log_key is None) == (not invoices):
        raise ValueError("reverse by original_billing_log_key or by a non-empty invoices list, not both")
    return {
        "$type": REVERSE_INVOICE_ACTION,
        "ActionTypeName": "ReverseInvoice",
        "Description": "Reverse Invoice",
        "ListOfInvoiceActionFundraisingAdjustmentData": None,
        "ListOfInvoiceActionDuesReversalData": [dict(item) for item in invoices] if invoices else None,
        "OriginalBillingLogKey": None if invoices else original_billing_log_key,
        "ActionNotification": None,
    }


def bill_generation_action(
    *,
    cycle_name: str,
    effective_date: DateLike,
    run_name: str,
    billing_log_key: str | None,
    auto_pay_option: int,
    original_billing_log_key: str | None = None,
    individual_party_id: str | None = None,
    automatically_post_batch: bool = True,
    is_renewal: bool = True,
    description: str | None = None,
) -> dict[str, Any]:
    """The rebill action (`LegacyBillingData`).

    `original_billing_log_key` fills `AdditionalOption.OriginalBillingLogKey` (bill only the parties
    of that billing) and is left out when None, as in the seed page's single-contact example.
    `BillingLogKey` is always sent, null when no tracking log was created. `Description` defaults
    to the cycle name.
    """
    data: dict[str, Any] = {"$type": LEGACY_BILLING_DATA, "IsRenewal": is_renewal}
    if original_billing_log_key is not None:
        data["AdditionalOption"] = {
            "$type": BILLING_ADDITIONAL_OPTIONS,
            "OriginalBillingLogKey": original_billing_log_key,
        }
    data["EffectiveDate"] = render_datetime(effective_date)
    data["BillingCycleId"] = cycle_name
    if individual_party_id is not None:
        data["IndividualBillingPartyId"] = individual_party_id
    data["BillingRunName"] = run_name
    data["BillingLogKey"] = billing_log_key
    data["AutoPayOption"] = int(auto_pay_option)
    return {
        "$type": BILL_GENERATION_ACTION,
        "ActionId": None,
        "ActionTypeName": "GenerateMembershipRenewals",
        "Description": cycle_name if description is None else description,
        "BillGenerationData": data,
        "ActionNotification": None,
        "IsProcessAutomationAction": False,
        "AutomaticallyPostBatch": automatically_post_batch,
    }


def task_adhoc_request(
    *, reverse: Mapping[str, Any] | None = None, bill: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `TaskAdhocRequest` with the reverse action, the bill-generation action, or both (in that
    order: iMIS runs the rebill once the reversals are complete)."""
    actions = [dict(action) for action in (reverse, bill) if action is not None]
    if not actions:
        raise ValueError("a task needs a reverse action, a bill-generation action, or both")
    return {
        "$type": TASK_ADHOC_REQUEST,
        "Task": {
            "$type": TASK_DEFINITION_DATA,
            "Priority": 0,
            "TaskType": 2,
            "Triggers": None,
            "Evaluations": None,
            "DataSources": None,
            "Actions": {"$type": TASK_ACTION_COLLECTION, "$values": actions},
            "Notifications": None,
            "UpdateInformation": None,
        },
        "EntityTypeName": "TaskDefinition",
        "OperationName": "TaskAdhocRequest",
    }
