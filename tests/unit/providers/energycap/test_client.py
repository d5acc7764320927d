"""EnergyCapClient against a scripted EnergyCAP (an `httpx.MockTransport` handler written here): the
replies a healthy simulator never sends, and the arguments the client refuses before sending."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.energycap.client import EnergyCapClient
from orchestrator.adapters.providers.energycap.filters import Field, Op, where
from orchestrator.domain.billing import ApiCall
from orchestrator.domain.errors import ProviderProtocolError

BASE_URL = "https://app.energycap.example"
KEY = "ec-unit-key-000111"
GUID = "0b6f2c9e-5d1a-4c8e-9f47-3a2d18e0c6b1"


def reply(body: Any, status: int = 200, /, **headers: str) -> httpx.Response:
    """A reply with `headers` over JSON's (`status` is positional: no header can fill it)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers={"Content-Type": "application/json", **headers})


def make(handler: Callable[[httpx.Request], httpx.Response], calls: list[ApiCall] | None = None) -> EnergyCapClient:
    return EnergyCapClient(
        base_url=BASE_URL,
        api_key=SecretStr(KEY),
        transport=httpx.MockTransport(handler),
        timeout=httpx.Timeout(5, connect=2),
        observer=None if calls is None else calls.append,
    )


def bill(bill_id: int) -> dict[str, Any]:
    return {"billId": bill_id, "totalCost": "1.00"}


class TestConstruction:
    def test_the_key_must_be_a_secret(self) -> None:
        with pytest.raises(TypeError, match="SecretStr"):
            EnergyCapClient(
                base_url=BASE_URL,
                api_key=KEY,  # type: ignore[arg-type]  # a plain string on purpose
                transport=httpx.MockTransport(lambda r: reply([])),
                timeout=httpx.Timeout(5),
            )

    @pytest.mark.parametrize(
        ("base_url", "timeout", "why"),
        [("ftp://x", httpx.Timeout(5), "http"), (BASE_URL, httpx.Timeout(None, connect=5), "unbounded")],
    )
    def test_url_and_timeout_are_checked(self, base_url: str, timeout: httpx.Timeout, why: str) -> None:
        with pytest.raises(ValueError, match=why):
            EnergyCapClient(
                base_url=base_url,
                api_key=SecretStr(KEY),
                transport=httpx.MockTransport(lambda r: reply([])),
                timeout=timeout,
            )

    def test_repr_shows_the_url_only(self) -> None:
        client = make(lambda r: reply([]))
        assert repr(client) == f"EnergyCapClient(base_url='{BASE_URL}')"
        assert KEY not in str(client)


class TestPaging:
    def test_pages_one_to_total_pages_asking_the_echoed_size(self) -> None:
        asked: list[tuple[str, str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            params = request.url.params
            asked.append((params["pageNumber"], params["pageSize"], params["filter"]))
            number = int(params["pageNumber"])
            items = [bill(n) for n in range((number - 1) * 2 + 1, min(number * 2, 5) + 1)]
            return reply(items, PageNumber=str(number), PageSize="2", TotalNumberOfRecords="5", TotalPages="3")

        bills = list(make(handler).iter_bills(where(Field.ACCOUNT_PERIOD, Op.EQUALS, 202510)))
        assert [b.bill_id for b in bills] == [1, 2, 3, 4, 5]
        assert asked == [
            ("1", "1000", "accountPeriod equals '202510'"),
            ("2", "2", "accountPeriod equals '202510'"),
            ("3", "2", "accountPeriod equals '202510'"),
        ]

    def test_without_paging_headers_a_short_page_is_the_last(self) -> None:
        pages = {1: [bill(1), bill(2)], 2: [bill(3)]}
        client = make(lambda r: reply(pages[int(r.url.params["pageNumber"])]))
        assert [b.bill_id for b in client.iter_bills(page_size=2)] == [1, 2, 3]

    def test_an_empty_body_is_an_empty_page(self) -> None:
        assert list(make(lambda r: reply(b"", TotalPages="0")).iter_bills()) == []

    @pytest.mark.parametrize(
        ("response", "why"),
        [
            (reply([], PageSize="many"), "PageSize header is not a number"),
            (reply([bill(1), bill(2)], PageSize="1"), "2 items on a page of size 1"),
            (reply({"billId": 1}), "unexpected"),
            (reply([{"billId": 1, "totalCost": "x"}]), "totalCost"),
            (reply(b"<html><title>Login</title></html>", **{"Content-Type": "text/html"}), "HTML page"),
        ],
    )
    def test_unusable_pages(self, response: httpx.Response, why: str) -> None:
        with pytest.raises(ProviderProtocolError, match=why) as raised:
            list(make(lambda r: response).iter_bills())
        assert not raised.value.may_have_applied

    def test_the_arguments(self) -> None:
        client = make(lambda r: reply([]))
        with pytest.raises(ValueError, match="page_size"):
            list(client.iter_bills(page_size=0))
        with pytest.raises(ValueError, match="start_page"):
            list(client.iter_bill_pages(start_page=0))

    def test_two_batches_with_one_code_is_not_guessed_at(self) -> None:
        batches = [{"batchId": 1, "batchCode": "RB-1"}, {"batchId": 2, "batchCode": "rb-1"}]
        with pytest.raises(ProviderProtocolError, match="2 batches have the code 'RB-1'"):
            make(lambda r: reply(batches, TotalPages="1")).find_batch("RB-1")

    def test_a_batch_of_another_code_is_not_taken(self) -> None:
        found = make(lambda r: reply([{"batchId": 1, "batchCode": "RB-10"}], TotalPages="1")).find_batch("RB-1")
        assert found is None


class TestWrites:
    def test_the_reverse_body_is_the_contracts(self) -> None:
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return reply({"selected": 3, "updated": 3})

        result = make(handler).reverse_bills([100017, 100018, 100017, 100023], "RB-7F3A21C0-0001", "run-7f3a")
        assert (result.selected, result.updated) == (3, 3)
        request = sent[0]
        assert (request.method, request.url.path) == ("PUT", "/api/v202510/bill/reverse")
        assert json.loads(request.content) == {
            "batchSettings": {
                "batchMode": "new self-contained batch",
                "newBatch": {"batchCode": "RB-7F3A21C0-0001", "note": "run-7f3a"},
            },
            "billIds": [100017, 100018, 100023],
        }

    def test_the_import_body_is_the_contracts(self) -> None:
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return reply(GUID)

        assert make(handler).import_bills(b"a,b\n1,2\n", "RB-7F3A21C0-I1", "rebill-7f3a21c0.csv", "run-7f3a") == GUID
        body = json.loads(sent[0].content)
        assert (sent[0].method, sent[0].url.path) == ("POST", "/api/v3/import/bill")
        assert body["batchSettings"] == {"batchMode": "new self-contained batch", "newBatchCode": "RB-7F3A21C0-I1"}
        assert base64.b64decode(body["data"]) == b"a,b\n1,2\n"
        assert (body["fileName"], body["importNote"]) == ("rebill-7f3a21c0.csv", "run-7f3a")

    def test_the_kickout_call(self) -> None:
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return reply({"taskGUId": GUID})

        assert make(handler).reimport_kickouts("abc/def", "RB-7F3A21C0-I2") == GUID
        assert sent[0].url.raw_path == b"/api/v202401/import/bill/task/abc%2Fdef/kickout"
        assert json.loads(sent[0].content) == {
            "batchSettings": {"batchMode": "new self-contained batch", "newBatchCode": "RB-7F3A21C0-I2"}
        }

    @pytest.mark.parametrize("body", [b"", b"{}", b"42", b'""'])
    def test_a_reply_without_a_task_guid_may_have_been_applied(self, body: bytes) -> None:
        with pytest.raises(ProviderProtocolError, match=r"no task GUID|empty") as raised:
            make(lambda r: reply(body)).import_bills(b"x", "RB-1", "f.csv", "run")
        assert raised.value.may_have_applied

    def test_a_reverse_reply_of_another_shape_may_have_been_applied(self) -> None:
        with pytest.raises(ProviderProtocolError, match="UpdateResult") as raised:
            make(lambda r: reply({"ok": True})).reverse_bills([1], "RB-1", "run")
        assert raised.value.may_have_applied

    @pytest.mark.parametrize(
        ("call", "why"),
        [
            (lambda c: c.reverse_bills([1], " ", "run"), "batch_code must not be empty"),
            (lambda c: c.reverse_bills([1], "x" * 256, "run"), "batch_code must be at most 255"),
            (lambda c: c.reverse_bills([1], "RB", "n" * 256), "note must be at most 255"),
            (lambda c: c.import_bills(b"", "RB", "f.csv", "run"), "the import file is empty"),
            (lambda c: c.import_bills(b"x", "RB", "", "run"), "file_name must not be empty"),
            (lambda c: c.reimport_kickouts(GUID, ""), "batch_code must not be empty"),
        ],
    )
    def test_bad_arguments_send_nothing(self, call: Callable[[EnergyCapClient], object], why: str) -> None:
        calls: list[ApiCall] = []
        with pytest.raises(ValueError, match=why):
            call(make(lambda r: reply({}), calls))
        assert calls == []
