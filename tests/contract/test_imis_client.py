"""ImisClient and ImisApi against the real iMIS simulator over loopback HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.imis import ImisApi, ImisClient
from orchestrator.adapters.providers.imis.model import (
    AccountingMethod,
    BatchStatus,
    BillingLog,
    BillingLogStatus,
    ImisInvoice,
    Rebill,
    Reversal,
    ServerSideReversal,
)
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)
from simulators.imis.entities import ACCRUAL
from simulators.imis.seeding import SeededBilling
from simulators.imis.state import ImisState

TODAY = date(2025, 9, 9)


def first_open(client: ImisClient, billing: SeededBilling, *, legacy: bool = False) -> str:
    """An open invoice of the billing (a legacy `CASH:` id when asked)."""
    for invoice_id in billing.open_invoice_ids:
        if invoice_id.startswith("CASH:") == legacy:
            return invoice_id
    raise AssertionError("the seeded billing has no such invoice")


def wait_for_status(provider: ImisApi, key: str, wanted: set[BillingLogStatus], timeout: float = 10.0) -> BillingLog:
    deadline = time.monotonic() + timeout
    while True:
        log = provider.get_billing_log(key)
        if log.status in wanted or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


class TestPaging:
    def test_capped_page_size(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(page_size_cap=7)
        pages = list(client.iter_invoice_pages(billing_log_key=billing.original_key, page_size=500))
        ids = [item.InvoiceId for page in pages for item in page.Items]
        assert sorted(ids) == sorted(billing.invoice_ids)
        assert len(ids) == len(set(ids)) == 50
        assert [len(page.Items) for page in pages] == [7] * 7 + [1]
        assert {page.Limit for page in pages} == {7}
        assert state.counters()["requests"]["InvoiceSummary.list"] == 8

    def test_resume_from_an_offset(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(page_size_cap=7)
        everything = [
            i.InvoiceId for p in client.iter_invoice_pages(billing_log_key=billing.original_key) for i in p.Items
        ]
        tail = [
            i.InvoiceId
            for p in client.iter_invoice_pages(billing_log_key=billing.original_key, start_offset=21)
            for i in p.Items
        ]
        assert tail == everything[21:]

    def test_open_balance_filter(self, client: ImisClient, billing: SeededBilling) -> None:
        pages = client.iter_invoice_pages(billing_log_key=billing.original_key, balance_gt_zero=True)
        ids = {item.InvoiceId for page in pages for item in page.Items}
        assert set(billing.open_invoice_ids) <= ids
        assert len(ids) == billing.open_count + billing.part_paid_count

    def test_money_is_exact(self, client: ImisClient, billing: SeededBilling) -> None:
        for page in client.iter_invoice_pages(billing_log_key=billing.original_key):
            for item in page.Items:
                assert isinstance(item.InvoiceAmount.value, Decimal)
                assert item.InvoiceAmount.value == item.Balance.value + item.PaymentAmount.value

    def test_token_expiry_mid_stream(
        self, make_client: Callable[..., ImisClient], state: ImisState, billing: SeededBilling, calls: list[ApiCall]
    ) -> None:
        # 2 s tokens refreshed 1 s before expiry, pages that take 0.25 s: the stream outlives tokens.
        state.faults.update(page_size_cap=7, token_lifetime_seconds=2, latency_ms=250)
        client = make_client(refresh_margin_seconds=1.0)
        ids = [i.InvoiceId for p in client.iter_invoice_pages(billing_log_key=billing.original_key) for i in p.Items]
        assert len(ids) == 50
        assert state.counters()["tokens_issued"] >= 2
        assert all(call.status_code != 401 for call in calls)  # refreshed ahead, never rejected

    def test_token_revoked_mid_stream(
        self, client: ImisClient, state: ImisState, billing: SeededBilling, calls: list[ApiCall]
    ) -> None:
        state.faults.update(page_size_cap=7)
        ids: list[str] = []
        for number, page in enumerate(client.iter_invoice_pages(billing_log_key=billing.original_key)):
            ids += [item.InvoiceId for item in page.Items]
            if number == 2:
                state.expire_tokens()
        assert len(ids) == 50
        assert [c.outcome for c in calls if c.status_code == 401] == [CallOutcome.TRANSIENT]
        assert state.counters()["tokens_issued"] == 2


class TestFaults:
    def test_429_carries_retry_after(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(p_429=1.0, retry_after_seconds=7)
        with pytest.raises(ProviderThrottled) as caught:
            client.get_billing_log(billing.original_key)
        assert caught.value.retry_after == 7.0
        assert caught.value.status_code == 429

    def test_html_503(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(p_503_html=1.0)
        with pytest.raises(ProviderUnavailable, match="Service Unavailable") as caught:
            client.process_cash_reversal(first_open(client, billing), adjustment_date=TODAY)
        assert caught.value.status_code == 503
        assert caught.value.may_have_applied is False

    def test_500(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(p_500=1.0)
        with pytest.raises(ProviderUnavailable, match="An error has occurred") as caught:
            client.get_invoice(billing.invoice_ids[0])
        assert caught.value.status_code == 500

    def test_a_hang_past_the_client_timeout(
        self, make_client: Callable[..., ImisClient], state: ImisState, billing: SeededBilling, calls: list[ApiCall]
    ) -> None:
        client = make_client(timeout=0.5)
        client.get_billing_log(billing.original_key)  # token first: the hang is for the API call
        state.faults.update(p_hang=1.0, hang_seconds=3)
        started = time.monotonic()
        with pytest.raises(ProviderTimeout) as caught:
            client.get_invoice(billing.invoice_ids[0])
        assert time.monotonic() - started < 2.5
        assert caught.value.may_have_applied is False
        assert calls[-1].outcome is CallOutcome.TRANSIENT

    def test_reply_lost_after_apply(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        invoice_id = first_open(client, billing)
        state.faults.update(p_reply_lost=1.0, reply_lost_mode="502", fault_operations=["Invoice.ProcessCashReversal"])
        with pytest.raises(ProviderUnavailable) as caught:
            client.process_cash_reversal(invoice_id, adjustment_date=TODAY, reason="contract test")
        assert caught.value.may_have_applied is True
        assert caught.value.status_code == 502
        # Settled by reading: it was applied.
        assert client.get_invoice(invoice_id).Balance.value == 0
        assert client.can_cash_invoice_be_reversed(invoice_id) is False

    def test_reply_lost_by_hanging(
        self, make_client: Callable[..., ImisClient], state: ImisState, billing: SeededBilling
    ) -> None:
        client = make_client(timeout=0.5)
        invoice_id = first_open(client, billing)
        state.faults.update(
            p_reply_lost=1.0, reply_lost_mode="hang", hang_seconds=3, fault_operations=["Invoice.ProcessCashReversal"]
        )
        with pytest.raises(ProviderTimeout) as caught:
            client.process_cash_reversal(invoice_id, adjustment_date=TODAY)
        assert caught.value.may_have_applied is True
        assert state.counters()["reversals"] == {invoice_id: 1}

    @pytest.mark.parametrize("fault", ["p_html_200", "p_truncated_json"])
    def test_unparseable_replies_to_a_write(
        self, client: ImisClient, state: ImisState, billing: SeededBilling, fault: str
    ) -> None:
        invoice_id = first_open(client, billing)
        state.faults.update({fault: 1.0, "fault_operations": ["Invoice.ProcessCashReversal"]})
        with pytest.raises(ProviderProtocolError, match=r"Invoice\.ProcessCashReversal") as caught:
            client.process_cash_reversal(invoice_id, adjustment_date=TODAY)
        assert caught.value.may_have_applied is True

    def test_html_200_on_a_read(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        state.faults.update(p_html_200=1.0)
        with pytest.raises(ProviderProtocolError, match="HTML") as caught:
            client.get_billing_log(billing.original_key)
        assert caught.value.may_have_applied is False

    def test_not_found(self, client: ImisClient, billing: SeededBilling) -> None:
        with pytest.raises(ProviderNotFound):
            client.get_billing_log(str(uuid.uuid4()))
        with pytest.raises(ProviderNotFound):
            client.get_invoice("CASH:1:does-not-exist")


class TestAuth:
    def test_wrong_credentials(self, make_client: Callable[..., ImisClient], billing: SeededBilling) -> None:
        client = make_client(password=SecretStr("not-the-password"))
        with pytest.raises(ProviderAuthError, match="incorrect") as caught:
            client.get_billing_log(billing.original_key)
        assert "not-the-password" not in str(caught.value)
        assert "not-the-password" not in repr(client)

    def test_wrong_username(self, make_client: Callable[..., ImisClient], billing: SeededBilling) -> None:
        with pytest.raises(ProviderAuthError):
            make_client(username="mallory").get_billing_log(billing.original_key)


class TestReversals:
    @pytest.mark.parametrize("refusal_style", ["200", "400"])
    def test_a_second_reversal_is_refused(
        self, client: ImisClient, state: ImisState, billing: SeededBilling, refusal_style: str
    ) -> None:
        state.faults.update(refusal_style=refusal_style)
        invoice_id = first_open(client, billing)
        client.process_cash_reversal(invoice_id, adjustment_date=TODAY, reason="first")
        with pytest.raises(ProviderRefused, match="already been reversed") as caught:
            client.process_cash_reversal(invoice_id, adjustment_date=TODAY, reason="second")
        assert caught.value.may_have_applied is False
        counters = state.counters()
        assert counters["refused_second_reversals"] == 1
        assert counters["reversals"] == {invoice_id: 1}

    def test_can_answers_follow_state(self, client: ImisClient, state: ImisState, billing: SeededBilling) -> None:
        legacy = first_open(client, billing, legacy=True)
        assert client.can_cash_invoice_be_reversed(legacy) is True
        client.process_cash_reversal(legacy, adjustment_date=TODAY)
        assert client.can_cash_invoice_be_reversed(legacy) is False
        assert client.get_invoice(legacy).Balance.value == 0

        open_id = first_open(client, billing)
        assert client.can_cash_invoice_be_reversed(open_id) is True
        state.apply_payment(open_id, Decimal("1.00"))
        assert client.can_cash_invoice_be_reversed(open_id) is False
        with pytest.raises(ProviderRefused, match="payments"):
            client.process_cash_reversal(open_id, adjustment_date=TODAY)

    def test_accrual(self, make_client: Callable[..., ImisClient], state: ImisState) -> None:
        accrual = state.seed_billing(invoices=10, seed=2, cycle_name="Chapter Dues", accounting_method=ACCRUAL)
        provider = ImisApi(make_client(wrap_primitives=True))
        invoice = provider.get_invoice(accrual.open_invoice_ids[0])
        assert invoice.accounting_method is AccountingMethod.ACCRUAL
        assert invoice.number is not None
        assert provider.can_reverse(invoice) is True
        provider.reverse(Reversal(invoice.invoice_id, AccountingMethod.ACCRUAL, TODAY, "contract test"))
        assert provider.can_reverse(invoice) is False
        assert provider.get_invoice(invoice.invoice_id).balance == 0
        with pytest.raises(ProviderRefused, match="already been reversed"):
            provider.reverse(Reversal(invoice.invoice_id, AccountingMethod.ACCRUAL, TODAY, "again"))

    def test_cash_operation_on_accrual_invoice_is_refused(self, client: ImisClient, state: ImisState) -> None:
        accrual = state.seed_billing(invoices=5, seed=3, cycle_name="Chapter Dues", accounting_method=ACCRUAL)
        with pytest.raises(ProviderRefused, match="accrual"):
            client.process_cash_reversal(accrual.open_invoice_ids[0], adjustment_date=TODAY)


class TestConcurrency:
    def test_one_client_shared_by_worker_threads(
        self, make_client: Callable[..., ImisClient], state: ImisState, billing: SeededBilling, calls: list[ApiCall]
    ) -> None:
        # Tokens live 2 s and are refreshed 1 s ahead; every call takes 120 ms; 8 threads share one client.
        state.faults.update(token_lifetime_seconds=2, latency_ms=120)
        client = make_client(refresh_margin_seconds=1.0)
        provider = ImisApi(client)

        def reverse(invoice_id: str) -> None:
            invoice = provider.get_invoice(invoice_id)
            assert provider.can_reverse(invoice)
            provider.reverse(Reversal(invoice_id, invoice.accounting_method, TODAY, "concurrent"))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(reverse, billing.open_invoice_ids))
        counters = state.counters()
        assert counters["reversals"] == dict.fromkeys(billing.open_invoice_ids, 1)
        assert counters["peak_concurrency"] > 1
        assert counters["tokens_issued"] >= 2
        assert all(call.outcome is CallOutcome.OK for call in calls)
        token_calls = [call for call in calls if call.operation == "token"]
        assert len(token_calls) == counters["tokens_issued"]


class TestProviderFlow:
    def test_reverse_then_rebill_alone(
        self, provider: ImisApi, state: ImisState, billing: SeededBilling, calls: list[ApiCall]
    ) -> None:
        state.faults.update(page_size_cap=7, task_step_seconds=0.01)
        original = provider.get_billing_log(billing.original_key)
        assert original.status is BillingLogStatus.COMPLETED
        assert original.effective_date is not None

        tracking_key = str(uuid.uuid4())
        tracking = provider.create_tracking_log(original, key=tracking_key, run_name="Rebill: contract test")
        assert tracking.key == tracking_key
        assert tracking.status is BillingLogStatus.REVERSING
        assert tracking.original_key == billing.original_key
        assert [log.key for log in provider.find_billing_logs(original_key=billing.original_key)] == [tracking_key]

        reversed_ids: list[str] = []
        skipped: list[ImisInvoice] = []
        for page in provider.iter_invoice_pages(billing.original_key):
            for invoice in page.invoices:
                if invoice.skip_reason() is not None or not provider.can_reverse(invoice):
                    skipped.append(invoice)
                    continue
                provider.reverse(Reversal(invoice.invoice_id, invoice.accounting_method, TODAY, "rebill"))
                reversed_ids.append(invoice.invoice_id)
        assert sorted(reversed_ids) == sorted(billing.open_invoice_ids)
        assert len(skipped) == billing.paid_count + billing.part_paid_count

        task_id = provider.submit(
            rebill=Rebill(
                original=original, run_name="Rebill: contract test", tracking_log_key=tracking_key, auto_post_batch=True
            )
        )
        assert task_id
        done = wait_for_status(provider, tracking_key, {BillingLogStatus.COMPLETED, BillingLogStatus.FAILED})
        assert done.status is BillingLogStatus.COMPLETED
        assert done.batch_id is not None
        assert provider.get_batch(done.batch_id).status is BatchStatus.POSTED
        rebill = state.counters()["rebills"][0]
        assert rebill["progress_log_key"] == tracking_key
        assert rebill["invoices_created"] == len(billing.rebill_party_ids)
        assert {call.operation for call in calls} >= {
            "token",
            "BillingLog.get",
            "BillingLog.create",
            "BillingLog.list",
            "InvoiceSummary.list",
            "Invoice.CanCashInvoiceBeReversed",
            "Invoice.ProcessCashReversal",
            "TaskDefinition.execute",
            "BatchSummary.get",
        }

    def test_server_side_reverse_and_rebill_with_a_batch_to_post(
        self, provider: ImisApi, state: ImisState, billing: SeededBilling
    ) -> None:
        state.faults.update(task_step_seconds=0.01)
        original = provider.get_billing_log(billing.original_key)
        tracking_key = str(uuid.uuid4())
        provider.create_tracking_log(original, key=tracking_key, run_name="Rebill: server side")
        provider.submit(
            rebill=Rebill(
                original=original, run_name="Rebill: server side", tracking_log_key=tracking_key, auto_post_batch=False
            ),
            reversal=ServerSideReversal(billing_key=billing.original_key),
        )
        log = wait_for_status(provider, tracking_key, {BillingLogStatus.UNPOSTED_BATCH, BillingLogStatus.FAILED})
        assert log.status is BillingLogStatus.UNPOSTED_BATCH
        assert log.batch_id is not None
        assert provider.get_batch(log.batch_id).status is BatchStatus.READY
        assert set(state.counters()["reversals"]) == set(billing.open_invoice_ids)

        provider.post_batch(log.batch_id)
        assert provider.get_batch(log.batch_id).status is BatchStatus.POSTED
        assert provider.get_billing_log(tracking_key).status is BillingLogStatus.COMPLETED
        with pytest.raises(ProviderRefused, match="already been posted"):
            provider.post_batch(log.batch_id)

    def test_single_contact_without_tracking_log(
        self, provider: ImisApi, state: ImisState, billing: SeededBilling
    ) -> None:
        state.faults.update(task_step_seconds=0.01)
        original = provider.get_billing_log(billing.original_key)
        party = billing.rebill_party_ids[0]
        invoices = [
            invoice
            for page in provider.iter_invoice_pages(billing.original_key, party_id=party)
            for invoice in page.invoices
        ]
        assert invoices
        assert {invoice.party_id for invoice in invoices} == {party}
        provider.submit(
            rebill=Rebill(
                original=original,
                run_name=f"Rebill for {party}",
                tracking_log_key=None,
                auto_post_batch=True,
                party_id=party,
            ),
            reversal=ServerSideReversal(
                invoices=tuple(Reversal(i.invoice_id, i.accounting_method, TODAY, "") for i in invoices)
            ),
        )
        assert state.wait_for_tasks(10)
        logs = provider.find_billing_logs(original_key=billing.original_key)
        assert len(logs) == 1
        assert logs[0].status is BillingLogStatus.COMPLETED
        assert set(state.counters()["reversals"]) == {invoice.invoice_id for invoice in invoices}
        assert state.counters()["rebills"][0]["invoices_created"] == 1
