"""Request bodies, credentials and seed-page examples for the iMIS simulator's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from simulators.imis.faults import Faults

USERNAME = "admin"
PASSWORD = "secret"
FAST = Faults(task_step_seconds=0.01)
EXAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "seed_examples"
# Bodies we built per the contract (not copied from the seed pages) live apart from the verbatim ones.
CONTRACT_EXAMPLES = Path(__file__).resolve().parent / "fixtures"


def example(name: str) -> bytes:
    """A verbatim seed-page body, or (when not there) one of our contract-built bodies."""
    path = EXAMPLES / name
    return (path if path.exists() else CONTRACT_EXAMPLES / name).read_bytes()


def get_token(base_url: str, username: str = USERNAME, password: str = PASSWORD) -> str:
    response = httpx.post(
        f"{base_url}/token",
        data={"grant_type": "password", "username": username, "password": password},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def execute(operation: str, parameter: Any, *, entity: str = "Invoice", wrap: str | None = None) -> dict[str, Any]:
    """A GenericExecuteRequest; `wrap` puts a primitive in `{"$type": wrap, "$value": ...}`."""
    value = {"$type": wrap, "$value": parameter} if wrap else parameter
    return {
        "$type": "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts",
        "OperationName": operation,
        "EntityTypeName": entity,
        "Parameters": {
            "$type": "System.Collections.ObjectModel.Collection`1[[System.Object, mscorlib]], mscorlib",
            "$values": [value],
        },
        "ParameterTypeName": {
            "$type": "System.Collections.ObjectModel.Collection`1[[System.String, mscorlib]], mscorlib",
            "$values": [wrap or "System.Object"],
        },
        "UseJson": False,
    }


def reversal(invoice_id: str, operation: str = "ProcessCashReversal") -> dict[str, Any]:
    data_type = (
        "InvoiceActionCashReversalData" if operation == "ProcessCashReversal" else "InvoiceActionDuesReversalData"
    )
    return execute(
        operation,
        {
            "$type": f"Asi.Soa.Commerce.DataContracts.{data_type}, Asi.Contracts",
            "InvoiceId": invoice_id,
            "AdjustmentDate": "2026-04-23T00:00:00",
            "AdjustmentReason": "test",
            "DoNotCancelMembership": True,
        },
    )


def task(
    *,
    reverse_key: str | None = None,
    reverse_ids: list[str] | None = None,
    cycle: str | None = "Regular Membership Fees",
    original_key: str | None = None,
    log_key: str | None = None,
    party_id: str | None = None,
    auto_post: bool = True,
) -> dict[str, Any]:
    """A TaskAdhocRequest shaped like the seed page's; either action is left out when not asked for."""
    actions: list[dict[str, Any]] = []
    if reverse_key is not None or reverse_ids is not None:
        actions.append(
            {
                "$type": "Asi.Soa.Communications.DataContracts.TaskDefinitionActionAdhocReverseInvoiceData, "
                "Asi.Contracts",
                "ActionTypeName": "ReverseInvoice",
                "ListOfInvoiceActionFundraisingAdjustmentData": None,
                "ListOfInvoiceActionDuesReversalData": None
                if reverse_ids is None
                else [
                    {"InvoiceId": i, "AdjustmentDate": "2025-09-09T00:00:00", "DoNotCancelMembership": True}
                    for i in reverse_ids
                ],
                "OriginalBillingLogKey": reverse_key,
            }
        )
    if cycle is not None:
        data: dict[str, Any] = {
            "$type": "Asi.Soa.Commerce.DataContracts.LegacyBillingData, Asi.Contracts",
            "IsRenewal": True,
            "EffectiveDate": "2025-09-01T00:00:00Z",
            "BillingCycleId": cycle,
            "BillingRunName": "Rebill",
            "BillingLogKey": log_key,
            "AutoPayOption": 0,
        }
        if original_key is not None:
            data["AdditionalOption"] = {"OriginalBillingLogKey": original_key}
        if party_id is not None:
            data["IndividualBillingPartyId"] = party_id
        actions.append(
            {
                "$type": "Asi.Soa.Communications.DataContracts.TaskDefinitionActionAdHocBillGenerationData, "
                "Asi.Contracts",
                "ActionTypeName": "GenerateMembershipRenewals",
                "BillGenerationData": data,
                "AutomaticallyPostBatch": auto_post,
            }
        )
    return {
        "$type": "Asi.Soa.Communications.DataContracts.TaskAdhocRequest, Asi.Contracts",
        "Task": {"Actions": {"$values": actions}},
        "EntityTypeName": "TaskDefinition",
        "OperationName": "TaskAdhocRequest",
    }
