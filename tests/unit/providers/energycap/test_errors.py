"""`classify` over the contract's error table: one row per case, including the key never being shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.adapters.providers.energycap.errors import BatchCodeInUse, classify, error_messages
from orchestrator.adapters.providers.http import decode_json
from orchestrator.domain.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderProtocolError,
    ProviderRefused,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)

NOW = datetime(2025, 10, 2, 12, 0, 0, tzinfo=UTC)
JSON = {"Content-Type": "application/json; charset=utf-8"}
HTML = {"Content-Type": "text/html"}
PAGE = b"<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body></body></html>"


def errors(*messages: str) -> bytes:
    return json.dumps({"errors": [{"message": m} for m in messages]}).encode()


def run(status: int, body: bytes = b"", headers: dict[str, str] | None = None, *, mutating: bool = False) -> Any:
    return classify(
        operation="bill.reverse" if mutating else "bill.list",
        mutating=mutating,
        status_code=status,
        headers=headers if headers is not None else JSON,
        body=body,
        now=NOW,
    )


# status, body, headers, mutating -> class, may_have_applied, retry_after, in the message
TABLE: list[tuple[int, bytes, dict[str, str], bool, type[ProviderError], bool, float | None, str]] = [
    (400, errors("Unknown bill id(s): 5."), JSON, True, ProviderRefused, False, None, "Unknown bill id(s): 5."),
    (400, errors("billIds may hold at most 1000 ids"), JSON, True, ProviderRefused, False, None, "at most 1000"),
    (400, errors("Invalid filter: bad"), JSON, False, ProviderRefused, False, None, "Invalid filter"),
    (400, b"", JSON, True, ProviderRefused, False, None, "HTTP 400"),
    (400, errors("Batch code 'RB-1' already exists."), JSON, True, BatchCodeInUse, False, None, "settle by reading"),
    (400, errors("The batch code is already in use"), JSON, True, BatchCodeInUse, False, None, "in use"),
    (400, errors("BatchCode must be unique"), JSON, True, BatchCodeInUse, False, None, "must be unique"),
    (400, errors("Duplicate batch code"), JSON, True, BatchCodeInUse, False, None, "Duplicate"),
    (400, errors("Batch not found"), JSON, True, ProviderRefused, False, None, "Batch not found"),
    (401, errors("Unauthorized"), JSON, False, ProviderAuthError, False, None, "REBILL_ENERGYCAP_API_KEY"),
    (403, b"", JSON, True, ProviderAuthError, False, None, "BillsAndBatches"),
    (404, errors("Task x was not found."), JSON, False, ProviderNotFound, False, None, "was not found"),
    (405, b"", JSON, False, ProviderRefused, False, None, "HTTP 405"),
    (408, b"", JSON, True, ProviderTimeout, False, None, "HTTP 408"),
    (409, errors("conflict"), JSON, True, ProviderRefused, False, None, "conflict"),
    (429, b"", {"Retry-After": "30"}, False, ProviderThrottled, False, 30.0, "retry after 30s"),
    (429, b"", {"Retry-After": "Thu, 02 Oct 2025 12:01:00 GMT"}, True, ProviderThrottled, False, 60.0, "429"),
    (429, b"", {}, True, ProviderThrottled, False, None, "429"),
    (500, PAGE, HTML, False, ProviderUnavailable, False, None, "'500 - Internal server error.'"),
    (500, PAGE, HTML, True, ProviderUnavailable, True, None, "settle by reading"),
    (500, b"", {}, True, ProviderUnavailable, True, None, "HTTP 500"),
    (502, b"<html>bad gateway</html>", HTML, False, ProviderUnavailable, False, None, "HTTP 502"),
    (502, b"<html>bad gateway</html>", HTML, True, ProviderUnavailable, True, None, "may have been applied"),
    (503, PAGE, {**HTML, "Retry-After": "5"}, False, ProviderUnavailable, False, 5.0, "HTTP 503"),
    (503, PAGE, {**HTML, "Retry-After": "5"}, True, ProviderUnavailable, True, 5.0, "settle by reading"),
    (504, b"", {}, True, ProviderUnavailable, True, None, "HTTP 504"),
    (504, b"", {}, False, ProviderUnavailable, False, None, "HTTP 504"),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "mutating", "kind", "applied", "retry_after", "says"),
    TABLE,
    ids=[f"{row[0]}-{'write' if row[3] else 'read'}-{row[4].__name__}-{n}" for n, row in enumerate(TABLE)],
)
def test_the_table(
    status: int,
    body: bytes,
    headers: dict[str, str],
    mutating: bool,
    kind: type[ProviderError],
    applied: bool,
    retry_after: float | None,
    says: str,
) -> None:
    error = run(status, body, headers, mutating=mutating)
    assert type(error) is kind
    assert error.may_have_applied is applied
    assert error.status_code == status
    assert getattr(error, "retry_after", None) == retry_after
    assert says in error.message
    assert error.operation == ("bill.reverse" if mutating else "bill.list")


class TestSuccess:
    @pytest.mark.parametrize("body", [b'{"selected": 1, "updated": 1}', b'"0b6f2c9e"', b"[]", b""])
    def test_json_or_no_body_is_usable(self, body: bytes) -> None:
        assert run(200, body) is None

    def test_an_already_decoded_body_is_not_decoded_again(self) -> None:
        assert (
            classify(
                operation="bill.list",
                status_code=200,
                headers=JSON,
                body=b"not json at all",
                payload=decode_json(b"[]"),
            )
            is None
        )

    @pytest.mark.parametrize(
        ("body", "headers", "what"),
        [
            (b"<html><head><title>Sign in</title></head></html>", HTML, "HTML page instead of JSON ('Sign in')"),
            (b'{"selected": 1, "upd', JSON, "truncated or malformed JSON"),
        ],
    )
    def test_a_2xx_that_is_not_json(self, body: bytes, headers: dict[str, str], what: str) -> None:
        read = run(200, body, headers)
        assert isinstance(read, ProviderProtocolError)
        assert what in read.message
        assert not read.may_have_applied
        write = run(200, body, headers, mutating=True)
        assert isinstance(write, ProviderProtocolError)
        assert write.may_have_applied


class TestAuth:
    def test_names_the_variable_never_a_key(self) -> None:
        error = run(401, errors("API key 'sk-live-123' is not valid"))
        assert isinstance(error, ProviderAuthError)
        assert "REBILL_ENERGYCAP_API_KEY" in error.message
        assert "sk-live-123" not in error.message

    def test_both_are_permanent(self) -> None:
        for status in (401, 403):
            error = run(status, mutating=True)
            assert isinstance(error, ProviderAuthError)
            assert not error.may_have_applied


class TestBatchCodeInUse:
    def test_is_a_refusal_the_caller_can_tell_apart(self) -> None:
        error = run(
            400, errors("Batch code 'RB-7F3A21C0-0001' already exists; batch codes must be unique."), mutating=True
        )
        assert isinstance(error, BatchCodeInUse)
        assert isinstance(error, ProviderRefused)
        assert "RB-7F3A21C0-0001" in error.message

    def test_only_a_400_says_so(self) -> None:
        assert type(run(409, errors("Batch code already exists"), mutating=True)) is ProviderRefused
        assert type(run(500, errors("Batch code already exists"), mutating=True)) is ProviderUnavailable


class TestErrorMessages:
    @pytest.mark.parametrize(
        ("body", "messages"),
        [
            (errors("a", "b"), ["a", "b"]),
            (b'{"message": "lone"}', ["lone"]),
            (b'{"errors": "not a list"}', []),
            (b"[1, 2]", []),
            (b"<html></html>", []),
            (b"", []),
        ],
    )
    def test_reads_what_there_is(self, body: bytes, messages: list[str]) -> None:
        assert error_messages(body) == messages
