"""SalesforceClient against the Salesforce simulator over real loopback HTTP: the contract's calls and faults.

Given the org seeded with one invoice batch run, the client's typed calls are checked against what the
org then holds (read back through the client's own queries, or from the simulator's counters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.salesforce import (
    AllocationExhausted,
    CredentialsRejected,
    QueryLocatorExpired,
    SalesforceClient,
)
from orchestrator.adapters.providers.salesforce.soql import (
    BILLING_SCHEDULE,
    INVOICE,
    INVOICE_LINE,
    SObject,
    count,
    eq,
    is_in,
    select,
)
from orchestrator.adapters.providers.salesforce.wire import ApiUsage, InvoiceRecord
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderNotFound,
    ProviderRefused,
    ProviderThrottled,
    ProviderUnavailable,
)
from simulators.salesforce.state import SalesforceState, SeededRun
from tests.contract.salesforce.conftest import CLIENT_SECRET
from tests.simulators.salesforce.helpers import FakeClock

DAY = date(2025, 12, 1)


def status(client: SalesforceClient, invoice_id: str) -> InvoiceRecord:
    [record] = client.records(
        select(INVOICE, "Id", "Status", "Balance", "NetCreditsApplied", "TotalAmountWithTax").where(
            eq("Id", invoice_id)
        )
    )
    return record


def schedule_ids(client: SalesforceClient, invoice_id: str) -> list[str]:
    lines = client.records(select(INVOICE_LINE, "BillingScheduleId").where(eq("InvoiceId", invoice_id)))
    return [line.BillingScheduleId for line in lines if line.BillingScheduleId]


def voided(client: SalesforceClient, clock: FakeClock, invoice_id: str) -> list[str]:
    client.void(invoice_id)
    clock.advance(2)
    assert status(client, invoice_id).Status == "Voided"
    return schedule_ids(client, invoice_id)


class TestQuery:
    def test_pages_follow_next_records_url_whatever_their_size(
        self, client: SalesforceClient, state: SalesforceState
    ) -> None:
        seeded = state.seed_run(invoices=450, seed=3)
        query = select(INVOICE, "Id", "Status", "Balance", "PostedDate").where(
            eq("InvoiceBatchRunId", seeded.invoice_batch_run_id)
        )
        pages = list(client.query(query.order_by_id()))
        assert [len(p.records) for p in pages] == [200, 200, 50]
        assert [r.Id for p in pages for r in p.records] == sorted(seeded.invoice_ids)
        state.faults.update(page_size=37)
        assert len(list(client.query(query))) == 13  # 450 / 37, rounded up
        assert all(isinstance(r.Balance, Decimal) for r in pages[0].records)

    def test_count(self, client: SalesforceClient, run: SeededRun) -> None:
        selected = count(INVOICE).where(eq("InvoiceBatchRunId", run.invoice_batch_run_id), eq("Status", "Posted"))
        posted = sum(1 for reason in run.expected.values() if reason != "not_posted")
        assert client.count(selected) == posted

    def test_an_expired_locator_is_told_apart_and_the_query_runs_again(
        self, client: SalesforceClient, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        state.faults.update(page_size=15)
        query = select(INVOICE, "Id").where(eq("InvoiceBatchRunId", run.invoice_batch_run_id)).order_by_id()
        pages = client.query(query)
        first = next(pages)
        clock.advance(901)  # 15 idle minutes
        with pytest.raises(QueryLocatorExpired) as expired:
            next(pages)
        assert isinstance(expired.value, ProviderRefused)
        again = [r.Id for p in client.query(query) for r in p.records]
        assert again[:15] == [r.Id for r in first.records]
        assert len(again) == 40

    def test_resume_from_a_kept_next_records_url(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun
    ) -> None:
        state.faults.update(page_size=15)
        query = select(INVOICE, "Id").where(eq("InvoiceBatchRunId", run.invoice_batch_run_id)).order_by_id()
        first = next(client.query(query))
        assert first.nextRecordsUrl is not None
        rest = [r.Id for p in client.query(query, resume_from=first.nextRecordsUrl) for r in p.records]
        assert [r.Id for r in first.records] + rest == sorted(run.invoice_ids)

    def test_a_quoted_value_cannot_leave_its_literal(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun
    ) -> None:
        hostile = "x\\' OR Status != 'y"
        target = run.invoice_ids[0]
        state.invoice(target).description = hostile
        found = list(client.records(select(INVOICE, "Id", "Description").where(eq("Description", hostile))))
        assert [(r.Id, r.Description) for r in found] == [(target, hostile)]

    @pytest.mark.parametrize(
        ("soql", "code"),
        [
            ("SELECT Id FROM Invoice WHERE Status = 'Posted' OR Status = 'Voided'", "MALFORMED_QUERY"),
            ("SELECT Id FROM Invoice WHERE Balance >= 5", "MALFORMED_QUERY"),
            ("SELECT Invoice.Status FROM InvoiceLine", "MALFORMED_QUERY"),
            ("SELECT Id FROM Invoice WHERE Balance > '5'", "INVALID_FIELD"),
            ("SELECT Id FROM Invoice WHERE Status = Posted", "INVALID_FIELD"),
            ("SELECT Id FROM Account", "INVALID_TYPE"),
        ],
    )
    def test_what_is_outside_the_subset_is_refused(self, client: SalesforceClient, soql: str, code: str) -> None:
        # Text the builder cannot write, sent through the client as if it had been.
        @dataclass(frozen=True)
        class Written:
            soql: str
            sobject: SObject[InvoiceRecord] = INVOICE

        with pytest.raises(ProviderRefused) as refused:
            list(client.query(Written(soql)))  # type: ignore[arg-type]  # a stand-in for a Query, on purpose
        assert code in str(refused.value)


class TestVoid:
    def test_posted_void_in_progress_voided(self, client: SalesforceClient, clock: FakeClock, run: SeededRun) -> None:
        invoice_id = run.eligible_ids[0]
        total = status(client, invoice_id).TotalAmountWithTax
        reply = client.void(invoice_id)
        assert reply.success is True
        assert reply.requestIdentifier
        assert status(client, invoice_id).Status == "Void In Progress"
        clock.advance(2)
        after = status(client, invoice_id)
        assert (after.Status, after.Balance, after.NetCreditsApplied) == ("Voided", Decimal("0"), total)

    @pytest.mark.parametrize("reason", ["paid", "credited", "balance_mismatch", "not_latest_on_schedule", "not_posted"])
    def test_ineligible_invoices_are_refused(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun, reason: str
    ) -> None:
        invoice_id = next(i for i, r in run.expected.items() if r == reason)
        with pytest.raises(ProviderRefused) as refused:
            client.void(invoice_id)
        assert "INVALID_INPUT" in str(refused.value)
        assert not refused.value.may_have_applied
        assert state.counters()["voids"] == {}

    def test_a_second_void_is_refused_and_an_unknown_id_not_found(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun
    ) -> None:
        client.void(run.eligible_ids[0])
        with pytest.raises(ProviderRefused):
            client.void(run.eligible_ids[0])
        with pytest.raises(ProviderNotFound):
            client.void("3tt5g0000000000AAA")
        assert state.counters()["duplicate_void_attempts"] == 1


class TestGenerateAndRecover:
    def test_voided_schedules_are_billed_again_once(
        self, client: SalesforceClient, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        invoice_id = run.eligible_ids[0]
        schedules = voided(client, clock, invoice_id)
        reply = client.generate(schedules, correlation_id="run-1/generate/0001", invoice_date=DAY, target_date=DAY)
        assert reply.success is True
        processing = client.records(select(BILLING_SCHEDULE, "Id", "Status").where(is_in("Id", schedules)))
        assert {s.Status for s in processing} == {"Processing"}
        clock.advance(3)
        lines = list(client.records(select(INVOICE_LINE, "InvoiceId").where(is_in("BillingScheduleId", schedules))))
        new = list(
            client.records(
                select(INVOICE, "Id", "Status", "InvoiceBatchRunId").where(
                    is_in("Id", sorted({line.InvoiceId for line in lines if line.InvoiceId})),
                    eq("InvoiceBatchRunId", None),
                )
            )
        )
        assert [r.Status for r in new] == ["Posted"]
        client.generate(schedules, correlation_id="run-1/generate/0002", invoice_date=DAY, target_date=DAY)
        clock.advance(3)
        counters = state.counters()
        assert counters["invoices_per_regenerated_schedule"] == dict.fromkeys(schedules, 1)
        assert [c["correlationId"] for c in counters["generate_calls"]] == [
            "run-1/generate/0001",
            "run-1/generate/0002",
        ]

    def test_a_whole_call_refusal(self, client: SalesforceClient, clock: FakeClock, run: SeededRun) -> None:
        schedules = voided(client, clock, run.eligible_ids[0])
        with pytest.raises(ProviderRefused) as refused:
            client.generate([*schedules, "44b5g0000000000AAA"], correlation_id="c", invoice_date=DAY, target_date=DAY)
        assert "INVALID_INPUT" in str(refused.value)

    def test_a_schedule_in_error_is_recovered(
        self, client: SalesforceClient, state: SalesforceState, clock: FakeClock, run: SeededRun
    ) -> None:
        schedules = voided(client, clock, run.eligible_ids[0])
        state.faults.update(p_schedule_error=1.0)
        client.generate(schedules, correlation_id="c", invoice_date=DAY, target_date=DAY)
        clock.advance(3)
        in_error = client.records(select(BILLING_SCHEDULE, "Id", "Status").where(is_in("Id", schedules)))
        assert {s.Status for s in in_error} == {"Error"}
        result = client.recover(schedules[0])
        assert (result.success, result.invoiceStatus) == (True, "Posted")
        assert {s.billingScheduleStatus for s in result.billingSchedules} == {"ReadyForInvoicing"}
        with pytest.raises(ProviderRefused):
            client.recover(schedules[0])  # nothing in Error or Processing any more


class TestSessions:
    def test_a_dead_session_gets_one_new_token(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun, calls: list[ApiCall]
    ) -> None:
        client.count(count(INVOICE))
        state.expire_tokens()
        client.void(run.eligible_ids[0])  # a 401 is never applied: the write is repeated once
        assert state.counters()["voids"] == {run.eligible_ids[0]: 1}
        assert state.counters()["tokens_issued"] == 2
        assert [(c.operation, c.status_code, c.outcome) for c in calls][-3:] == [
            ("void", 401, CallOutcome.TRANSIENT),
            ("token", 200, CallOutcome.OK),
            ("void", 200, CallOutcome.OK),
        ]

    def test_a_session_that_dies_again_is_permanent(
        self, client: SalesforceClient, state: SalesforceState, clock: FakeClock
    ) -> None:
        state.faults.update(token_ttl_seconds=0.5)
        clock.step = 1.0  # every token is dead by the time it is used
        with pytest.raises(ProviderAuthError) as rejected:
            client.count(count(INVOICE))
        assert not isinstance(rejected.value, CredentialsRejected)
        assert state.counters()["tokens_issued"] == 2

    def test_wrong_credentials_stop_naming_the_settings(
        self, make_client: Callable[..., SalesforceClient], calls: list[ApiCall]
    ) -> None:
        client = make_client(client_secret=SecretStr("not-" + CLIENT_SECRET))
        with pytest.raises(CredentialsRejected) as rejected:
            client.count(count(INVOICE))
        assert "invalid_client" in str(rejected.value)
        assert "REBILL_SALESFORCE_CLIENT_SECRET" in str(rejected.value)
        assert all(CLIENT_SECRET not in (c.error or "") for c in calls)

    def test_the_secret_and_token_are_in_no_api_call(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun, calls: list[ApiCall]
    ) -> None:
        client.void(run.eligible_ids[0])
        with pytest.raises(ProviderRefused):
            client.void(run.eligible_ids[0])
        assert len(calls) == 3  # token, void, refused void
        for call in calls:
            assert CLIENT_SECRET not in repr(call)
            assert "ReBiL!" not in repr(call)  # every token the simulator issues holds this


class TestLimits:
    def test_usage_is_read_from_every_reply(self, client: SalesforceClient, state: SalesforceState) -> None:
        state.faults.update(daily_allocation=5000)
        for expected in (1, 2):
            client.count(count(INVOICE))
            assert client.usage == ApiUsage(used=expected, allocation=5000)
        with pytest.raises(ProviderNotFound):
            client.void("3tt5g0000000000AAA")  # refusals carry it too
        assert client.usage == ApiUsage(used=3, allocation=5000)

    def test_a_spent_allocation_is_told_apart(self, client: SalesforceClient, state: SalesforceState) -> None:
        state.faults.update(daily_allocation=100)
        state.set_usage(100)
        with pytest.raises(AllocationExhausted) as spent:
            client.count(count(INVOICE))
        assert spent.value.usage == ApiUsage(used=100, allocation=100)
        assert client.usage == ApiUsage(used=100, allocation=100)
        state.set_usage(10)  # the rolling window moved on
        assert client.count(count(INVOICE)) >= 0

    def test_a_concurrency_403_is_throttling_not_applied(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun
    ) -> None:
        client.count(count(INVOICE))
        state.faults.update(p_429=1.0)
        with pytest.raises(ProviderThrottled) as throttled:
            client.void(run.eligible_ids[0])
        assert not isinstance(throttled.value, AllocationExhausted)
        assert not throttled.value.may_have_applied
        state.faults.update(p_429=0.0)
        assert status(client, run.eligible_ids[0]).Status == "Posted"


class TestLostReplies:
    @pytest.mark.parametrize("operation", ["void", "generate", "recover"])
    def test_applied_then_502_is_settled_by_reading(
        self,
        client: SalesforceClient,
        state: SalesforceState,
        clock: FakeClock,
        run: SeededRun,
        operation: str,
    ) -> None:
        invoice_id = run.eligible_ids[0]
        schedules = schedule_ids(client, invoice_id)
        if operation != "void":
            voided(client, clock, invoice_id)
        if operation == "recover":
            client.generate(schedules, correlation_id="c", invoice_date=DAY, target_date=DAY)
        state.faults.update(p_reply_lost=1.0, fault_operations=[operation])
        send: Callable[[], object] = {
            "void": lambda: client.void(invoice_id),
            "generate": lambda: client.generate(schedules, correlation_id="c", invoice_date=DAY, target_date=DAY),
            "recover": lambda: client.recover(schedules[0]),
        }[operation]
        with pytest.raises(ProviderUnavailable) as lost:
            send()
        assert lost.value.may_have_applied
        assert lost.value.status_code == 502
        state.faults.update(p_reply_lost=0.0, fault_operations=None)
        if operation == "void":
            assert status(client, invoice_id).Status == "Void In Progress"  # applied: do not send it again
        else:
            read = client.records(select(BILLING_SCHEDULE, "Status").where(is_in("Id", schedules)))
            expected = "Processing" if operation == "generate" else "ReadyForInvoicing"
            assert {s.Status for s in read} == {expected}

    def test_a_500_on_a_write_may_have_applied_and_reading_says_it_did_not(
        self, client: SalesforceClient, state: SalesforceState, run: SeededRun
    ) -> None:
        client.count(count(INVOICE))
        state.faults.update(p_500=1.0, fault_operations=["void"])
        with pytest.raises(ProviderUnavailable) as failed:
            client.void(run.eligible_ids[0])
        assert failed.value.may_have_applied
        assert "UNKNOWN_EXCEPTION" in str(failed.value)
        state.faults.update(p_500=0.0, fault_operations=None)
        assert status(client, run.eligible_ids[0]).Status == "Posted"  # not applied: send it again
        client.void(run.eligible_ids[0])

    def test_a_503_page_was_not_applied(self, client: SalesforceClient, state: SalesforceState, run: SeededRun) -> None:
        client.count(count(INVOICE))
        state.faults.update(p_503_html=1.0)
        with pytest.raises(ProviderUnavailable) as down:
            client.void(run.eligible_ids[0])
        assert not down.value.may_have_applied
        assert down.value.status_code == 503


def test_a_later_api_version(make_client: Callable[..., SalesforceClient], run: SeededRun) -> None:
    client = make_client(api_version="v64.0")
    assert client.count(count(INVOICE).where(eq("InvoiceBatchRunId", run.invoice_batch_run_id))) == 40
