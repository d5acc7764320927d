"""What a refused request raises inside the iMIS simulator; `app.py` turns each into its answer.

    SimError            400; `field` names the offending request field
    ├── NotFound        404: an unknown invoice, billing log, batch or task
    ├── Conflict        409: a key or number already taken, a billing log in use by a running task
    ├── BadRequest      400: the request itself is malformed
    ├── Refused         a business refusal: 200 `IsSuccessStatusCode: false`, or 400 per `refusal_style`
    └── InvalidGrant    400 `invalid_grant`: bad credentials at /token

The message is the one the API answers with.
"""

from __future__ import annotations


class SimError(Exception):
    """Base of the errors the HTTP layer translates; `field` names the offending request field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(SimError):
    """404."""


class Conflict(SimError):
    """409."""


class BadRequest(SimError):
    """400: the request itself is malformed."""


class Refused(SimError):
    """A business refusal: HTTP 200 `IsSuccessStatusCode: false` or 400, per `refusal_style`."""


class InvalidGrant(SimError):
    """Bad credentials at /token."""
