"""The client kit: the generic half of classifying, reading replies, and the channel to a tenant."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pydantic
import pytest
from pydantic import SecretStr

from orchestrator.adapters.providers.http import (
    NO_BODY,
    NOT_DECODED,
    ApiChannel,
    decode_json,
    decode_success,
    describe_validation_error,
    encode_json,
    outcome_of,
    parse_model,
    parse_retry_after,
    status_failure,
    success_payload,
    transport_failure,
)
from orchestrator.adapters.providers.tenant_limit import LimiterUnavailable, TenantLimiter
from orchestrator.domain.billing import ApiCall, CallOutcome
from orchestrator.domain.errors import (
    ProviderError,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)

NOW = datetime(2025, 9, 9, 12, 0, 0, tzinfo=UTC)
READ = "InvoiceSummary.get"
WRITE = "Invoice.ProcessCashReversal"
PLATFORM = "Acme"
BASE_URL = "https://acme.example"
KEY = "acme-secret-key"


@dataclass(frozen=True)
class Row:
    id: str
    expected: type[ProviderError]
    exc: BaseException
    operation: str = READ
    mutating: bool = False
    applied: bool = False
    says: tuple[str, ...] = ()


TRANSPORT_ROWS = [
    Row("connect-error", ProviderUnavailable, exc=httpx.ConnectError("Connection refused"), says=("connect",)),
    Row(
        "connect-error-on-write",
        ProviderUnavailable,
        operation=WRITE,
        mutating=True,
        exc=httpx.ConnectError("Connection refused"),
        applied=False,
    ),
    Row("connect-timeout", ProviderTimeout, exc=httpx.ConnectTimeout("timed out")),
    Row(
        "connect-timeout-on-write",
        ProviderTimeout,
        operation=WRITE,
        mutating=True,
        exc=httpx.ConnectTimeout("timed out"),
        applied=False,
    ),
    Row("pool-timeout-on-write", ProviderTimeout, operation=WRITE, mutating=True, exc=httpx.PoolTimeout("x")),
    Row("read-timeout-on-read", ProviderTimeout, exc=httpx.ReadTimeout("timed out"), applied=False),
    Row(
        "read-timeout-on-write",
        ProviderTimeout,
        operation=WRITE,
        mutating=True,
        exc=httpx.ReadTimeout("timed out"),
        applied=True,
        says=("settle by reading",),
    ),
    Row(
        "write-timeout-on-write",
        ProviderTimeout,
        operation=WRITE,
        mutating=True,
        exc=httpx.WriteTimeout("x"),
        applied=True,
    ),
    Row(
        "connection-dropped-on-write",
        ProviderUnavailable,
        operation=WRITE,
        mutating=True,
        exc=httpx.RemoteProtocolError("Server disconnected without sending a response."),
        applied=True,
    ),
    Row("connection-dropped-on-read", ProviderUnavailable, exc=httpx.ReadError("reset"), applied=False),
    Row("unsupported-scheme", ProviderProtocolError, exc=httpx.UnsupportedProtocol("ftp")),
]


class TestTransportFailure:
    @pytest.mark.parametrize("row", TRANSPORT_ROWS, ids=[row.id for row in TRANSPORT_ROWS])
    def test_table(self, row: Row) -> None:
        error = transport_failure(row.exc, operation=row.operation, mutating=row.mutating, platform=PLATFORM)
        assert type(error) is row.expected
        assert error.operation == row.operation
        assert error.status_code is None
        assert error.may_have_applied is row.applied
        assert str(error).startswith(row.operation)
        for fragment in row.says:
            assert fragment in str(error)

    def test_may_have_applied_is_never_set_for_reads(self) -> None:
        for row in TRANSPORT_ROWS:
            assert not transport_failure(row.exc, operation=READ, mutating=False, platform=PLATFORM).may_have_applied

    def test_names_the_platform(self) -> None:
        error = transport_failure(httpx.ConnectError("refused"), operation=READ, mutating=False, platform=PLATFORM)
        assert "cannot connect to Acme" in str(error)

    def test_an_unreachable_limiter_is_named_as_the_broker_not_the_platform(self) -> None:
        nothing_listens = TenantLimiter.from_url("redis://127.0.0.1:9/0", "k", max_concurrency=1, lease_seconds=5)
        try:
            with pytest.raises(LimiterUnavailable) as caught:
                nothing_listens.acquire(timeout=0.2)
        finally:
            nothing_listens.close()
        limiter_down = caught.value

        error = transport_failure(limiter_down, operation=WRITE, mutating=True, platform=PLATFORM)

        assert type(error) is ProviderUnavailable
        assert not error.may_have_applied
        assert "cannot connect to Acme" not in str(error)
        assert "not sent to Acme" in str(error)
        assert "broker's Redis" in str(error)
        assert "REBILL_BROKER_URL" in str(error)


class TestStatusFailure:
    def fail(
        self, status_code: int, *, mutating: bool = False, headers: Mapping[str, str] | None = None
    ) -> ProviderError:
        return status_failure(
            operation=WRITE if mutating else READ,
            platform=PLATFORM,
            mutating=mutating,
            status_code=status_code,
            headers=headers or {},
            detail=": the platform's own words",
            now=NOW,
        )

    def test_throttled_keeps_retry_after(self) -> None:
        error = self.fail(429, headers={"retry-after": "Tue, 09 Sep 2025 12:00:30 GMT"})
        assert isinstance(error, ProviderThrottled)
        assert error.retry_after == 30.0
        assert "throttled by Acme" in str(error)

    @pytest.mark.parametrize(("status", "applied"), [(500, True), (502, True), (504, True), (501, False), (503, False)])
    def test_a_server_error_on_a_write(self, status: int, applied: bool) -> None:
        error = self.fail(status, mutating=True)
        assert isinstance(error, ProviderUnavailable)
        assert error.may_have_applied is applied
        assert "the platform's own words" in str(error)
        assert ("settle by reading" in str(error)) is applied

    def test_a_refusal_carries_the_detail(self) -> None:
        error = self.fail(422)
        assert isinstance(error, ProviderRefused)
        assert str(error) == f"{READ}: refused by Acme (HTTP 422 Unprocessable Entity): the platform's own words"


def test_outcomes() -> None:
    assert outcome_of(None) is CallOutcome.OK
    assert outcome_of(ProviderThrottled("x")) is CallOutcome.TRANSIENT
    assert outcome_of(ProviderRefused("x")) is CallOutcome.PERMANENT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("2.5", 2.5),
        ("Tue, 09 Sep 2025 12:01:00 GMT", 60.0),
        ("not a date", None),
        ("-3", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


class TestReplies:
    def test_decode_success(self) -> None:
        assert decode_success(httpx.Response(500, content=b"{}")) is NOT_DECODED
        assert decode_success(httpx.Response(204)) is NO_BODY
        assert decode_success(httpx.Response(200, content=b"  ")) is NO_BODY
        assert decode_success(httpx.Response(200, content=b"<html>")) is NOT_DECODED
        assert decode_success(httpx.Response(200, content=b'\xef\xbb\xbf{"a": 1.10}')) == {"a": Decimal("1.10")}

    def payload(self, body: bytes, *, mutating: bool = False, **headers: str) -> Any:
        return success_payload(
            WRITE if mutating else READ,
            platform=PLATFORM,
            mutating=mutating,
            status_code=200,
            headers=headers,
            body=body,
        )

    def test_success_payload(self) -> None:
        assert self.payload(b"") is NO_BODY
        assert self.payload(b'{"amount": 95.00}') == {"amount": Decimal("95.00")}
        given = {"already": "decoded"}
        assert (
            success_payload(
                READ, platform=PLATFORM, mutating=False, status_code=200, headers={}, body=b"{}", payload=given
            )
            is given
        )

    def test_an_html_page_is_unusable_and_a_write_may_have_applied(self) -> None:
        with pytest.raises(ProviderProtocolError, match="HTML page instead of JSON \\('Sign In'\\)") as caught:
            self.payload(b"<html><title>Sign In</title></html>", mutating=True, **{"Content-Type": "text/html"})
        assert caught.value.may_have_applied is True
        assert "unusable reply from Acme (HTTP 200)" in str(caught.value)

    def test_truncated_json_is_unusable(self) -> None:
        with pytest.raises(ProviderProtocolError, match="truncated or malformed JSON") as caught:
            self.payload(b'{"amount": 9')
        assert caught.value.may_have_applied is False


class Invoice(pydantic.BaseModel):
    number: int
    amount: Decimal


class TestParseModel:
    def test_parses(self) -> None:
        parsed = parse_model(
            Invoice, {"number": "7", "amount": "9.50"}, operation=READ, platform=PLATFORM, mutating=False
        )
        assert parsed == Invoice(number=7, amount=Decimal("9.50"))

    def test_no_body(self) -> None:
        with pytest.raises(ProviderProtocolError, match="an empty body"):
            parse_model(Invoice, NO_BODY, operation=READ, platform=PLATFORM, mutating=False, status_code=200)

    def test_a_wrong_shape_names_the_fields_never_the_values(self) -> None:
        with pytest.raises(ProviderProtocolError, match="unexpected Invoice shape: number") as caught:
            parse_model(Invoice, {"number": "s3cret-value"}, operation=WRITE, platform=PLATFORM, mutating=True)
        assert "s3cret-value" not in str(caught.value)
        assert caught.value.may_have_applied is True

    def test_describe_counts_what_it_leaves_out(self) -> None:
        class Wide(pydantic.BaseModel):
            a: int
            b: int
            c: int
            d: int
            e: int

        with pytest.raises(pydantic.ValidationError) as caught:
            Wide.model_validate({})
        assert (
            describe_validation_error(caught.value)
            == "a: Field required; b: Field required; c: Field required (+2 more)"
        )


def classify(
    *, operation: str, mutating: bool, status_code: int, headers: Mapping[str, str], body: bytes, payload: Any
) -> ProviderError | None:
    """A platform's classify built on the kit: Acme says `{"error_code": n, "error_msg": ...}`."""
    if 200 <= status_code < 300:
        try:
            payload = success_payload(
                operation,
                platform=PLATFORM,
                mutating=mutating,
                status_code=status_code,
                headers=headers,
                body=body,
                payload=payload,
            )
        except ProviderProtocolError as error:
            return error
        if isinstance(payload, dict) and payload.get("error_code", 0) != 0:
            return ProviderRefused(f"{operation}: refused by Acme: {payload.get('error_msg')}", operation=operation)
        return None
    return status_failure(
        operation=operation, platform=PLATFORM, mutating=mutating, status_code=status_code, headers=headers
    )


def echo(payload: Any, status_code: int) -> Any:
    return payload


@dataclass
class FakeAcme:
    """Answers every request with `reply` (a response, or an exception to raise) and keeps the requests."""

    reply: httpx.Response | Exception = field(default_factory=lambda: httpx.Response(200, json={"error_code": 0}))
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


class LimitedTransport(httpx.MockTransport):
    """A transport with a `one_slot`, like the tenant limiter's."""

    def __init__(self, handler: FakeAcme) -> None:
        super().__init__(handler)
        self.slots_taken = 0

    @contextmanager
    def one_slot(self) -> Iterator[None]:
        self.slots_taken += 1
        yield


class TestApiChannel:
    @pytest.fixture
    def acme(self) -> FakeAcme:
        return FakeAcme()

    @pytest.fixture
    def calls(self) -> list[ApiCall]:
        return []

    @pytest.fixture
    def channel(self, acme: FakeAcme, calls: list[ApiCall]) -> ApiChannel:
        return ApiChannel(
            platform=PLATFORM,
            base_url=BASE_URL + "/",
            transport=httpx.MockTransport(acme),
            timeout=httpx.Timeout(5.0),
            classify=classify,
            observer=calls.append,
            secrets=lambda: (SecretStr(KEY), None),
        )

    def call(self, channel: ApiChannel, operation: str = READ, *, mutating: bool = False) -> Any:
        request = channel.request("POST", "/v1/core", headers={"Accept": "application/json"}, content=b"{}")
        return channel.call(operation, request, mutating=mutating, parse=echo)

    @pytest.mark.parametrize(
        "timeout",
        [None, httpx.Timeout(10, read=None), httpx.Timeout(10, connect=None), httpx.Timeout(10, pool=None)],
        ids=["none", "read-none", "connect-none", "pool-none"],
    )
    def test_refuses_an_unbounded_timeout(self, timeout: httpx.Timeout | None, acme: FakeAcme) -> None:
        with pytest.raises(ValueError, match="bound every phase"):
            ApiChannel(
                platform=PLATFORM,
                base_url=BASE_URL,
                transport=httpx.MockTransport(acme),
                timeout=httpx.Timeout(timeout),
                classify=classify,
            )

    def test_refuses_a_base_url_without_scheme(self, acme: FakeAcme) -> None:
        with pytest.raises(ValueError, match="http"):
            ApiChannel(
                platform=PLATFORM,
                base_url="acme.example",
                transport=httpx.MockTransport(acme),
                timeout=httpx.Timeout(5),
                classify=classify,
            )

    def test_a_call_is_sent_parsed_and_reported(
        self, channel: ApiChannel, acme: FakeAcme, calls: list[ApiCall]
    ) -> None:
        acme.reply = httpx.Response(200, json={"error_code": 0, "invoice_no": 7})
        assert self.call(channel, "gen_rb_m", mutating=True) == {"error_code": 0, "invoice_no": 7}
        (request,) = acme.requests
        assert str(request.url) == f"{BASE_URL}/v1/core"
        assert [(c.operation, c.outcome, c.status_code, c.error) for c in calls] == [
            ("gen_rb_m", CallOutcome.OK, 200, None)
        ]
        assert calls[0].latency_ms >= 0
        assert calls[0].started_at.tzinfo is not None

    def test_every_request_carries_the_timeout(self, channel: ApiChannel, acme: FakeAcme) -> None:
        # The transport reads it from the request: the tenant limit's slot wait is bounded by `pool`.
        self.call(channel)
        assert acme.requests[0].extensions["timeout"] == httpx.Timeout(5.0).as_dict()

    def test_the_platform_classify_decides(self, channel: ApiChannel, acme: FakeAcme, calls: list[ApiCall]) -> None:
        acme.reply = httpx.Response(200, json={"error_code": 1009, "error_msg": "account does not exist"})
        with pytest.raises(ProviderRefused, match="account does not exist"):
            self.call(channel)
        assert (calls[-1].outcome, calls[-1].status_code) == (CallOutcome.PERMANENT, 200)

    def test_a_parser_error_is_reported_and_raised(self, channel: ApiChannel, calls: list[ApiCall]) -> None:
        request = channel.request("GET", "/x", headers={})
        with pytest.raises(ProviderProtocolError, match="Invoice shape"):
            channel.call(
                READ,
                request,
                mutating=False,
                parse=lambda payload, status: parse_model(
                    Invoice, payload, operation=READ, platform=PLATFORM, mutating=False
                ),
            )
        assert calls[-1].outcome is CallOutcome.PERMANENT

    def test_a_transport_failure_is_classified_reported_and_chained(
        self, channel: ApiChannel, acme: FakeAcme, calls: list[ApiCall]
    ) -> None:
        acme.reply = httpx.ReadTimeout("timed out")
        with pytest.raises(ProviderTimeout) as caught:
            self.call(channel, WRITE, mutating=True)
        assert caught.value.may_have_applied is True
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        assert [(c.operation, c.outcome, c.status_code) for c in calls] == [(WRITE, CallOutcome.TRANSIENT, None)]

    def test_secrets_are_scrubbed_from_errors_and_reports(
        self, channel: ApiChannel, acme: FakeAcme, calls: list[ApiCall]
    ) -> None:
        acme.reply = httpx.Response(500, content=f"echo {KEY}".encode())
        with pytest.raises(ProviderUnavailable) as caught:
            channel.call(READ, channel.request("GET", "/x", headers={}), mutating=False, parse=echo)
        assert KEY not in str(caught.value)
        assert all(KEY not in (c.error or "") for c in calls)

    def test_a_failing_observer_does_not_break_the_call(self, acme: FakeAcme) -> None:
        def observer(call: ApiCall) -> None:
            raise RuntimeError("ledger down")

        channel = ApiChannel(
            platform=PLATFORM,
            base_url=BASE_URL,
            transport=httpx.MockTransport(acme),
            timeout=httpx.Timeout(5),
            classify=classify,
            observer=observer,
        )
        assert self.call(channel) == {"error_code": 0}

    def test_a_cookie_the_tenant_sets_is_sent_back(self, channel: ApiChannel, acme: FakeAcme) -> None:
        # Azure-hosted tenants pin a client to one server with an affinity cookie.
        acme.reply = httpx.Response(
            200, json={"error_code": 0}, headers={"Set-Cookie": "ARRAffinity=server-3; Path=/; HttpOnly"}
        )
        self.call(channel)
        self.call(channel)
        first, second = acme.requests
        assert "cookie" not in first.headers
        assert second.headers["Cookie"] == "ARRAffinity=server-3"

    def test_one_slot_reaches_a_limited_transport(self, acme: FakeAcme) -> None:
        transport = LimitedTransport(acme)
        channel = ApiChannel(
            platform=PLATFORM, base_url=BASE_URL, transport=transport, timeout=httpx.Timeout(5), classify=classify
        )
        with channel.one_slot():
            self.call(channel)
        assert transport.slots_taken == 1

    def test_one_slot_is_a_no_op_otherwise(self, channel: ApiChannel) -> None:
        with channel.one_slot():
            assert self.call(channel) == {"error_code": 0}

    def test_repr_shows_no_secret(self, channel: ApiChannel) -> None:
        assert repr(channel) == f"ApiChannel(platform='Acme', base_url={BASE_URL!r})"


class TestEncodeJson:
    def test_decimals_keep_their_exact_digits(self) -> None:
        body = {"rate": Decimal("44.100"), "units": Decimal(37), "tiny": Decimal("0.0005"), "items": [Decimal("-1.5")]}
        assert encode_json(body) == b'{"rate":44.100,"units":37,"tiny":0.0005,"items":[-1.5]}'

    def test_round_trips_exactly_through_the_decoder(self) -> None:
        body = {"a": 'x\u00e9"', "b": [1, True, None, (Decimal("0.125"),)], "c": {}}
        assert decode_json(encode_json(body)) == {"a": 'x\u00e9"', "b": [1, True, None, [Decimal("0.125")]], "c": {}}

    @pytest.mark.parametrize("value", [1.5, Decimal("NaN"), Decimal("Infinity"), {1: "x"}, {"x": object()}])
    def test_refuses_what_is_not_exact_json(self, value: Any) -> None:
        with pytest.raises((TypeError, ValueError)):
            encode_json(value)
