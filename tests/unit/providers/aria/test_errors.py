"""The classification table: every error code of the contract, and the typed error it becomes."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from orchestrator.adapters.providers.aria.errors import (
    AriaAuthError,
    AriaBusyError,
    AriaCode,
    AriaNotFoundError,
    AriaRefusedError,
    AriaUnexpectedError,
    classify,
    classify_error_code,
    error_code_of,
)
from orchestrator.adapters.providers.http import outcome_of
from orchestrator.domain.billing import CallOutcome
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    TransientProviderError,
)

WRITE = "gen_rb_m"
READ = "get_invoice_history_m"


@dataclass(frozen=True)
class Row:
    code: int
    expected: type[ProviderError]
    base: type[ProviderError]
    transient: bool = False
    applied_on_write: bool = False


TABLE = [
    Row(1001, AriaUnexpectedError, ProviderUnavailable, transient=True, applied_on_write=True),
    Row(1004, AriaAuthError, ProviderAuthError),
    Row(1009, AriaNotFoundError, ProviderNotFound),
    Row(1010, AriaRefusedError, ProviderRefused),
    Row(1012, AriaRefusedError, ProviderRefused),
    Row(1016, AriaRefusedError, ProviderRefused),
    Row(1024, AriaRefusedError, ProviderRefused),
    Row(1033, AriaRefusedError, ProviderRefused),
    Row(2003, AriaRefusedError, ProviderRefused),
    Row(3004, AriaNotFoundError, ProviderNotFound),
    Row(3024, AriaRefusedError, ProviderRefused),
    Row(3097, AriaRefusedError, ProviderRefused),
    Row(3108, AriaBusyError, ProviderThrottled, transient=True),
    Row(4242, AriaRefusedError, ProviderRefused),  # a code outside the table: never retried blindly
]


def test_the_table_covers_every_code_of_the_contract() -> None:
    assert {row.code for row in TABLE} >= {code.value for code in AriaCode if code != AriaCode.OK}


def test_zero_is_success() -> None:
    assert classify_error_code(WRITE, 0, "OK", mutating=True) is None


@pytest.mark.parametrize("row", TABLE, ids=lambda row: str(row.code))
@pytest.mark.parametrize("operation", [READ, WRITE])
def test_each_code(row: Row, operation: str) -> None:
    mutating = operation == WRITE
    error = classify_error_code(operation, row.code, "something went wrong", mutating=mutating)
    assert type(error) is row.expected
    assert isinstance(error, row.base)
    assert isinstance(error, TransientProviderError if row.transient else PermanentProviderError)
    assert error.may_have_applied is (row.applied_on_write and mutating)
    assert error_code_of(error) == row.code
    assert (error.operation, error.status_code) == (operation, 200)
    assert str(row.code) in error.message


def test_the_message_says_what_aria_said_or_what_the_code_means() -> None:
    said = classify_error_code(WRITE, 3097, "invoice already rebilled", mutating=True)
    assert said is not None
    assert "invoice already rebilled" in said.message
    unsaid = classify_error_code(WRITE, 3108, None, mutating=True)
    assert unsaid is not None
    assert "another invoice in progress for the same billing group" in unsaid.message
    assert "not applied" in unsaid.message


def test_a_write_with_1001_says_to_settle_by_reading() -> None:
    error = classify_error_code(WRITE, 1001, None, mutating=True)
    assert error is not None
    assert "settle by reading" in error.message


def test_authentication_never_echoes_what_aria_said() -> None:
    error = classify_error_code(READ, 1004, "auth_key s3cr3t-key is invalid", mutating=False)
    assert error is not None
    assert "s3cr3t" not in error.message


def test_a_long_message_is_clipped() -> None:
    error = classify_error_code(READ, 1016, "x" * 5000, mutating=False)
    assert error is not None
    assert len(error.message) < 600


def test_transport_errors_carry_no_code() -> None:
    assert error_code_of(ProviderUnavailable("reset")) is None


# --- whole exchanges: classify() over replies and transport faults ---------------------------------------

HTML_500 = b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head><body>oops</body></html>"
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
HTML = {"Content-Type": "text/html; charset=utf-8"}
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Exchange:
    id: str
    expected: type[ProviderError] | None
    applied: bool = False  # may_have_applied on gen_rb_m (never on a read)
    status_code: int | None = 200
    body: bytes = b""
    headers: dict[str, str] | None = None
    exc: BaseException | None = None
    code: int | None = None


REQUEST = httpx.Request("POST", "https://aria.example/v1/core")
EXCHANGES = [
    Exchange("ok", None, body=b'{"error_code": 0, "error_msg": "OK", "invoice_no": 52000010}'),
    Exchange("ok-as-string", None, body=b'{"error_code": "0"}'),
    Exchange("3097", AriaRefusedError, body=b'{"error_code": 3097, "error_msg": "already rebilled"}', code=3097),
    Exchange("3108-string", AriaBusyError, body=b'{"error_code": "3108", "error_msg": null}', code=3108),
    Exchange("1001", AriaUnexpectedError, applied=True, body=b'{"error_code": 1001}', code=1001),
    Exchange(
        "code-on-a-500", AriaUnexpectedError, applied=True, status_code=500, body=b'{"error_code": 1001}', code=1001
    ),
    Exchange("500-html", ProviderUnavailable, applied=True, status_code=500, body=HTML_500, headers=HTML),
    Exchange("502-html", ProviderUnavailable, applied=True, status_code=502, body=HTML_502, headers=HTML),
    Exchange("503", ProviderUnavailable, status_code=503, body=b"", headers={"Retry-After": "5"}),
    Exchange("504", ProviderUnavailable, applied=True, status_code=504, body=b"gateway timeout"),
    Exchange("429", ProviderThrottled, status_code=429, body=b"", headers={"Retry-After": "3"}),
    Exchange("404", ProviderNotFound, status_code=404, body=b"<html>not found</html>", headers=HTML),
    Exchange(
        "html-200", ProviderProtocolError, applied=True, body=b"<html><title>Sign in</title></html>", headers=HTML
    ),
    Exchange("truncated-200", ProviderProtocolError, applied=True, body=b'{"error_code": 0, "invoice_n', headers=JSON),
    Exchange("empty-200", ProviderProtocolError, applied=True, body=b""),
    Exchange("no-code-200", ProviderProtocolError, applied=True, body=b'{"invoice_no": 1}'),
    Exchange("bad-code-200", ProviderProtocolError, applied=True, body=b'{"error_code": "oops"}'),
    Exchange("list-200", ProviderProtocolError, applied=True, body=b"[]"),
    Exchange("connect-error", ProviderUnavailable, status_code=None, exc=httpx.ConnectError("refused")),
    Exchange("connect-timeout", ProviderTimeout, status_code=None, exc=httpx.ConnectTimeout("slow")),
    Exchange("read-timeout", ProviderTimeout, applied=True, status_code=None, exc=httpx.ReadTimeout("no reply")),
    Exchange("reset", ProviderUnavailable, applied=True, status_code=None, exc=httpx.RemoteProtocolError("reset")),
    Exchange("write-error", ProviderUnavailable, applied=True, status_code=None, exc=httpx.WriteError("broken pipe")),
]


@pytest.mark.parametrize("row", EXCHANGES, ids=lambda row: row.id)
@pytest.mark.parametrize("operation", [READ, WRITE])
def test_classify_each_exchange(row: Exchange, operation: str) -> None:
    mutating = operation == WRITE
    error = classify(
        operation=operation,
        mutating=mutating,
        status_code=row.status_code,
        headers=row.headers or {},
        body=row.body,
        exc=row.exc,
    )
    if row.expected is None:
        assert error is None
        return
    assert type(error) is row.expected
    assert error.may_have_applied is (row.applied and mutating)
    assert error_code_of(error) == row.code
    assert outcome_of(error) == (
        CallOutcome.TRANSIENT if isinstance(error, TransientProviderError) else CallOutcome.PERMANENT
    )


def test_a_decoded_payload_is_not_decoded_again() -> None:
    assert classify(operation=READ, status_code=200, body=b"not read", payload={"error_code": 3004}) is not None
    assert classify(operation=READ, status_code=200, body=b"not read", payload={"error_code": 0}) is None


def test_retry_after_is_kept_for_a_503() -> None:
    error = classify(operation=READ, status_code=503, headers={"Retry-After": "5"}, body=b"")
    assert isinstance(error, ProviderUnavailable)
    assert error.retry_after == 5


def test_an_html_page_is_named_by_its_title() -> None:
    error = classify(operation=WRITE, mutating=True, status_code=500, headers=HTML, body=HTML_500)
    assert error is not None
    assert "500 Internal Server Error" in error.message
    assert "settle by reading" in error.message


def test_classify_needs_a_reply_or_an_exception() -> None:
    with pytest.raises(ValueError, match="exc or status_code"):
        classify(operation=READ)
