"""AriaClient against a scripted transport (written here, never in production): what it sends, how it pages,
what it keeps secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.aria.client import AriaClient
from orchestrator.adapters.providers.aria.errors import AriaBusyError, AriaRefusedError
from orchestrator.adapters.providers.aria.queries import bill_run
from orchestrator.adapters.providers.aria.wire import RebillLineItem
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderUnavailable

BASE_URL = "https://secure.aria.example"
AUTH_KEY = "Aria-k3y-never-shown"
QUERY = bill_run(date(2025, 10, 1))
LINES = [RebillLineItem(1, service_no=10001, rate_per_unit=Decimal("0.125")), RebillLineItem(2, service_no=10003)]


class Script:
    """Answers each request with the next reply; keeps the requests."""

    def __init__(self, *replies: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else reply

    def body(self, index: int = -1) -> dict[str, Any]:
        request = self.requests[index]
        if request.headers["content-type"] == "application/x-www-form-urlencoded":
            return dict(parse_qsl(request.content.decode()))
        data: dict[str, Any] = json.loads(request.content, parse_float=Decimal)
        return data


def ok(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json={"error_code": 0, "error_msg": "OK", **fields})


def page(numbers: list[int], total: int, **fields: Any) -> httpx.Response:
    headers = [{"invoice_no": n, "acct_no": 1, "amount": "10.00", "bill_date": "2025-10-01"} for n in numbers]
    return ok(total_records=total, invoice_details_m=headers, **fields)


def client_for(script: Script, calls: list[ApiCall] | None = None, **options: Any) -> AriaClient:
    return AriaClient(
        base_url=BASE_URL,
        client_no=7000123,
        auth_key=SecretStr(AUTH_KEY),
        transport=httpx.MockTransport(script),
        timeout=httpx.Timeout(5, connect=2),
        observer=None if calls is None else calls.append,
        **options,
    )


def rebill(client: AriaClient, **options: Any) -> Any:
    arguments: dict[str, Any] = {
        "acct_no": 3100135,
        "orig_invoice_no": 41000007,
        "reason_cd": 2,
        "line_items": LINES,
        "alt_caller_id": "rebill",
        "do_collect": False,
        "comments": "Rate correction, run R-42",
        "qualifiers": {"run_id": "R-42"},
    }
    return client.gen_rb_m(**{**arguments, **options})


class TestRequests:
    def test_the_object_query(self) -> None:
        script = Script(page([41000007], 1))
        client_for(script).get_invoice_information(QUERY, limit=500, offset=20)
        request = script.requests[0]
        assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/api/AriaQuery/objects.php")
        assert script.body() == {
            "rest_call": "get_invoice_information_m",
            "client_no": 7000123,
            "auth_key": AUTH_KEY,
            "output_format": "json",
            "query_string": "bill_date = 2025-10-01 AND invoice_type_cd != R ORDER BY invoice_no ASC",
            "limit": 500,
            "offset": 20,
        }
        assert request.extensions["timeout"] == {"connect": 2, "read": 5, "write": 5, "pool": 5}

    def test_details_and_history_go_to_the_core_path(self) -> None:
        script = Script(ok(invoice_line_details=[]), ok(invoice_hist=[]))
        client = client_for(script)
        client.get_invoice_details(41000007, acct_no=3100135)
        client.get_invoice_history(3100135, start_bill_date=date(2025, 9, 1))
        assert {str(r.url) for r in script.requests} == {f"{BASE_URL}/v1/core"}
        assert script.body(0)["invoice_no"] == 41000007
        history = script.body(1)
        assert (history["master_plan_instance_id"], history["include_voided"], history["rb_option"]) == (-1, "false", 0)
        assert history["start_bill_date"] == "2025-09-01"

    def test_gen_rb_m_sends_rates_as_exact_numbers(self) -> None:
        script = Script(ok(invoice_no=52000010, amount="91.09"))
        reply = rebill(client_for(script))
        assert reply.invoice_no == 52000010
        assert (
            b'"rb_line_items":[{"line_no":1,"service_no":10001,"rb_rate_per_unit":0.125},{"line_no":2,"service_no":10003}]'
            in script.requests[0].content
        )
        body = script.body()
        assert (body["do_collect"], body["do_write"], body["alt_caller_id"]) == (0, "true", "rebill")
        assert body["optional_transaction_qualifiers"] == [{"qualifier_name": "run_id", "qualifier_value": "R-42"}]
        assert body["rb_comments"] == "Rate correction, run R-42"

    def test_a_dry_run_and_collecting(self) -> None:
        script = Script(ok(invoice_no=None, amount="91.09"))
        assert rebill(client_for(script), do_write=False, do_collect=True).invoice_no is None
        assert (script.body()["do_write"], script.body()["do_collect"]) == ("false", 1)

    def test_form_bodies_carry_arrays_as_json_text(self) -> None:
        script = Script(ok(invoice_no=52000010))
        rebill(client_for(script, form_bodies=True))
        body = script.body()
        assert json.loads(body["rb_line_items"], parse_float=Decimal)[0] == {
            "line_no": 1,
            "service_no": 10001,
            "rb_rate_per_unit": Decimal("0.125"),
        }
        assert (body["client_no"], body["do_collect"], body["rest_call"]) == ("7000123", "0", "gen_rb_m")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"line_items": []}, "at least one line item"),
            ({"line_items": list(reversed(LINES))}, "ascending line_no"),
            ({"line_items": [LINES[0], LINES[0]]}, "ascending line_no"),
            ({"alt_caller_id": "x" * 31}, "alt_caller_id is 31 characters"),
            ({"comments": "x" * 3001}, "comments is 3001"),
            ({"qualifiers": {"run_id": "R" * 101}}, "qualifier value is 101"),
        ],
    )
    def test_what_aria_would_refuse_is_refused_before_sending(self, options: dict[str, Any], message: str) -> None:
        script = Script()
        with pytest.raises(ValueError, match=message):
            rebill(client_for(script), **options)
        assert script.requests == []


class TestPaging:
    def test_advances_by_the_records_returned_until_the_total(self) -> None:
        script = Script(page([1, 2, 3], 7), page([4, 5, 6], 7), page([7], 7))
        pages = list(client_for(script).iter_invoice_pages(QUERY, page_size=500))
        assert [[h.invoice_no for h in p.invoice_details_m] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
        assert [script.body(i)["offset"] for i in range(3)] == [0, 3, 6]
        assert [p.starting_record for p in pages] == [0, 3, 6]
        assert [p.next_offset for p in pages] == [3, 6, 7]

    def test_stops_at_an_empty_page(self) -> None:
        script = Script(page([1, 2], 99), page([], 99))
        assert len(list(client_for(script).iter_invoice_pages(QUERY, page_size=2, start_offset=10))) == 1
        assert [script.body(i)["offset"] for i in range(2)] == [10, 12]

    def test_a_server_starting_record_is_kept(self) -> None:
        script = Script(page([1], 1, starting_record=5))
        assert client_for(script).get_invoice_information(QUERY, limit=10, offset=0).starting_record == 5

    def test_bad_limits(self) -> None:
        client = client_for(Script())
        with pytest.raises(ValueError, match="limit"):
            client.get_invoice_information(QUERY, limit=0)
        with pytest.raises(ValueError, match="offset"):
            client.get_invoice_information(QUERY, limit=1, offset=-1)


class TestSecrets:
    def test_never_in_a_repr(self) -> None:
        client = client_for(Script())
        assert AUTH_KEY not in repr(client)
        assert AUTH_KEY not in str(client)
        assert "7000123" in repr(client)

    def test_never_in_an_error_or_a_report_even_when_echoed(self) -> None:
        calls: list[ApiCall] = []
        script = Script(httpx.Response(200, json={"error_code": 1016, "error_msg": f"bad auth_key {AUTH_KEY}"}))
        with pytest.raises(AriaRefusedError) as caught:
            rebill(client_for(script, calls))
        assert AUTH_KEY not in str(caught.value)
        assert AUTH_KEY not in repr(caught.value)
        assert [call.outcome for call in calls] == [CallOutcome.PERMANENT]
        assert AUTH_KEY not in (calls[0].error or "")

    def test_a_transport_error_does_not_chain_the_request(self) -> None:
        def broken(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadError("connection reset", request=request)

        calls: list[ApiCall] = []
        with pytest.raises(ProviderUnavailable) as caught:
            rebill(client_for(Script(broken), calls))
        assert caught.value.may_have_applied
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__
        assert calls[0].outcome == CallOutcome.TRANSIENT

    def test_the_key_must_be_a_secret(self) -> None:
        with pytest.raises(TypeError, match="SecretStr"):
            AriaClient(
                base_url=BASE_URL,
                client_no=1,
                auth_key=AUTH_KEY,  # type: ignore[arg-type]  # a plain string on purpose
                transport=httpx.MockTransport(Script()),
                timeout=httpx.Timeout(5),
            )


class TestOutcomes:
    def test_a_dry_run_never_may_have_applied(self) -> None:
        script = Script(httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>"))
        with pytest.raises(ProviderUnavailable) as caught:
            rebill(client_for(script), do_write=False)
        assert not caught.value.may_have_applied

    def test_a_write_may_have(self) -> None:
        script = Script(httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>"))
        with pytest.raises(ProviderUnavailable) as caught:
            rebill(client_for(script))
        assert caught.value.may_have_applied

    def test_every_exchange_is_reported(self) -> None:
        calls: list[ApiCall] = []
        script = Script(page([1], 1), httpx.Response(200, json={"error_code": 3108}))
        client = client_for(script, calls)
        client.get_invoice_information(QUERY, limit=1)
        with pytest.raises(AriaBusyError):
            rebill(client)
        assert [(c.operation, c.outcome, c.status_code) for c in calls] == [
            ("get_invoice_information_m", CallOutcome.OK, 200),
            ("gen_rb_m", CallOutcome.TRANSIENT, 200),
        ]

    def test_an_unbounded_timeout_is_refused(self) -> None:
        with pytest.raises(ValueError, match="unbounded"):
            AriaClient(
                base_url=BASE_URL,
                client_no=1,
                auth_key=SecretStr("k"),
                transport=httpx.MockTransport(Script()),
                timeout=httpx.Timeout(None),
            )
