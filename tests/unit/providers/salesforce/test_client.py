"""SalesforceClient against a scripted org (an `httpx.MockTransport` handler written here): the replies the
simulator never gives, the exact requests sent, and secrets kept out of everything."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.salesforce import CredentialsRejected, SalesforceClient
from orchestrator.adapters.providers.salesforce.soql import INVOICE, count, eq, select
from orchestrator.adapters.providers.salesforce.wire import ApiUsage
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import ProviderAuthError, ProviderProtocolError, ProviderRefused, ProviderUnavailable

BASE_URL = "https://acme.my.salesforce.com"
CLIENT_ID = "3MVG9-client"
SECRET = "c0nsumer-S3cret-value"
DATA = "/services/data/v62.0"

Handler = Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any, usage: str | None = "api-usage=7/100") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if usage is not None:
        headers["Sforce-Limit-Info"] = usage
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def page(records: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": 3, "done": next_url is None, "records": records}
    if next_url is not None:
        body["nextRecordsUrl"] = next_url
    return body


@dataclass
class FakeOrg:
    """Issues tokens `tok-1`, `tok-2`, ...; routes `(method, path)`; records every request."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    tokens_issued: int = 0
    rejected: set[str] = field(default_factory=set)
    token_reply: httpx.Response | None = None  # instead of a token
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, method: str, path: str, handler: Handler | httpx.Response) -> None:
        self.routes[(method, path)] = handler if callable(handler) else (lambda _: handler)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        if request.url.path == "/services/oauth2/token" and self.token_reply is not None:
            return self.token_reply
        if request.url.path == "/services/oauth2/token":
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            if form != {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}:
                return reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"}, None)
            with self.lock:
                self.tokens_issued += 1
                token = f"tok-{self.tokens_issued}"
            return reply(
                200, {"access_token": token, "instance_url": "https://elsewhere.example", "token_type": "Bearer"}, None
            )
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not bearer.startswith("tok-") or bearer in self.rejected:
            return reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return reply(404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])
        return handler(request)

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/services/oauth2/token"]


@pytest.fixture
def org() -> FakeOrg:
    return FakeOrg()


@pytest.fixture
def calls() -> list[ApiCall]:
    return []


@pytest.fixture
def client(org: FakeOrg, calls: list[ApiCall]) -> SalesforceClient:
    return SalesforceClient(
        base_url=BASE_URL,
        client_id=CLIENT_ID,
        client_secret=SecretStr(SECRET),
        transport=httpx.MockTransport(org),
        timeout=httpx.Timeout(5.0),
        observer=calls.append,
    )


class TestConstruction:
    def test_refuses_a_plain_secret_an_odd_version_and_an_unbounded_timeout(self, org: FakeOrg) -> None:
        options: dict[str, Any] = {
            "base_url": BASE_URL,
            "client_id": CLIENT_ID,
            "client_secret": SecretStr(SECRET),
            "transport": httpx.MockTransport(org),
            "timeout": httpx.Timeout(5.0),
        }
        with pytest.raises(TypeError):
            SalesforceClient(**{**options, "client_secret": SECRET})
        with pytest.raises(ValueError, match=r"v62\.0"):
            SalesforceClient(**{**options, "api_version": "62"})
        with pytest.raises(ValueError, match="unbounded"):
            SalesforceClient(**{**options, "timeout": httpx.Timeout(None)})

    def test_repr_names_the_org_not_the_secret(self, client: SalesforceClient) -> None:
        assert repr(client) == f"SalesforceClient(base_url='{BASE_URL}', client_id='{CLIENT_ID}')"
        assert SECRET not in str(client)


class TestRequests:
    def test_token_once_then_bearer_on_every_call_to_the_configured_url(
        self, client: SalesforceClient, org: FakeOrg
    ) -> None:
        org.route("GET", f"{DATA}/query", reply(200, {"totalSize": 2, "done": True, "records": []}))
        assert client.count(count(INVOICE)) == 2
        assert client.count(count(INVOICE)) == 2
        assert org.tokens_issued == 1
        token_request = org.requests[0]
        assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        for request in org.api_requests():
            assert request.url.host == "acme.my.salesforce.com"  # instance_url is not followed
            assert request.headers["Authorization"] == "Bearer tok-1"
            assert request.url.params["q"] == "SELECT COUNT() FROM Invoice"
            assert request.extensions["timeout"]["read"] == 5.0

    def test_void_encodes_the_id_and_sends_no_body(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route("POST", f"{DATA}/commerce/invoicing/invoices/3tt/x/actions/void", reply(200, {"success": True}))
        client.void("3tt/x")  # url.path is decoded; raw_path shows the id stayed one segment
        [request] = org.api_requests()
        assert request.url.raw_path == f"{DATA}/commerce/invoicing/invoices/3tt%2Fx/actions/void".encode()
        assert request.content == b""

    def test_generate_body(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route(
            "POST", f"{DATA}/commerce/invoicing/invoices/collection/actions/generate", reply(200, {"success": True})
        )
        client.generate(["44bA", "44bB"], correlation_id="run-7/generate/0001", invoice_date=date(2025, 12, 1),
                        target_date=date(2025, 12, 2), action="Draft")  # fmt: skip
        [request] = org.api_requests()
        assert json.loads(request.content) == {
            "billingScheduleIds": ["44bA", "44bB"],
            "action": "Draft",
            "invoiceDate": "2025-12-01",
            "targetDate": "2025-12-02",
            "correlationId": "run-7/generate/0001",
        }
        assert request.headers["Content-Type"] == "application/json"

    @pytest.mark.parametrize(
        ("ids", "correlation_id"),
        [([], "c"), (["a", "a"], "c"), ([f"44b{i}" for i in range(201)], "c"), (["a"], ""), (["a"], "x" * 256)],
    )
    def test_generate_refuses_locally_what_the_org_would(
        self, client: SalesforceClient, org: FakeOrg, ids: list[str], correlation_id: str
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the cases differ; none reaches the org
            client.generate(
                ids, correlation_id=correlation_id, invoice_date=date(2025, 1, 1), target_date=date(2025, 1, 1)
            )
        assert org.requests == []


class TestPaging:
    def test_follows_relative_and_same_org_absolute_urls(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route("GET", f"{DATA}/query", reply(200, page([{"Id": "a"}], f"{DATA}/query/01g-1")))
        org.route("GET", f"{DATA}/query/01g-1", reply(200, page([{"Id": "b"}], f"{BASE_URL}{DATA}/query/01g-2")))
        org.route("GET", f"{DATA}/query/01g-2", reply(200, page([{"Id": "c"}])))
        assert [r.Id for r in client.records(select(INVOICE, "Id"))] == ["a", "b", "c"]

    def test_resumes_from_a_kept_next_records_url(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route("GET", f"{DATA}/query/01g-2", reply(200, page([{"Id": "c"}])))
        pages = list(client.query(select(INVOICE, "Id"), resume_from=f"{DATA}/query/01g-2"))
        assert [[r.Id for r in p.records] for p in pages] == [["c"]]

    @pytest.mark.parametrize(
        "next_url",
        [
            "https://evil.example/services/data/v62.0/query/01g-1",
            "/elsewhere/01g-1",
            "/services/data/v62.0/query/../../oauth2/token",
            "/services/data/v62.0/sobjects/Invoice/3tt",
            "/services/data/v62.0/query/01g-1?q=x",
        ],
    )
    def test_never_follows_a_url_out_of_the_api(self, client: SalesforceClient, org: FakeOrg, next_url: str) -> None:
        org.route("GET", f"{DATA}/query", reply(200, page([{"Id": "a"}], next_url)))
        pages = client.query(select(INVOICE, "Id"))
        next(pages)
        with pytest.raises(ProviderProtocolError, match="not followed"):
            next(pages)
        assert all(r.url.host == "acme.my.salesforce.com" for r in org.requests)

    def test_not_done_without_a_next_url_is_a_protocol_error(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route("GET", f"{DATA}/query", reply(200, {"totalSize": 9, "done": False, "records": []}))
        with pytest.raises(ProviderProtocolError, match="nextRecordsUrl"):
            list(client.query(select(INVOICE, "Id")))


class TestSessionsAndSecrets:
    def test_a_401_gets_one_new_token_and_one_repeat(
        self, client: SalesforceClient, org: FakeOrg, calls: list[ApiCall]
    ) -> None:
        org.route("POST", f"{DATA}/commerce/invoicing/invoices/3tt/actions/void", reply(200, {"success": True}))
        client.void("3tt")
        org.rejected.add("tok-1")
        client.void("3tt")
        assert org.tokens_issued == 2
        assert [(c.operation, c.status_code, c.outcome) for c in calls] == [
            ("token", 200, CallOutcome.OK),
            ("void", 200, CallOutcome.OK),
            ("void", 401, CallOutcome.TRANSIENT),
            ("token", 200, CallOutcome.OK),
            ("void", 200, CallOutcome.OK),
        ]
        assert "repeating once" in (calls[2].error or "")

    def test_a_second_401_is_permanent(self, client: SalesforceClient, org: FakeOrg) -> None:
        org.route("GET", f"{DATA}/query", lambda _: reply(401, [{"errorCode": "INVALID_SESSION_ID", "message": "no"}]))
        with pytest.raises(ProviderAuthError):
            client.count(count(INVOICE))
        assert org.tokens_issued == 2

    def test_rejected_credentials_name_the_settings_and_never_the_secret(
        self, org: FakeOrg, calls: list[ApiCall]
    ) -> None:
        client = SalesforceClient(
            base_url=BASE_URL,
            client_id=CLIENT_ID,
            client_secret=SecretStr("wrong-" + SECRET),
            transport=httpx.MockTransport(org),
            timeout=httpx.Timeout(5.0),
            observer=calls.append,
        )
        with pytest.raises(CredentialsRejected) as rejected:
            client.void("3tt")
        assert "REBILL_SALESFORCE_CLIENT_SECRET" in str(rejected.value)
        assert SECRET not in repr(rejected.value)
        assert all(SECRET not in (c.error or "") for c in calls)

    def test_an_echoed_secret_or_token_is_scrubbed(
        self, client: SalesforceClient, org: FakeOrg, calls: list[ApiCall]
    ) -> None:
        def echo(request: httpx.Request) -> httpx.Response:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            return reply(400, [{"errorCode": "INVALID_INPUT", "message": f"bad {SECRET} and {token}-x"}])

        org.route("POST", f"{DATA}/commerce/invoicing/invoices/3tt/actions/void", echo)
        with pytest.raises(ProviderRefused) as refused:
            client.void("3tt")
        assert SECRET not in str(refused.value)
        assert "tok-1" not in str(refused.value)
        assert all(SECRET not in (c.error or "") and "tok-1" not in (c.error or "") for c in calls)

    def test_a_token_reply_without_a_token(self, org: FakeOrg, client: SalesforceClient) -> None:
        org.token_reply = reply(200, {"token_type": "Bearer", "note": "tok-leaked"}, None)
        with pytest.raises(ProviderProtocolError) as broken:
            client.void("3tt")
        assert "access_token" in str(broken.value)
        assert "tok-leaked" not in str(broken.value)

    def test_a_transport_failure_on_the_token_is_not_chained_to_the_request(self) -> None:
        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        client = SalesforceClient(
            base_url=BASE_URL,
            client_id=CLIENT_ID,
            client_secret=SecretStr(SECRET),
            transport=httpx.MockTransport(down),
            timeout=httpx.Timeout(5.0),
        )
        with pytest.raises(ProviderUnavailable) as failed:
            client.void("3tt")
        assert failed.value.__cause__ is None
        assert failed.value.__suppress_context__


class TestUsage:
    def test_latest_usage_from_any_reply(self, client: SalesforceClient, org: FakeOrg) -> None:
        before_any_reply = client.usage  # asserted by name: mypy would keep `client.usage` None past the calls
        assert before_any_reply is None
        org.route("GET", f"{DATA}/query", reply(200, {"totalSize": 1, "done": True, "records": []}, "api-usage=10/100"))
        client.count(count(INVOICE))
        assert client.usage == ApiUsage(used=10, allocation=100)
        org.route(
            "GET", f"{DATA}/query", reply(400, [{"errorCode": "INVALID_FIELD", "message": "x"}], "api-usage=11/100")
        )
        with pytest.raises(ProviderRefused):
            client.count(count(INVOICE).where(eq("Status", "Posted")))
        assert client.usage == ApiUsage(used=11, allocation=100)


class TestRecover:
    def test_no_result_is_a_protocol_error_that_may_have_applied(self, client: SalesforceClient, org: FakeOrg) -> None:
        path = f"{DATA}/commerce/invoicing/billing-schedules/collection/actions/recover"
        org.route("POST", path, reply(200, {"recoveryResults": []}))
        with pytest.raises(ProviderProtocolError) as broken:
            client.recover("44b")
        assert broken.value.may_have_applied
        [request] = org.api_requests()
        assert json.loads(request.content) == {"billingScheduleIds": ["44b"]}
