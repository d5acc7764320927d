"""What a refused request raises inside the simulator; the HTTP layer turns each into its status.

    SimError            400: malformed, unsupported, unknown id, too many ids, bad filter, code in use
    ├── Unauthorized    401: no ECI-ApiKey, or one the simulator does not know (a bearer token is none)
    ├── Forbidden       403: the key's user lacks BillsAndBatches (writes only)
    └── NotFound        404: unknown bill, batch, task or path

The message becomes `{"errors": [{"message": ...}]}`.
"""

from __future__ import annotations


class SimError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(SimError):
    status = 401


class Forbidden(SimError):
    status = 403


class NotFound(SimError):
    status = 404
