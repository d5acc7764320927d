"""Every request body is byte-compatible with ASI's own examples (tests/fixtures/seed_examples)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator.adapters.providers.imis import envelopes

ROOT = Path(__file__).resolve().parents[4]
SEED_EXAMPLES = ROOT / "tests" / "fixtures" / "seed_examples"
SEED_PAGES = ROOT.parent / "shared" / "seeds"

ORIGINAL_KEY = "a9f0db70-d684-481a-84cd-d8fa1cd8f404"
TRACKING_KEY = "be2506c1-2324-4157-a1ae-bdba7a0dcbea"
EFFECTIVE = datetime(2025, 9, 1, tzinfo=UTC)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def seed(name: str) -> str:
    return compact(json.loads((SEED_EXAMPLES / name).read_text()))


class TestInvoiceExecute:
    def test_can_cash_invoice_be_reversed(self) -> None:
        body = envelopes.can_cash_invoice_be_reversed("8158")
        assert compact(body) == seed("invoice_CanCashInvoiceBeReversed.json")

    def test_can_invoice_be_reversed(self) -> None:
        body = envelopes.can_invoice_be_reversed(2317)
        assert compact(body) == seed("invoice_CanInvoiceBeReversed.json")

    def test_process_cash_reversal(self) -> None:
        data = envelopes.cash_reversal_data(
            invoice_id="8158",
            adjustment_date=date(2026, 4, 23),
            reason="Billing error - reversing invoice",
            do_not_cancel_membership=True,
        )
        assert compact(envelopes.process_cash_reversal(data)) == seed("invoice_ProcessCashReversal.json")

    def test_process_accrual_reversal(self) -> None:
        data = envelopes.dues_reversal_data(
            invoice_id="8158",
            adjustment_date=date(2026, 4, 23),
            reason="Reversing incorrect billing",
            do_not_cancel_membership=True,
        )
        assert compact(envelopes.process_accrual_reversal(data)) == seed("invoice_ProcessAccrualReversal.json")

    def test_adjustment_date_of_a_datetime_is_its_day(self) -> None:
        data = envelopes.cash_reversal_data(invoice_id="8158", adjustment_date=datetime(2026, 4, 23, 17, 5, tzinfo=UTC))
        assert data["AdjustmentDate"] == "2026-04-23T00:00:00"

    def test_optional_cash_reversal_properties_take_the_documented_order(self) -> None:
        data = envelopes.cash_reversal_data(
            invoice_id="8158",
            adjustment_date=date(2026, 4, 23),
            reason="r",
            ship_to_party_id="101",
            bill_date=datetime(2025, 9, 1),
        )
        assert list(data) == [
            "$type",
            "InvoiceId",
            "ShipToPartyId",
            "BillDate",
            "AdjustmentDate",
            "AdjustmentReason",
            "DoNotCancelMembership",
        ]
        assert data["BillDate"] == "2025-09-01T00:00:00"

    def test_primitives_can_be_sent_wrapped(self) -> None:
        cash = envelopes.can_cash_invoice_be_reversed("CASH:1:k", wrap_primitives=True)
        accrual = envelopes.can_invoice_be_reversed(2317, wrap_primitives=True)
        assert cash["Parameters"]["$values"] == [{"$type": "System.String", "$value": "CASH:1:k"}]
        assert accrual["Parameters"]["$values"] == [{"$type": "System.Int32", "$value": 2317}]
        assert accrual["ParameterTypeName"]["$values"] == ["System.Int32"]

    def test_batch_post_is_a_generic_execute_on_batch_summary(self) -> None:
        body = envelopes.batch_post("BATCH-7")
        template = json.loads(seed("invoice_CanCashInvoiceBeReversed.json"))
        assert list(body) == list(template)
        assert body["$type"] == template["$type"]
        assert body["OperationName"] == "Post"
        assert body["EntityTypeName"] == "BatchSummary"
        assert body["Parameters"] == {**template["Parameters"], "$values": ["BATCH-7"]}
        assert body["ParameterTypeName"] == template["ParameterTypeName"]
        assert body["UseJson"] is False


class TestBillingLog:
    def test_matches_step_2(self) -> None:
        body = envelopes.billing_log_body(
            key=TRACKING_KEY,
            run_name="Rebill: Regular Membership Fees for 101",
            cycle_name="Regular Membership Fees",
            billing_type="I",
            billing_date="2025-09-09T15:32:43.8397624Z",  # as read from iMIS: 100 ns precision kept
            effective_date=EFFECTIVE,
            status=5,
            accounting_method=0,
            party_id="101",
            auto_pay_option=0,
            original_key=ORIGINAL_KEY,
        )
        assert compact(body) == seed("billinglog_post.json")

    def test_datetime_billing_date_renders_like_json_net(self) -> None:
        body = envelopes.billing_log_body(
            key=TRACKING_KEY,
            cycle_name="c",
            status=5,
            billing_date=datetime(2025, 9, 9, 15, 32, 43, 839762, tzinfo=UTC),
        )
        assert body["BillingDate"] == "2025-09-09T15:32:43.839762Z"

    def test_absent_properties_are_left_out_in_order(self) -> None:
        body = envelopes.billing_log_body(key=TRACKING_KEY, cycle_name="c", status=5, original_key="o")
        assert list(body) == ["$type", "BillingLogKey", "BillingCycleName", "Status", "OriginalBillingLogKey"]


class TestTask:
    def test_bulk_reverse_and_rebill(self) -> None:
        body = envelopes.task_adhoc_request(
            reverse=envelopes.reverse_invoice_action(original_billing_log_key=ORIGINAL_KEY),
            bill=envelopes.bill_generation_action(
                cycle_name="Regular Membership Fees",
                effective_date=EFFECTIVE,
                run_name="Rebill: Regular Membership Fees",
                billing_log_key=TRACKING_KEY,
                auto_pay_option=0,
                original_billing_log_key=ORIGINAL_KEY,
                automatically_post_batch=True,
            ),
        )
        assert compact(body) == seed("task_bulk_reverse_and_rebill.json")

    def test_single_contact(self) -> None:
        body = envelopes.task_adhoc_request(
            reverse=envelopes.reverse_invoice_action(
                invoices=[
                    envelopes.dues_reversal_data(
                        invoice_id="8158", adjustment_date=date(2025, 9, 9), do_not_cancel_membership=True
                    )
                ]
            ),
            bill=envelopes.bill_generation_action(
                cycle_name="Regular Membership Fees",
                effective_date=EFFECTIVE,
                run_name="Rebill: Regular Membership Fees for 101",
                billing_log_key=None,
                auto_pay_option=0,
                individual_party_id="101",
                automatically_post_batch=True,
            ),
        )
        assert compact(body) == seed("task_single_contact.json")

    def test_single_contact_may_keep_the_original_reference(self) -> None:
        action = envelopes.bill_generation_action(
            cycle_name="Regular Membership Fees",
            effective_date=EFFECTIVE,
            run_name="r",
            billing_log_key=None,
            auto_pay_option=0,
            individual_party_id="101",
            original_billing_log_key=ORIGINAL_KEY,
        )
        assert list(action["BillGenerationData"]) == [
            "$type",
            "IsRenewal",
            "AdditionalOption",
            "EffectiveDate",
            "BillingCycleId",
            "IndividualBillingPartyId",
            "BillingRunName",
            "BillingLogKey",
            "AutoPayOption",
        ]

    def test_rebill_alone(self) -> None:
        bulk = json.loads(seed("task_bulk_reverse_and_rebill.json"))
        bill = envelopes.bill_generation_action(
            cycle_name="Regular Membership Fees",
            effective_date=EFFECTIVE,
            run_name="Rebill: Regular Membership Fees",
            billing_log_key=TRACKING_KEY,
            auto_pay_option=0,
            original_billing_log_key=ORIGINAL_KEY,
        )
        body = envelopes.task_adhoc_request(bill=bill)
        bulk["Task"]["Actions"]["$values"] = bulk["Task"]["Actions"]["$values"][1:]
        assert compact(body) == compact(bulk)

    def test_reverse_alone(self) -> None:
        bulk = json.loads(seed("task_bulk_reverse_and_rebill.json"))
        body = envelopes.task_adhoc_request(
            reverse=envelopes.reverse_invoice_action(original_billing_log_key=ORIGINAL_KEY)
        )
        bulk["Task"]["Actions"]["$values"] = bulk["Task"]["Actions"]["$values"][:1]
        assert compact(body) == compact(bulk)

    def test_an_empty_task_is_refused(self) -> None:
        with pytest.raises(ValueError, match="reverse action"):
            envelopes.task_adhoc_request()

    @pytest.mark.parametrize(
        ("key", "invoices"),
        [(None, None), (None, []), (ORIGINAL_KEY, [{"InvoiceId": "1"}])],
        ids=["neither", "empty-list", "both"],
    )
    def test_reverse_action_names_a_billing_or_invoices(
        self, key: str | None, invoices: list[dict[str, Any]] | None
    ) -> None:
        with pytest.raises(ValueError, match="not both"):
            envelopes.reverse_invoice_action(original_billing_log_key=key, invoices=invoices)


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (datetime(2025, 9, 1, tzinfo=UTC), "2025-09-01T00:00:00Z"),
        (datetime(2025, 9, 1), "2025-09-01T00:00:00"),
        (datetime(2025, 9, 1, 8, 30, tzinfo=timezone(timedelta(hours=-5))), "2025-09-01T08:30:00-05:00"),
        (datetime(2025, 9, 1, 8, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2025-09-01T08:30:00+05:30"),
        (datetime(2025, 9, 9, 15, 32, 43, 839760, tzinfo=UTC), "2025-09-09T15:32:43.83976Z"),
        (date(2025, 9, 9), "2025-09-09T00:00:00"),
        ("2025-09-09T15:32:43.8397624Z", "2025-09-09T15:32:43.8397624Z"),
    ],
)
def test_render_datetime(value: datetime | date | str, rendered: str) -> None:
    assert envelopes.render_datetime(value) == rendered


def _seed_page_bodies() -> list[str]:
    """Every JSON body that follows a `POST https://...` line on the seed pages, compacted."""
    bodies = []
    for page in ("imis-reverse-and-rebill.txt", "imis-adjusting-invoices.txt"):
        lines = (SEED_PAGES / page).read_text().splitlines()
        for index, line in enumerate(lines):
            if not re.match(r"\s*POST https://", line):
                continue
            start = next(i for i in range(index + 1, len(lines)) if lines[i].strip())
            if lines[start].strip() != "{":
                continue
            depth, end = 0, start
            for end in range(start, len(lines)):
                depth += lines[end].count("{") - lines[end].count("}")
                if depth == 0:
                    break
            bodies.append(compact(json.loads("\n".join(lines[start : end + 1]))))
    return bodies


@pytest.mark.skipif(not SEED_PAGES.is_dir(), reason="../shared/seeds is not available here")
def test_fixtures_are_verbatim_copies_of_the_seed_pages() -> None:
    bodies = _seed_page_bodies()
    fixtures = sorted(SEED_EXAMPLES.glob("*.json"))
    assert len(fixtures) >= 7
    for fixture in fixtures:
        assert seed(fixture.name) in bodies, fixture.name
