"""Errors the orchestrator raises on purpose, and how callers must treat them.

    RebillError                       anything raised on purpose; its message is user-facing
    ├── ProviderError                 a billing platform call did not give what was asked
    │   ├── TransientProviderError    try again after a backoff (never before `retry_after`)
    │   │   ├── ProviderUnavailable   connect error, 500/502/503 (even an HTML page), 504
    │   │   ├── ProviderTimeout       the reply did not come in time
    │   │   ├── ProviderThrottled     429; `retry_after` carries the server's Retry-After
    │   │   └── ProviderPaused        the tenant's allowance is (nearly) spent: the run waits, saying why
    │   └── PermanentProviderError    the same call will fail the same way: record, do not retry
    │       ├── ProviderRefused       400/405/409 or `IsSuccessStatusCode: false` (business refusal)
    │       ├── ProviderNotFound      404
    │       ├── ProviderAuthError     bad credentials, or a 401 that survived one token refresh
    │       └── ProviderProtocolError the reply could not be parsed (HTML, truncated JSON)
    ├── ConfigurationError            a setting is missing or invalid; names the setting
    └── RunRefused                    a run cannot start or continue; says why (bad input, guard)

`may_have_applied` tells whether a write call could have taken effect although it failed (the
request left, the reply was lost). Such an outcome is settled by reading, never by sending again.
"""

from __future__ import annotations


class RebillError(Exception):
    """Base of every error raised on purpose; `str(error)` is fit to show a user."""


class ProviderError(RebillError):
    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status_code: int | None = None,
        may_have_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.status_code = status_code
        self.may_have_applied = may_have_applied

    def readable(self) -> str:
        """How the error is kept on an invoice: its kind and message, as a person reads them (the call
        that failed, with its operation and HTTP status, is kept beside it in the API call rows)."""
        return f"{type(self).__name__}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, operation={self.operation!r}, "
            f"status_code={self.status_code!r}, may_have_applied={self.may_have_applied!r})"
        )


class TransientProviderError(ProviderError):
    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status_code: int | None = None,
        may_have_applied: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status_code=status_code, may_have_applied=may_have_applied)
        self.retry_after = retry_after


class ProviderUnavailable(TransientProviderError):
    pass


class ProviderTimeout(TransientProviderError):
    pass


class ProviderThrottled(TransientProviderError):
    pass


class ProviderPaused(TransientProviderError):
    """Nothing more may be sent for a while (a daily allocation nearly spent); the message says why and
    is shown on the run until it moves on."""


class PermanentProviderError(ProviderError):
    pass


class ProviderRefused(PermanentProviderError):
    pass


class ProviderNotFound(PermanentProviderError):
    pass


class ProviderAuthError(PermanentProviderError):
    pass


class ProviderProtocolError(PermanentProviderError):
    pass


class ConfigurationError(RebillError):
    """A setting is missing or invalid. The message names the setting (e.g. REBILL_IMIS_BASE_URL)."""


class RunRefused(RebillError):
    """The run cannot start or go on; the message says why and what to do."""
