"""The simulators' HTTP vocabulary: a request, a reply, a route, and JSON in and out.

No ASGI and no sockets here (that is `app.py` and `server.py`): a platform's routes and handlers are
written against these small values only.
"""

from __future__ import annotations

import json
import operator
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from pydantic import ValidationError

JSON = "application/json; charset=utf-8"
HTML = "text/html; charset=utf-8"

Headers = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str  # still percent-encoded, without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Headers = ()


#: A route's handler: the request and the path parameters the route captured.
Handler = Callable[[Request, tuple[str, ...]], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes. `operation` names it in the counters and fault settings (None: an admin
    route, never counted, faulted or authenticated); `auth` asks the app to authenticate first;
    `api` False marks an authentication endpoint (`/token`), faulted only when named in
    `fault_operations`."""

    operation: str | None
    handler: Handler
    params: tuple[str, ...] = ()
    auth: bool = True
    api: bool = True


@dataclass(frozen=True, slots=True)
class PathParts:
    """A request path split once: `raw` segments (percent-encoded), `decoded`, and `lowered` for matching."""

    raw: list[str]
    decoded: list[str]
    lowered: list[str]

    @classmethod
    def of(cls, raw_path: str) -> PathParts:
        raw = [segment for segment in raw_path.split("/") if segment]
        decoded = [unquote(segment) for segment in raw]
        return cls(raw, decoded, [segment.lower() for segment in decoded])


class InvalidBody(ValueError):
    """A request body that is not the JSON asked for; the app answers 400 with `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# A Decimal is first encoded as a string "\0<nonce>:<digits>\0", then the quotes and markers are
# removed. The per-process nonce keeps a client-supplied string from ever looking like a marker.
_NONCE = secrets.token_hex(8)
_DECIMAL_MARK = re.compile(r'"\\u0000' + _NONCE + r':(-?[0-9.]+)\\u0000"')
#: What replaces a marker: its digits (a C call per match, where a template is expanded in Python).
_MARKED_DIGITS = operator.methodcaller("group", 1)


def dumps(obj: Any, *, render_datetime: Callable[[datetime], object] = datetime.isoformat) -> bytes:
    """Compact JSON bytes; Decimals become bare numbers with their exact digits, sets and tuples lists."""

    def default(value: object) -> object:
        if isinstance(value, Decimal):
            return f"\x00{_NONCE}:{value}\x00"
        if isinstance(value, datetime):
            return render_datetime(value)
        if isinstance(value, set | frozenset | tuple):
            return list(value)
        raise TypeError(f"cannot encode {type(value).__name__}")

    text = json.dumps(obj, default=default, separators=(",", ":"))
    if "\\u0000" in text:
        text = _DECIMAL_MARK.sub(_MARKED_DIGITS, text)
    return text.encode()


def json_reply(status: int, payload: Any, headers: Headers = ()) -> Reply:
    return Reply(status, dumps(payload), JSON, headers)


def load_json(body: bytes) -> Any:
    """A request body as JSON, numbers with a fraction as `Decimal`; raises `InvalidBody`."""
    if not body.strip():
        raise InvalidBody("The request body is empty.")
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidBody(f"The request body is not valid JSON: {exc}") from None


def decimals_to_floats(value: Any) -> Any:
    """Decimals from `load_json` back to plain numbers, for pydantic models of floats (admin bodies)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: decimals_to_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decimals_to_floats(v) for v in value]
    return value


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and what for each error of an admin body, for a 400 reply."""
    return [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
