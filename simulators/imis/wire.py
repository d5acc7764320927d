"""iMIS JSON on the wire: rendering state entities, and parsing requests tolerantly.

Reading follows the contract's tolerance rules: primitives may come `$value`-wrapped
(`{"$type": "System.String", "$value": "8158"}`) or bare, collections as `{"$values": [...]}` or
bare arrays, enums as integers or names, extra fields are ignored, property names are matched
case-insensitively, and `$type` is only ever searched for a class name, never compared exactly.
Malformed requests raise `BadRequest` naming the field.

Writing: money is a MonetaryAmountData object whose `Amount` is a JSON number with exactly the
Decimal's digits (`95.00`, never a float).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from simulators.common import http
from simulators.imis.commands import BillGeneration, InvoiceAction, LineAdjustment, ReverseAction, TaskRequest
from simulators.imis.entities import Batch, BillingLog, Invoice, Party
from simulators.imis.errors import BadRequest
from simulators.imis.filters import Filter

# ------------------------------------------------------------------------------------------------
# $type names
# ------------------------------------------------------------------------------------------------

T_SERVICE_RESPONSE = "Asi.Soa.Core.DataContracts.ServiceResponse, Asi.Contracts"
T_GENERIC_EXECUTE_RESULT = "Asi.Soa.Core.DataContracts.GenericExecuteResult, Asi.Contracts"
T_MONEY = "Asi.Soa.Core.DataContracts.MonetaryAmountData, Asi.Contracts"
T_CURRENCY = "Asi.Soa.Core.DataContracts.CurrencyData, Asi.Contracts"
T_INVOICE_SUMMARY = "Asi.Soa.Commerce.DataContracts.InvoiceSummaryData, Asi.Contracts"
T_INVOICE_LINE = "Asi.Soa.Commerce.DataContracts.InvoiceLineSummaryData, Asi.Contracts"
T_BILLING_LOG = "Asi.Soa.Commerce.DataContracts.BillingLogData, Asi.Contracts"
T_BATCH_SUMMARY = "Asi.Soa.Commerce.DataContracts.BatchSummaryData, Asi.Contracts"
T_PARTY_SUMMARY = "Asi.Soa.Membership.DataContracts.PartySummaryData, Asi.Contracts"
T_ERROR = "Asi.Soa.Core.DataContracts.ValidationResultData, Asi.Contracts"


def _paged_type(item_type: str) -> str:
    return f"Asi.Soa.Core.DataContracts.PagedResult`1[[{item_type}]], Asi.Contracts"


def _list_type(item_type: str) -> str:
    return f"System.Collections.Generic.List`1[[{item_type}]], mscorlib"


# ------------------------------------------------------------------------------------------------
# JSON encoding
# ------------------------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """JSON bytes; Decimals become bare numbers with their exact digits, datetimes as iMIS writes them."""
    return http.dumps(obj, render_datetime=render_datetime)


def render_datetime(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------

_CURRENCY = {"$type": T_CURRENCY, "CurrencyCode": "USD", "DecimalPositions": 2}


def money(amount: Decimal) -> dict[str, Any]:
    return {"$type": T_MONEY, "Amount": amount, "Currency": _CURRENCY, "IsAmountDefined": True}


def party_summary(party_id: str, parties: Mapping[str, Party]) -> dict[str, Any]:
    party = parties.get(party_id)
    return {
        "$type": T_PARTY_SUMMARY,
        "Id": party_id,
        "PartyId": party_id,
        "Name": party.name if party else None,
    }


def invoice_summary(invoice: Invoice, parties: Mapping[str, Party]) -> dict[str, Any]:
    return {
        "$type": T_INVOICE_SUMMARY,
        "InvoiceId": invoice.invoice_id,
        "InvoiceNumber": invoice.number,
        "AccountingMethod": invoice.accounting_method,
        "SourceSystem": invoice.source.value,
        "BillingLogKey": invoice.billing_log_key,
        "BillToParty": party_summary(invoice.bill_to, parties),
        "SoldToParty": party_summary(invoice.sold_to, parties),
        "Description": invoice.description,
        "InvoiceDate": render_datetime(invoice.invoice_date),
        "DueDate": render_datetime(invoice.due_date),
        "InvoiceAmount": money(invoice.amount),
        "Balance": money(invoice.balance),
        "PaymentAmount": money(invoice.payment_amount),
        "PendingPaymentAmount": money(invoice.pending_payment_amount),
        "Lines": {
            "$type": _list_type(T_INVOICE_LINE),
            "$values": [
                {
                    "$type": T_INVOICE_LINE,
                    "ProductCode": line.product_code,
                    "Description": line.description,
                    "Quantity": line.quantity,
                    "UnitPrice": money(line.unit_price),
                    "ExtendedAmount": money(line.total),
                }
                for line in invoice.lines
            ],
        },
    }


def invoice_summary_json(invoice: Invoice, parties: Mapping[str, Party]) -> bytes:
    """`invoice_summary` as JSON bytes, cached on the invoice until its next change."""
    cached = invoice.rendered
    if cached is not None and cached[0] == invoice.version:
        return cached[1]
    rendered = dumps(invoice_summary(invoice, parties))
    invoice.rendered = (invoice.version, rendered)
    return rendered


def billing_log(log: BillingLog) -> dict[str, Any]:
    return {
        "$type": T_BILLING_LOG,
        "BillingLogKey": log.key,
        "BillingRunName": log.run_name,
        "BillingCycleName": log.cycle_name,
        "BillingType": log.billing_type,
        "BillingDate": render_datetime(log.billing_date),
        "EffectiveDate": render_datetime(log.effective_date),
        "Status": log.status,
        "AccountingMethod": log.accounting_method,
        "BillingPartyId": log.party_id,
        "AutoPayOption": log.auto_pay_option,
        "OriginalBillingLogKey": log.original_key,
        "BatchId": log.batch_id,
        "Information": log.information,
        "DoNotApplyCredits": log.do_not_apply_credits,
        "DoNotProrate": log.do_not_prorate,
        "UpdateInformation": None,
    }


def batch_summary(batch: Batch) -> dict[str, Any]:
    return {
        "$type": T_BATCH_SUMMARY,
        "BatchId": batch.batch_id,
        "BatchStatus": batch.status,
        "TransactionCount": batch.transaction_count,
        "PostingError": batch.posting_error,
        "BillingLogKey": batch.billing_log_key,
    }


def paged(
    items: Sequence[dict[str, Any]], item_type: str, offset: int, limit: int, total: int, *, count: int | None = None
) -> dict[str, Any]:
    count = len(items) if count is None else count
    has_next = offset + count < total
    return {
        "$type": _paged_type(item_type),
        "Items": {"$type": _list_type(item_type), "$values": list(items)},
        "Offset": offset,
        "Limit": limit,
        "Count": count,
        "TotalCount": total,
        "NextPageLink": None,
        "HasNext": has_next,
        "NextOffset": offset + count if has_next else 0,
    }


def paged_json(items: Sequence[bytes], item_type: str, offset: int, limit: int, total: int) -> bytes:
    """`paged` for items that are already JSON: spliced in, not re-encoded."""
    envelope = dumps(paged([], item_type, offset, limit, total, count=len(items)))
    head, _, tail = envelope.partition(b'"$values":[]')
    return b"".join((head, b'"$values":[', b",".join(items), b"]", tail))


def service_response(result: Any) -> dict[str, Any]:
    return {"$type": T_SERVICE_RESPONSE, "IsSuccessStatusCode": True, "Message": None, "Result": result}


def refusal_200(message: str) -> dict[str, Any]:
    return {"$type": T_SERVICE_RESPONSE, "IsSuccessStatusCode": False, "Message": message, "Result": None}


def errors(message: str, field: str | None = None) -> dict[str, Any]:
    return {"Errors": {"$values": [{"$type": T_ERROR, "Message": message, "FieldName": field}]}}


def execute_result(result: Any) -> dict[str, Any]:
    return {"$type": T_GENERIC_EXECUTE_RESULT, "Result": result}


# ------------------------------------------------------------------------------------------------
# Tolerant reading
# ------------------------------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    try:
        return http.load_json(body)
    except http.InvalidBody as exc:
        raise BadRequest(exc.message) from None


def unwrap(value: Any) -> Any:
    """`{"$type": "System.Int32", "$value": 2317}` -> 2317; anything else unchanged."""
    while isinstance(value, dict) and "$value" in value:
        value = value["$value"]
    return value


def get(obj: Mapping[str, Any], name: str) -> Any:
    """A property by name, exact first, then case-insensitively; None when absent."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def type_has(obj: Any, class_name: str) -> bool:
    """Whether `$type` mentions `class_name` (case-insensitive; assembly names vary)."""
    if not isinstance(obj, Mapping):
        return False
    declared = obj.get("$type")
    return isinstance(declared, str) and class_name.lower() in declared.lower()


def values(value: Any, field: str) -> list[Any]:
    """A .NET collection: `{"$values": [...]}` or a bare array (None is empty)."""
    value = unwrap(value)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        inner = get(value, "$values")
        if isinstance(inner, list):
            return inner
    raise BadRequest(f"{field} must be a collection.", field)


def obj(value: Any, field: str, *, required: bool = True) -> dict[str, Any] | None:
    value = unwrap(value)
    if value is None:
        if required:
            raise BadRequest(f"{field} is required.", field)
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object.", field)
    return value


def as_str(value: Any, field: str, *, required: bool = False) -> str | None:
    value = unwrap(value)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{field} is required.", field)
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be a string.", field)
    if isinstance(value, (int, Decimal)):
        return str(value)
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string.", field)
    return value


def as_int(value: Any, field: str, *, required: bool = False) -> int | None:
    value = unwrap(value)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{field} is required.", field)
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be an integer.", field)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise BadRequest(f"{field} must be an integer, not {value!r}.", field)


def as_bool(value: Any, field: str, *, default: bool = False) -> bool:
    value = unwrap(value)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"{field} must be true or false.", field)


def as_decimal(value: Any, field: str, *, required: bool = False) -> Decimal | None:
    value = unwrap(value)
    if isinstance(value, Mapping):  # a MonetaryAmountData
        value = unwrap(get(value, "Amount"))
    if value is None or value == "":
        if required:
            raise BadRequest(f"{field} is required.", field)
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{field} must be a number.", field)
    try:
        if isinstance(value, (int, Decimal, str)):
            result = Decimal(value)
            if result.is_finite():
                return result
    except InvalidOperation:
        pass
    raise BadRequest(f"{field} must be a number, not {value!r}.", field)


def as_datetime(value: Any, field: str, *, required: bool = False) -> datetime | None:
    value = unwrap(value)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{field} is required.", field)
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise BadRequest(f"{field} must be an ISO 8601 date, not {value!r}.", field)


def as_guid(value: Any, field: str, *, required: bool = False) -> str | None:
    text = as_str(value, field, required=required)
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise BadRequest(f"{field} must be a GUID, not {text!r}.", field) from None


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


STATUS_NAMES = {
    "pending": 0,
    "processing": 1,
    "completed": 2,
    "failed": 3,
    "unpostedbatch": 4,
    "unposted": 4,
    "reversinginvoices": 5,
    "reversing": 5,
    "batchdeleted": 6,
}
ACCOUNTING_METHOD_NAMES = {"cash": 0, "accrual": 1}
AUTO_PAY_NAMES = {
    "notdefined": 0,
    "none": 0,
    "billallcontacts": 1,
    "billonlyautopayenrollments": 2,
    "billonlyautopaycontacts": 2,
    "billonlynonautopaycontacts": 3,
}


def as_enum(value: Any, field: str, names: Mapping[str, int], *, default: int) -> int:
    value = unwrap(value)
    if value is None or value == "":
        return default
    allowed = set(names.values())
    if isinstance(value, str) and not value.strip().isdigit():
        found = names.get(_norm(value))
        if found is None:
            raise BadRequest(f"{field} '{value}' is not one of {sorted(names)}.", field)
        return found
    number = as_int(value, field)
    if number not in allowed:
        raise BadRequest(f"{field} {number} is not one of {sorted(allowed)}.", field)
    return number if number is not None else default


# ------------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------------


def parse_billing_log(body: bytes) -> BillingLog:
    data = obj(load_json(body), "BillingLogData")
    assert data is not None
    cycle = as_str(get(data, "BillingCycleName"), "BillingCycleName", required=True)
    assert cycle is not None
    return BillingLog(
        key=as_guid(get(data, "BillingLogKey"), "BillingLogKey") or "",
        cycle_name=cycle,
        status=as_enum(get(data, "Status"), "Status", STATUS_NAMES, default=0),
        seq=0,
        run_name=as_str(get(data, "BillingRunName"), "BillingRunName"),
        billing_type=as_str(get(data, "BillingType"), "BillingType"),
        billing_date=as_datetime(get(data, "BillingDate"), "BillingDate"),
        effective_date=as_datetime(get(data, "EffectiveDate"), "EffectiveDate"),
        accounting_method=as_enum(
            get(data, "AccountingMethod"), "AccountingMethod", ACCOUNTING_METHOD_NAMES, default=0
        ),
        party_id=as_str(get(data, "BillingPartyId"), "BillingPartyId"),
        auto_pay_option=as_enum(get(data, "AutoPayOption"), "AutoPayOption", AUTO_PAY_NAMES, default=0),
        original_key=as_guid(get(data, "OriginalBillingLogKey"), "OriginalBillingLogKey"),
        batch_id=as_str(get(data, "BatchId"), "BatchId"),
        information=as_str(get(data, "Information"), "Information"),
        do_not_apply_credits=as_bool(get(data, "DoNotApplyCredits"), "DoNotApplyCredits"),
        do_not_prorate=as_bool(get(data, "DoNotProrate"), "DoNotProrate"),
    )


# Invoice/_execute operations and what their single parameter is.
INVOICE_OPERATIONS: dict[str, str] = {
    "CanCashInvoiceBeReversed": "id",
    "GetTransactionsInvoiceReferenceNumber": "id",
    "CanInvoiceBeReversed": "number",
    "CanOrderInvoiceBeAdjusted": "number",
    "CanDuesInvoiceBeAdjusted": "number",
    "CanInvoiceBeRefunded": "number",
    "ProcessCashReversal": "action",
    "ProcessAccrualReversal": "action",
    "ProcessOrderReversal": "action",
    "ProcessFundraisingReversal": "action",
    "ProcessWriteOff": "action",
    "ProcessRecordRefund": "action",
    "ProcessCashAdjustment": "action",
    "ProcessAccrualAdjustment": "action",
    "ProcessOrderAdjustment": "action",
    "ProcessFundraisingAdjustment": "action",
    "UpdateEventInvoiceBillToId": "action",
}
_CANONICAL_OPERATIONS = {name.lower(): name for name in INVOICE_OPERATIONS}


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    """A GenericExecuteRequest, the operation name canonicalised when known."""

    operation: str
    known: bool
    entity: str | None
    parameters: tuple[Any, ...]


def parse_execute(body: bytes, operations: Mapping[str, str] | None = None) -> ExecuteRequest:
    data = obj(load_json(body), "GenericExecuteRequest")
    assert data is not None
    given = as_str(get(data, "OperationName"), "OperationName", required=True)
    assert given is not None
    canonical = (operations or {}).get(given.lower())
    params = tuple(unwrap(p) for p in values(get(data, "Parameters"), "Parameters"))
    return ExecuteRequest(
        operation=canonical or given,
        known=canonical is not None,
        entity=as_str(get(data, "EntityTypeName"), "EntityTypeName"),
        parameters=params,
    )


def operation_name(body: bytes, operations: Mapping[str, str]) -> str | None:
    """The OperationName (canonical when known), or None if the body cannot tell (for counting)."""
    try:
        return parse_execute(body, operations).operation
    except BadRequest:
        return None


@dataclass(frozen=True, slots=True)
class InvoiceCall:
    operation: str
    invoice_id: str | None = None
    number: int | None = None
    action: InvoiceAction | None = None

    @property
    def target(self) -> str | int | None:
        return self.invoice_id if self.invoice_id is not None else self.number


def parse_invoice_execute(body: bytes) -> InvoiceCall:
    request = parse_execute(body, _CANONICAL_OPERATIONS)
    if not request.known:
        raise BadRequest(f"'{request.operation}' is not an Invoice operation.", "OperationName")
    if request.entity is not None and request.entity.lower() != "invoice":
        raise BadRequest(f"EntityTypeName must be Invoice, not {request.entity}.", "EntityTypeName")
    if len(request.parameters) != 1:
        raise BadRequest(
            f"{request.operation} takes exactly one parameter, got {len(request.parameters)}.", "Parameters"
        )
    param = request.parameters[0]
    kind = INVOICE_OPERATIONS[request.operation]
    if kind == "id":
        invoice_id = as_str(param, "Parameters[0]", required=True)
        return InvoiceCall(request.operation, invoice_id=invoice_id)
    if kind == "number":
        if isinstance(param, Mapping):
            raise BadRequest(f"{request.operation} takes the invoice reference number (System.Int32).", "Parameters[0]")
        return InvoiceCall(request.operation, number=as_int(param, "Parameters[0]", required=True))
    data = obj(param, "Parameters[0]")
    assert data is not None
    action = _invoice_action(data)
    return InvoiceCall(request.operation, invoice_id=action.invoice_id, action=action)


def _line_adjustments(value: Any, field: str) -> tuple[LineAdjustment, ...]:
    result = []
    for i, item in enumerate(values(value, field)):
        where = f"{field}[{i}]"
        line = obj(item, where)
        assert line is not None
        code = as_str(get(line, "ProductCode"), f"{where}.ProductCode", required=True)
        assert code is not None
        result.append(
            LineAdjustment(
                product_code=code,
                is_removed=as_bool(get(line, "IsRemoved"), f"{where}.IsRemoved"),
                original_unit_price=as_decimal(get(line, "OriginalUnitPrice"), f"{where}.OriginalUnitPrice"),
                new_unit_price=as_decimal(get(line, "NewUnitPrice"), f"{where}.NewUnitPrice"),
                adjustment_price=as_decimal(get(line, "AdjustmentPrice"), f"{where}.AdjustmentPrice"),
                original_quantity=as_int(get(line, "OriginalQuantity"), f"{where}.OriginalQuantity"),
                new_quantity=as_int(get(line, "NewQuantity"), f"{where}.NewQuantity"),
                is_new_line=as_bool(get(line, "IsNewLine"), f"{where}.IsNewLine"),
                product_name=as_str(get(line, "ProductName"), f"{where}.ProductName"),
            )
        )
    return tuple(result)


def _invoice_action(data: Mapping[str, Any]) -> InvoiceAction:
    invoice_id = as_str(get(data, "InvoiceId"), "InvoiceId", required=True)
    adjustment_date = as_datetime(get(data, "AdjustmentDate"), "AdjustmentDate", required=True)
    assert invoice_id is not None
    assert adjustment_date is not None
    lines = _line_adjustments(get(data, "InvoiceLineAdjustments"), "InvoiceLineAdjustments")
    lines += _line_adjustments(get(data, "OrderLineAdjustments"), "OrderLineAdjustments")
    reverse_all = get(data, "ReverseAll")
    return InvoiceAction(
        invoice_id=invoice_id,
        adjustment_date=adjustment_date,
        reason=as_str(get(data, "AdjustmentReason"), "AdjustmentReason"),
        do_not_cancel_membership=as_bool(get(data, "DoNotCancelMembership"), "DoNotCancelMembership"),
        lines=lines,
        original_shipping=as_decimal(get(data, "OriginalShipping"), "OriginalShipping"),
        new_shipping=as_decimal(get(data, "NewShipping"), "NewShipping"),
        original_handling=as_decimal(get(data, "OriginalHandling"), "OriginalHandling"),
        new_handling=as_decimal(get(data, "NewHandling"), "NewHandling"),
        refund_amount=as_decimal(get(data, "RefundAmount"), "RefundAmount"),
        payment_method_id=as_str(get(data, "PaymentMethodId"), "PaymentMethodId"),
        scheduled_payment_id=as_str(get(data, "ScheduledPaymentId"), "ScheduledPaymentId"),
        reverse_all=None if unwrap(reverse_all) is None else as_bool(reverse_all, "ReverseAll"),
        new_bill_to_id=as_str(get(data, "NewBillToId"), "NewBillToId"),
    )


def parse_batch_execute(body: bytes) -> str:
    """BatchSummary/_execute "Post" with one System.String BatchId; returns the BatchId."""
    request = parse_execute(body, {"post": "Post"})
    if not request.known:
        raise BadRequest(f"'{request.operation}' is not a BatchSummary operation.", "OperationName")
    if request.entity is not None and request.entity.lower() != "batchsummary":
        raise BadRequest(f"EntityTypeName must be BatchSummary, not {request.entity}.", "EntityTypeName")
    if len(request.parameters) != 1:
        raise BadRequest("Post takes exactly one parameter, the BatchId.", "Parameters")
    batch_id = as_str(request.parameters[0], "Parameters[0]", required=True)
    assert batch_id is not None
    return batch_id


_GENERATION_ACTION_NAMES = {"generatemembershiprenewals", "generatebills", "billgeneration", "generaterenewals"}


def parse_task(body: bytes) -> TaskRequest:
    """A TaskAdhocRequest holding a reverse action and/or a bill-generation action."""
    data = obj(load_json(body), "TaskAdhocRequest")
    assert data is not None
    task = obj(get(data, "Task"), "Task")
    assert task is not None
    actions = values(get(task, "Actions"), "Actions")
    if not actions:
        raise BadRequest("The task has no actions.", "Actions")
    reverse: ReverseAction | None = None
    generate: BillGeneration | None = None
    for i, raw in enumerate(actions):
        action = obj(raw, f"Actions[{i}]")
        assert action is not None
        name = (as_str(get(action, "ActionTypeName"), "ActionTypeName") or "").lower()
        if name == "reverseinvoice" or type_has(action, "ReverseInvoice"):
            if reverse is not None:
                raise BadRequest("The task has more than one ReverseInvoice action.", "Actions")
            reverse = _reverse_action(action)
        elif name in _GENERATION_ACTION_NAMES or type_has(action, "BillGeneration"):
            if generate is not None:
                raise BadRequest("The task has more than one bill generation action.", "Actions")
            generate = _generation_action(action)
        else:
            label = get(action, "ActionTypeName") or action.get("$type") or "?"
            raise BadRequest(f"Unsupported task action '{label}'.", "ActionTypeName")
    return TaskRequest(reverse=reverse, generate=generate)


def _reverse_action(action: Mapping[str, Any]) -> ReverseAction:
    original = as_guid(get(action, "OriginalBillingLogKey"), "OriginalBillingLogKey")
    invoice_ids: list[str] = []
    field = "ListOfInvoiceActionDuesReversalData"
    for i, item in enumerate(values(get(action, field), field)):
        item = unwrap(item)
        if isinstance(item, Mapping):
            invoice_id = as_str(get(item, "InvoiceId"), f"{field}[{i}].InvoiceId", required=True)
        else:
            invoice_id = as_str(item, f"{field}[{i}]", required=True)
        assert invoice_id is not None
        invoice_ids.append(invoice_id)
    fundraising = "ListOfInvoiceActionFundraisingAdjustmentData"
    if values(get(action, fundraising), fundraising):
        raise BadRequest(f"{fundraising} is not supported by this simulator.", fundraising)
    return ReverseAction(original_key=original, invoice_ids=tuple(invoice_ids))


def _generation_action(action: Mapping[str, Any]) -> BillGeneration:
    data = obj(get(action, "BillGenerationData"), "BillGenerationData")
    assert data is not None
    additional = obj(get(data, "AdditionalOption"), "AdditionalOption", required=False) or {}
    cycle = as_str(get(data, "BillingCycleId"), "BillingCycleId", required=True)
    assert cycle is not None
    auto_post = get(action, "AutomaticallyPostBatch")
    if unwrap(auto_post) is None:
        auto_post = get(data, "AutomaticallyPostBatch")
    return BillGeneration(
        cycle_name=cycle,
        effective_date=as_datetime(get(data, "EffectiveDate"), "EffectiveDate"),
        run_name=as_str(get(data, "BillingRunName"), "BillingRunName"),
        billing_log_key=as_guid(get(data, "BillingLogKey"), "BillingLogKey"),
        auto_pay_option=as_enum(get(data, "AutoPayOption"), "AutoPayOption", AUTO_PAY_NAMES, default=0),
        party_id=as_str(get(data, "IndividualBillingPartyId"), "IndividualBillingPartyId"),
        original_key=as_guid(get(additional, "OriginalBillingLogKey"), "AdditionalOption.OriginalBillingLogKey"),
        is_renewal=as_bool(get(data, "IsRenewal"), "IsRenewal", default=True),
        auto_post=as_bool(auto_post, "AutomaticallyPostBatch"),
    )


# ------------------------------------------------------------------------------------------------
# Query strings and forms
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery:
    offset: int
    limit: int
    requested_limit: int | None
    filters: tuple[Filter, ...]


DEFAULT_PAGE_SIZE = 100


def parse_list_query(query_string: str, page_size_cap: int) -> ListQuery:
    offset = 0
    requested: int | None = None
    filters: list[Filter] = []
    for name, raw in parse_qsl(query_string, keep_blank_values=True):
        lowered = name.lower()
        if lowered in ("limit", "offset"):
            try:
                number = int(raw)
            except ValueError:
                raise BadRequest(f"{name} must be an integer, not {raw!r}.", name) from None
            if number < 0:
                raise BadRequest(f"{name} must not be negative.", name)
            if lowered == "offset":
                offset = number
            else:
                requested = number
        else:
            filters.append(Filter.parse(name, raw))
    limit = requested or DEFAULT_PAGE_SIZE
    return ListQuery(offset, min(limit, page_size_cap), requested, tuple(filters))


def parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("The form body is not UTF-8.") from None
    return {k.lower(): v for k, v in parse_qsl(text, keep_blank_values=True)}
