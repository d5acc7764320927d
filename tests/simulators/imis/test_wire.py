"""Tolerant parsing and exact rendering of the iMIS wire format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from simulators.imis import wire
from simulators.imis.errors import BadRequest
from tests.simulators.imis.helpers import example, execute, reversal, task


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


class TestPrimitives:
    @pytest.mark.parametrize(
        "parameter",
        [
            "8158",
            {"$type": "System.String", "$value": "8158"},
            {"$type": "System.String, mscorlib", "$value": {"$value": "8158"}},
        ],
    )
    def test_string_parameter_wrapped_or_bare(self, parameter: Any) -> None:
        call = wire.parse_invoice_execute(body(execute("CanCashInvoiceBeReversed", parameter)))
        assert (call.operation, call.invoice_id) == ("CanCashInvoiceBeReversed", "8158")

    @pytest.mark.parametrize("parameter", [2317, {"$type": "System.Int32", "$value": 2317}, "2317"])
    def test_int_parameter_wrapped_or_bare(self, parameter: Any) -> None:
        call = wire.parse_invoice_execute(body(execute("CanInvoiceBeReversed", parameter)))
        assert call.number == 2317

    def test_an_object_where_a_reference_number_is_due_is_refused(self) -> None:
        with pytest.raises(BadRequest, match="reference number"):
            wire.parse_invoice_execute(body(execute("CanInvoiceBeReversed", {"InvoiceId": "2317"})))

    def test_parameters_as_a_bare_array(self) -> None:
        data = execute("CanCashInvoiceBeReversed", "8158")
        data["Parameters"] = ["8158"]
        assert wire.parse_invoice_execute(body(data)).invoice_id == "8158"

    def test_operation_name_case_and_unknown_operation(self) -> None:
        assert wire.parse_invoice_execute(body(reversal("8158", "processcashreversal"))).operation == (
            "ProcessCashReversal"
        )
        with pytest.raises(BadRequest) as caught:
            wire.parse_invoice_execute(body(execute("ReverseEverything", "8158")))
        assert caught.value.field == "OperationName"

    def test_extra_fields_and_other_assembly_names_are_fine(self) -> None:
        data = reversal("8158")
        data["$type"] = "Asi.Soa.Core.DataContracts.GenericExecuteRequest, Asi.Contracts.V2"
        data["Parameters"]["$values"][0]["$type"] = "Something.Else.InvoiceActionCashReversalData, Other"
        data["Parameters"]["$values"][0]["NewFieldFromAFutureVersion"] = {"x": 1}
        data["SomethingExtra"] = True
        call = wire.parse_invoice_execute(body(data))
        assert call.action is not None
        assert (call.invoice_id, call.action.do_not_cancel_membership) == ("8158", True)

    def test_malformed_action_names_the_field(self) -> None:
        data = reversal("8158")
        del data["Parameters"]["$values"][0]["AdjustmentDate"]
        with pytest.raises(BadRequest) as caught:
            wire.parse_invoice_execute(body(data))
        assert caught.value.field == "AdjustmentDate"
        data = reversal("8158")
        data["Parameters"]["$values"][0]["AdjustmentDate"] = "last tuesday"
        with pytest.raises(BadRequest, match="ISO 8601"):
            wire.parse_invoice_execute(body(data))

    def test_not_json(self) -> None:
        with pytest.raises(BadRequest, match="not valid JSON"):
            wire.parse_invoice_execute(b"{nope")
        with pytest.raises(BadRequest, match="empty"):
            wire.parse_invoice_execute(b"")

    def test_amounts_parse_exactly(self) -> None:
        call = wire.parse_invoice_execute(example("invoice_ProcessRecordRefund.json"))
        assert call.action is not None
        assert call.action.refund_amount == Decimal("95.00")
        assert str(call.action.refund_amount) == "95.00"


class TestBillingLog:
    def test_seed_page_body(self) -> None:
        log = wire.parse_billing_log(example("billinglog_post.json"))
        assert log.key == "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
        assert (log.status, log.accounting_method, log.auto_pay_option) == (5, 0, 0)
        assert log.billing_date == datetime(2025, 9, 9, 15, 32, 43, 839762, tzinfo=UTC)

    def test_enum_names(self) -> None:
        log = wire.parse_billing_log(
            body(
                {
                    "BillingCycleName": "X",
                    "Status": "Reversing invoices",
                    "AccountingMethod": "Accrual",
                    "AutoPayOption": "BillAllContacts",
                }
            )
        )
        assert (log.status, log.accounting_method, log.auto_pay_option) == (5, 1, 1)

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            ({}, "BillingCycleName"),
            ({"BillingCycleName": "X", "Status": 9}, "Status"),
            ({"BillingCycleName": "X", "Status": "Sleeping"}, "Status"),
            ({"BillingCycleName": "X", "BillingLogKey": "not-a-guid"}, "BillingLogKey"),
            ({"BillingCycleName": "X", "EffectiveDate": 20250901}, "EffectiveDate"),
            ({"BillingCycleName": ["X"]}, "BillingCycleName"),
        ],
    )
    def test_malformed_names_the_field(self, data: dict[str, Any], field: str) -> None:
        with pytest.raises(BadRequest) as caught:
            wire.parse_billing_log(body(data))
        assert caught.value.field == field


class TestTask:
    def test_seed_page_bodies(self) -> None:
        bulk = wire.parse_task(example("task_bulk_reverse_and_rebill.json"))
        assert bulk.reverse is not None
        assert bulk.generate is not None
        assert bulk.reverse.original_key == "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        assert bulk.generate.original_key == "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        assert bulk.generate.billing_log_key == "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
        assert bulk.generate.auto_post
        single = wire.parse_task(example("task_single_contact.json"))
        assert single.reverse is not None
        assert single.generate is not None
        assert single.reverse.invoice_ids == ("8158",)
        assert single.reverse.original_key is None
        assert (single.generate.party_id, single.generate.billing_log_key) == ("101", None)

    def test_actions_identified_by_name_or_by_type(self) -> None:
        data = task(reverse_key="a9f0db70-d684-481a-84cd-d8fa1cd8f404", original_key=None)
        by_name = json.loads(json.dumps(data))
        for action in by_name["Task"]["Actions"]["$values"]:
            del action["$type"]
        by_type = json.loads(json.dumps(data))
        for action in by_type["Task"]["Actions"]["$values"]:
            del action["ActionTypeName"]
            action["$type"] = action["$type"].replace("Asi.Contracts", "Asi.Contracts.Other")
        for variant in (by_name, by_type):
            parsed = wire.parse_task(body(variant))
            assert parsed.reverse is not None
            assert parsed.generate is not None

    def test_either_action_alone(self) -> None:
        assert (
            wire.parse_task(body(task(reverse_key="a9f0db70-d684-481a-84cd-d8fa1cd8f404", cycle=None))).generate is None
        )
        assert wire.parse_task(body(task())).reverse is None

    def test_wrapped_invoice_list(self) -> None:
        data = task(reverse_ids=["1", "2"], cycle=None)
        action = data["Task"]["Actions"]["$values"][0]
        action["ListOfInvoiceActionDuesReversalData"] = {"$values": action["ListOfInvoiceActionDuesReversalData"]}
        reverse = wire.parse_task(body(data)).reverse
        assert reverse is not None
        assert reverse.invoice_ids == ("1", "2")

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda d: d["Task"]["Actions"].update({"$values": []}), "no actions"),
            (lambda d: d.pop("Task"), "Task is required"),
            (lambda d: d["Task"]["Actions"]["$values"].append({"ActionTypeName": "SendEmail"}), "Unsupported"),
            (lambda d: d["Task"]["Actions"]["$values"][0].pop("BillGenerationData"), "BillGenerationData"),
            (
                lambda d: d["Task"]["Actions"]["$values"][0]["BillGenerationData"].pop("BillingCycleId"),
                "BillingCycleId",
            ),
        ],
    )
    def test_malformed(self, mutate: Any, message: str) -> None:
        data = task()
        mutate(data)
        with pytest.raises(BadRequest, match=message):
            wire.parse_task(body(data))


class TestRendering:
    def test_money_keeps_its_digits(self) -> None:
        rendered = wire.dumps({"m": wire.money(Decimal("95.00")), "n": wire.money(Decimal("-0.50"))})
        assert b'"Amount":95.00' in rendered
        assert b'"Amount":-0.50' in rendered
        assert json.loads(rendered, parse_float=Decimal)["m"]["Amount"] == Decimal("95.00")

    def test_a_string_that_looks_like_a_marker_is_left_alone(self) -> None:
        assert json.loads(wire.dumps({"s": "\x0095.00\x00"})) == {"s": "\x0095.00\x00"}

    def test_paged_json_matches_paged(self) -> None:
        items: list[dict[str, object]] = [{"a": 1}, {"b": Decimal("2.50")}]
        as_dicts = json.loads(wire.dumps(wire.paged(items, "T", 10, 2, 30)))
        as_bytes = json.loads(wire.paged_json([wire.dumps(i) for i in items], "T", 10, 2, 30))
        assert as_dicts == as_bytes
        assert (as_bytes["Count"], as_bytes["HasNext"], as_bytes["NextOffset"]) == (2, True, 12)
        last = json.loads(wire.paged_json([b"{}"], "T", 29, 2, 30))
        assert (last["HasNext"], last["NextOffset"]) == (False, 0)

    def test_list_query(self) -> None:
        query = wire.parse_list_query("LIMIT=50&Offset=10&BillToPartyId=101&Balance=gt:0", 500)
        assert (query.limit, query.offset) == (50, 10)
        assert [(f.field, f.operation, f.values) for f in query.filters] == [
            ("BillToPartyId", "eq", ("101",)),
            ("Balance", "gt", ("0",)),
        ]
        assert wire.parse_list_query("", 500).limit == 100
        assert wire.parse_list_query("limit=1000", 500).limit == 500
        assert wire.parse_list_query("InvoiceId=CASH:1:abc", 500).filters[0].values == ("CASH:1:abc",)
        with pytest.raises(BadRequest):
            wire.parse_list_query("offset=-1", 500)
