"""Who may see the web view: HTTP basic auth from REBILL_WEB_BASIC_AUTH, or nobody but this machine.

The rules: with credentials set, every request must carry them (compared in constant time). Without
them the view refuses to start, unless it is bound to a loopback address (127.0.0.1 or ::1) and the
operator said `--insecure-local`. The credentials never appear in a log line or an error.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from orchestrator.domain.errors import ConfigurationError

__all__ = ["LOOPBACK_ADDRESSES", "BasicAuth", "BasicAuthMiddleware", "web_auth"]

LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class BasicAuth:
    """`user:password`, checked in constant time. Its repr shows neither."""

    _expected: bytes = field(repr=False)

    @classmethod
    def parse(cls, secret: SecretStr) -> BasicAuth:
        user, colon, password = secret.get_secret_value().partition(":")
        if not colon or not user or not password:
            raise ConfigurationError("REBILL_WEB_BASIC_AUTH must be user:password, both non-empty")
        return cls(f"{user}:{password}".encode())

    def allows(self, authorization: str | None) -> bool:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)


def web_auth(secret: SecretStr | None, *, address: str, insecure_local: bool) -> BasicAuth | None:
    """The credentials to require, or None when the operator chose an open view on loopback."""
    if secret is not None and secret.get_secret_value():
        return BasicAuth.parse(secret)
    if not insecure_local:
        raise ConfigurationError(
            "REBILL_WEB_BASIC_AUTH must be set to user:password to start the web view "
            "(or bind it to 127.0.0.1 with --insecure-local)"
        )
    if address not in LOOPBACK_ADDRESSES:
        raise ConfigurationError(
            f"--insecure-local serves the view without a password: only on 127.0.0.1 or ::1, not on {address}"
        )
    return None


class BasicAuthMiddleware:
    """Answers 401 to any HTTP request without the credentials."""

    def __init__(self, app: ASGIApp, auth: BasicAuth) -> None:
        self._app = app
        self._auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        authorization = headers.get(b"authorization")
        if self._auth.allows(authorization.decode("latin-1") if authorization else None):
            await self._app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", b'Basic realm="rebill", charset="UTF-8"'),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"authentication required\n"})
