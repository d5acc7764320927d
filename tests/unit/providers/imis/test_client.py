"""ImisClient over a scripted transport: construction, auth, reporting, paging, replies."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.imis import ImisClient
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)

from .conftest import BASE_URL, PASSWORD, USERNAME, FakeClock, FakeImis, json_response, ok, token

SEED_EXAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "seed_examples"


def _unused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


def invoice(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "$type": "Asi.Soa.Commerce.DataContracts.InvoiceSummaryData, Asi.Contracts",
        "InvoiceId": str(number),
        "InvoiceNumber": number,
        "AccountingMethod": 0,
        "InvoiceAmount": {"Amount": 95, "IsAmountDefined": True},
        "Balance": {"Amount": 95, "IsAmountDefined": True},
        **extra,
    }


def paged_server(
    total: int, *, cap: int, next_offset: bool = True, has_next: bool = True
) -> Callable[[httpx.Request], httpx.Response]:
    """InvoiceSummary list that caps `limit` at `cap`, like a real tenant may."""

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", "0"))
        limit = min(int(request.url.params.get("limit", "100")), cap)
        items = [invoice(8000 + i) for i in range(offset, min(offset + limit, total))]
        more = offset + len(items) < total
        body: dict[str, Any] = {
            "$type": "Asi.Soa.Core.DataContracts.PagedResult`1[[InvoiceSummaryData]], Asi.Contracts",
            "Items": {"$type": "System.Collections.Generic.List`1", "$values": items},
            "Offset": offset,
            "Limit": limit,
            "Count": len(items),
            "TotalCount": total,
            "NextPageLink": None,
        }
        if has_next:
            body["HasNext"] = more
        if next_offset:
            body["NextOffset"] = offset + len(items) if more else 0
        return json_response(200, body)

    return handler


class TestConstruction:
    def test_refuses_a_plain_string_password(self) -> None:
        with pytest.raises(TypeError, match="SecretStr"):
            ImisClient(
                base_url=BASE_URL,
                username=USERNAME,
                password=PASSWORD,  # type: ignore[arg-type]  # a plain string on purpose
                transport=httpx.MockTransport(_unused),
                timeout=httpx.Timeout(5),
            )

    def test_repr_shows_base_url_and_username_only(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/BatchSummary/B1", json_response(200, {"BatchId": "B1", "BatchStatus": "Open"}))
        client.get_batch("B1")  # a token is now held
        for text in (repr(client), str(client), f"{client!r}"):
            assert text == f"ImisClient(base_url={BASE_URL!r}, username={USERNAME!r})"
            assert PASSWORD not in text
            assert token(1) not in text
        assert PASSWORD not in repr(vars(client))


class TestAuth:
    def test_one_token_serves_many_calls(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        for _ in range(5):
            assert client.can_cash_invoice_be_reversed("8158") is True
        assert imis.tokens_issued == 1
        assert all(r.headers["Authorization"] == f"Bearer {token(1)}" for r in imis.api_requests())
        token_request = imis.requests[0]
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"

    def test_refreshes_ahead_of_expiry(
        self, make_client: Callable[..., ImisClient], imis: FakeImis, clock: FakeClock
    ) -> None:
        imis.expires_in = 120
        client = make_client(refresh_margin_seconds=60)
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("1")
        clock.now += 59
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 1
        clock.now += 2  # 61 s in: inside the margin, 59 s before expiry
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 2
        assert imis.api_requests()[-1].headers["Authorization"] == f"Bearer {token(2)}"

    def test_a_margin_longer_than_the_lifetime_refreshes_at_half_life(
        self, make_client: Callable[..., ImisClient], imis: FakeImis, clock: FakeClock
    ) -> None:
        imis.expires_in = 2
        client = make_client(refresh_margin_seconds=60)
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("1")
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 1
        clock.now += 1.0
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 2

    def test_a_token_without_expires_in_lives_twenty_minutes(
        self, make_client: Callable[..., ImisClient], imis: FakeImis, clock: FakeClock
    ) -> None:
        imis.expires_in = None
        client = make_client(refresh_margin_seconds=60)
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("1")
        clock.now += 1139
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 1
        clock.now += 2
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 2

    def test_a_token_that_expires_at_once_is_fetched_for_every_call(
        self, make_client: Callable[..., ImisClient], imis: FakeImis
    ) -> None:
        imis.expires_in = 0
        client = make_client()
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("1")
        client.can_cash_invoice_be_reversed("1")
        assert imis.tokens_issued == 2

    def test_a_401_refreshes_once_and_repeats_once(
        self, client: ImisClient, imis: FakeImis, calls: list[ApiCall]
    ) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(False))
        client.can_cash_invoice_be_reversed("1")
        imis.rejected_tokens.add(token(1))  # revoked server-side
        assert client.can_cash_invoice_be_reversed("1") is False
        assert imis.tokens_issued == 2
        assert [(c.operation, c.outcome, c.status_code) for c in calls] == [
            ("token", CallOutcome.OK, 200),
            ("Invoice.CanCashInvoiceBeReversed", CallOutcome.OK, 200),
            ("Invoice.CanCashInvoiceBeReversed", CallOutcome.TRANSIENT, 401),
            ("token", CallOutcome.OK, 200),
            ("Invoice.CanCashInvoiceBeReversed", CallOutcome.OK, 200),
        ]

    def test_a_second_401_is_permanent(self, client: ImisClient, imis: FakeImis, calls: list[ApiCall]) -> None:
        imis.route("POST", "/api/Invoice/_execute", httpx.Response(401))
        with pytest.raises(ProviderAuthError) as caught:
            client.can_cash_invoice_be_reversed("1")
        assert caught.value.status_code == 401
        assert imis.tokens_issued == 2
        assert len(imis.api_requests()) == 2
        assert calls[-1].outcome is CallOutcome.PERMANENT
        self.assert_no_secret(caught.value)

    def test_wrong_credentials(
        self, make_client: Callable[..., ImisClient], imis: FakeImis, calls: list[ApiCall]
    ) -> None:
        client = make_client(password=SecretStr("wrong-password"))
        with pytest.raises(ProviderAuthError, match="user name or password is incorrect") as caught:
            client.get_invoice("8158")
        assert "wrong-password" not in str(caught.value)
        assert "wrong-password" not in repr(caught.value)
        assert caught.value.__cause__ is None
        assert [(c.operation, c.outcome, c.status_code) for c in calls] == [("token", CallOutcome.PERMANENT, 400)]
        assert imis.api_requests() == []

    def test_a_server_echoing_the_password_is_scrubbed(
        self, client: ImisClient, imis: FakeImis, calls: list[ApiCall]
    ) -> None:
        imis.route(
            "GET", "/api/InvoiceSummary/1", json_response(400, {"Message": f"bad value {PASSWORD} and {token(1)}"})
        )
        with pytest.raises(ProviderRefused) as caught:
            client.get_invoice("1")
        self.assert_no_secret(caught.value)
        assert "***" in str(caught.value)
        assert all(PASSWORD not in (c.error or "") for c in calls)

    def test_token_fetched_once_under_concurrency(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        self.run_threads(16, lambda: client.can_cash_invoice_be_reversed("1"))
        assert imis.tokens_issued == 1

    def test_concurrent_401s_refresh_once(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("1")
        imis.rejected_tokens.add(token(1))
        results = self.run_threads(16, lambda: client.can_cash_invoice_be_reversed("1"))
        assert results == [True] * 16
        assert imis.tokens_issued == 2

    @staticmethod
    def run_threads(count: int, work: Callable[[], Any]) -> list[Any]:
        barrier = threading.Barrier(count)
        results: list[Any] = [None] * count
        errors: list[BaseException] = []

        def run(index: int) -> None:
            barrier.wait()
            try:
                results[index] = work()
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not errors, errors
        return results

    @staticmethod
    def assert_no_secret(error: ProviderError) -> None:
        for text in (str(error), repr(error), error.message, *map(str, error.args)):
            assert PASSWORD not in text
            assert token(1) not in text
            assert token(2) not in text


class TestReporting:
    def test_every_exchange_is_reported(self, client: ImisClient, imis: FakeImis, calls: list[ApiCall]) -> None:
        imis.route("GET", "/api/BillingLog/k", json_response(200, {"BillingLogKey": "k", "Status": 2}))
        imis.route("GET", "/api/BillingLog/missing", json_response(404, {"Message": "missing"}))
        client.get_billing_log("k")
        with pytest.raises(ProviderNotFound):
            client.get_billing_log("missing")
        assert [(c.operation, c.outcome, c.status_code) for c in calls] == [
            ("token", CallOutcome.OK, 200),
            ("BillingLog.get", CallOutcome.OK, 200),
            ("BillingLog.get", CallOutcome.PERMANENT, 404),
        ]
        assert calls[2].error is not None
        assert "not found" in calls[2].error
        assert all(c.latency_ms >= 0 and c.started_at.tzinfo is not None for c in calls)

    def test_transport_failures_are_reported(
        self, make_client: Callable[..., ImisClient], imis: FakeImis, calls: list[ApiCall]
    ) -> None:
        client = make_client()
        imis.route("GET", "/api/BatchSummary/B1", json_response(200, {"BatchId": "B1"}))
        client.get_batch("B1")

        def hang(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("timed out", request=request)

        imis.route("POST", "/api/Invoice/_execute", hang)
        with pytest.raises(ProviderTimeout) as caught:
            client.process_cash_reversal("8158", adjustment_date=date(2026, 4, 23), reason="r")
        assert caught.value.may_have_applied is True
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert (calls[-1].operation, calls[-1].outcome, calls[-1].status_code) == (
            "Invoice.ProcessCashReversal",
            CallOutcome.TRANSIENT,
            None,
        )


class TestExchange:
    def test_asks_for_compression_and_reads_a_compressed_reply(self, client: ImisClient, imis: FakeImis) -> None:
        body = gzip.compress(json.dumps({"BatchId": "B1", "BatchStatus": "Open"}).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        imis.route("GET", "/api/BatchSummary/B1", httpx.Response(200, content=body, headers=headers))
        assert client.get_batch("B1").BatchId == "B1"
        assert "gzip" in imis.api_requests()[0].headers["Accept-Encoding"]


class TestPaging:
    def test_follows_a_capped_page_size(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(50, cap=7))
        pages = list(client.iter_invoice_pages(billing_log_key="k", page_size=500))
        ids = [item.InvoiceId for page in pages for item in page.Items]
        assert ids == [str(8000 + i) for i in range(50)]
        assert [len(page.Items) for page in pages] == [7] * 7 + [1]
        offsets = [int(r.url.params["offset"]) for r in imis.api_requests()]
        assert offsets == list(range(0, 50, 7))
        assert {r.url.params["limit"] for r in imis.api_requests()} == {"500"}
        assert {r.url.params["BillingLogKey"] for r in imis.api_requests()} == {"k"}

    def test_is_lazy(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(50, cap=7))
        pages = client.iter_invoice_pages(billing_log_key="k")
        next(pages)
        assert len(imis.api_requests()) == 1

    def test_starts_at_an_offset(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(50, cap=20))
        pages = list(client.iter_invoice_pages(billing_log_key="k", start_offset=40))
        assert [item.InvoiceId for page in pages for item in page.Items] == [str(8000 + i) for i in range(40, 50)]

    def test_without_next_offset(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(20, cap=7, next_offset=False))
        assert sum(len(p.Items) for p in client.iter_invoice_pages(billing_log_key="k")) == 20

    def test_without_has_next(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(20, cap=7, has_next=False, next_offset=False))
        assert sum(len(p.Items) for p in client.iter_invoice_pages(billing_log_key="k")) == 20

    def test_filters(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary", paged_server(1, cap=7))
        list(client.iter_invoice_pages(bill_to_party_id="101", balance_gt_zero=True, page_size=10))
        params = imis.api_requests()[0].url.params
        assert dict(params) == {"BillToPartyId": "101", "Balance": "gt:0", "limit": "10", "offset": "0"}

    def test_a_server_that_does_not_advance_is_a_protocol_error(self, client: ImisClient, imis: FakeImis) -> None:
        def stuck(request: httpx.Request) -> httpx.Response:
            return json_response(200, {"Items": [invoice(1)], "Offset": 0, "HasNext": True, "NextOffset": 0})

        imis.route("GET", "/api/InvoiceSummary", stuck)
        with pytest.raises(ProviderProtocolError, match="does not advance"):
            list(client.iter_invoice_pages(billing_log_key="k"))

    def test_billing_logs_by_original_key(self, client: ImisClient, imis: FakeImis) -> None:
        def logs(request: httpx.Request) -> httpx.Response:
            assert request.url.params["OriginalBillingLogKey"] == "orig"
            items = [{"BillingLogKey": "a", "Status": 5}, {"BillingLogKey": "b", "Status": "Completed"}]
            return json_response(200, {"Items": {"$values": items}, "Offset": 0, "HasNext": False})

        imis.route("GET", "/api/BillingLog", logs)
        assert [log.BillingLogKey for log in client.iter_billing_logs(original_key="orig")] == ["a", "b"]


class TestReplies:
    def test_invoice_ids_are_url_encoded(self, client: ImisClient, imis: FakeImis) -> None:
        invoice_id = "CASH:23415:a9f0db70-d684-481a-84cd-d8fa1cd8f404"
        imis.route("GET", f"/api/InvoiceSummary/{invoice_id}", json_response(200, invoice(1, InvoiceId=invoice_id)))
        assert client.get_invoice(invoice_id).InvoiceId == invoice_id
        assert imis.api_requests()[0].url.raw_path == (
            b"/api/InvoiceSummary/CASH%3A23415%3Aa9f0db70-d684-481a-84cd-d8fa1cd8f404"
        )

    def test_execute_bodies_are_the_seed_examples(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(True))
        client.can_cash_invoice_be_reversed("8158")
        client.can_invoice_be_reversed(2317)
        client.process_cash_reversal(
            "8158", adjustment_date=date(2026, 4, 23), reason="Billing error - reversing invoice"
        )
        client.process_accrual_reversal("8158", adjustment_date=date(2026, 4, 23), reason="Reversing incorrect billing")
        sent = [request.content for request in imis.api_requests()]
        names = ["CanCashInvoiceBeReversed", "CanInvoiceBeReversed", "ProcessCashReversal", "ProcessAccrualReversal"]
        for body, name in zip(sent, names, strict=True):
            expected = json.loads((SEED_EXAMPLES / f"invoice_{name}.json").read_text())
            assert body == json.dumps(expected, separators=(",", ":")).encode()
        assert all(r.headers["Content-Type"] == "application/json" for r in imis.api_requests())

    def test_wrapped_primitives(self, make_client: Callable[..., ImisClient], imis: FakeImis) -> None:
        client = make_client(wrap_primitives=True)
        imis.route("POST", "/api/Invoice/_execute", ok({"$type": "System.Boolean", "$value": True}))
        assert client.can_invoice_be_reversed(2317) is True
        assert imis.bodies("/api/Invoice/_execute")[0]["Parameters"]["$values"] == [
            {"$type": "System.Int32", "$value": 2317}
        ]

    @pytest.mark.parametrize("result", [None, "maybe", 1, {"x": 1}])
    def test_a_non_boolean_answer_is_a_protocol_error(self, client: ImisClient, imis: FakeImis, result: Any) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok(result))
        with pytest.raises(ProviderProtocolError, match="not a boolean"):
            client.can_cash_invoice_be_reversed("8158")

    def test_string_booleans(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", ok("False"))
        assert client.can_cash_invoice_be_reversed("8158") is False

    def test_refusal_in_a_200(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route(
            "POST",
            "/api/Invoice/_execute",
            json_response(200, {"IsSuccessStatusCode": False, "Message": "Invoice already reversed"}),
        )
        with pytest.raises(ProviderRefused, match="Invoice already reversed") as caught:
            client.process_cash_reversal("8158", adjustment_date=date(2026, 4, 23))
        assert caught.value.may_have_applied is False

    @pytest.mark.parametrize(
        "response",
        [
            httpx.Response(200, content=b"<html><title>Login</title></html>", headers={"Content-Type": "text/html"}),
            httpx.Response(200, content=b'{"IsSuccessStatusCode": tr', headers={"Content-Type": "application/json"}),
        ],
        ids=["html", "truncated"],
    )
    def test_unparseable_success_on_a_write(self, client: ImisClient, imis: FakeImis, response: httpx.Response) -> None:
        imis.route("POST", "/api/Invoice/_execute", response)
        with pytest.raises(ProviderProtocolError, match=r"Invoice\.ProcessAccrualReversal") as caught:
            client.process_accrual_reversal("8158", adjustment_date=date(2026, 4, 23))
        assert caught.value.may_have_applied is True

    @pytest.mark.parametrize("body", [b"", b"  \r\n"], ids=["empty", "whitespace"])
    def test_an_empty_success_on_a_write_is_success(self, client: ImisClient, imis: FakeImis, body: bytes) -> None:
        imis.route("POST", "/api/Invoice/_execute", httpx.Response(200, content=body))
        reply = client.process_cash_reversal("8158", adjustment_date=date(2026, 4, 23))
        assert reply.IsSuccessStatusCode is None

    def test_a_null_success_on_a_write_is_unusable(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/Invoice/_execute", json_response(200, None))
        with pytest.raises(ProviderProtocolError, match="ServiceResponse shape") as caught:
            client.process_cash_reversal("8158", adjustment_date=date(2026, 4, 23))
        assert caught.value.may_have_applied is True

    def test_a_success_with_a_byte_order_mark_is_read(self, client: ImisClient, imis: FakeImis) -> None:
        body = b"\xef\xbb\xbf" + json.dumps({"BatchId": "B1", "BatchStatus": "Open"}).encode()
        imis.route("GET", "/api/BatchSummary/B1", httpx.Response(200, content=body))
        assert client.get_batch("B1").BatchId == "B1"

    def test_a_wrong_shape_names_the_field_not_the_data(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary/1", json_response(200, {"InvoiceId": "1", "AccountingMethod": "Barter"}))
        with pytest.raises(ProviderProtocolError, match="AccountingMethod") as caught:
            client.get_invoice("1")
        assert caught.value.may_have_applied is False

    def test_an_empty_body_on_a_read(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("GET", "/api/InvoiceSummary/1", httpx.Response(200))
        with pytest.raises(ProviderProtocolError, match="empty body"):
            client.get_invoice("1")

    def test_execute_task_returns_the_task_log_id(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route(
            "POST",
            "/api/TaskDefinition/_execute",
            json_response(
                202,
                {
                    "$type": "Asi.Soa.Core.DataContracts.GenericExecuteResult, Asi.Contracts",
                    "Result": {"TaskLogId": "task-1"},
                },
            ),
        )
        assert client.execute_task({"OperationName": "TaskAdhocRequest"}) == "task-1"

    def test_execute_task_without_an_id(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/TaskDefinition/_execute", json_response(200, {"Result": {}}))
        with pytest.raises(ProviderProtocolError, match="TaskLogId") as caught:
            client.execute_task({})
        assert caught.value.may_have_applied is True

    def test_create_billing_log_reads_back_an_empty_201(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/BillingLog", httpx.Response(201))
        imis.route("GET", "/api/BillingLog/new", json_response(200, {"BillingLogKey": "new", "Status": 5}))
        log = client.create_billing_log({"BillingLogKey": "new", "Status": 5})
        assert log.BillingLogKey == "new"

    def test_server_error_on_a_write(self, client: ImisClient, imis: FakeImis) -> None:
        imis.route("POST", "/api/BatchSummary/_execute", json_response(500, {"Message": "boom"}))
        with pytest.raises(ProviderUnavailable, match="boom") as caught:
            client.post_batch("B1")
        assert caught.value.may_have_applied is True
        assert imis.bodies("/api/BatchSummary/_execute")[0]["OperationName"] == "Post"
