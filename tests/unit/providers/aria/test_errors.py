"""The classification table: every error code of the contract, and the typed error it becomes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator.adapters.providers.aria.errors import (
    AriaAuthError,
    AriaBusyError,
    AriaCode,
    AriaNotFoundError,
    AriaRefusedError,
    AriaUnexpectedError,
    classify_error_code,
    error_code_of,
)
from orchestrator.domain.errors import (
    PermanentProviderError,
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRefused,
    ProviderThrottled,
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
    assert len(error.message) < 400


def test_transport_errors_carry_no_code() -> None:
    assert error_code_of(ProviderUnavailable("reset")) is None
