"""Ids bound to every log line written while a unit of work runs (run, item, invoice, task).

Services and tasks bind what they know; the log formatter (an adapter) reads `current()`. Values
are ids only: never bind a payload, a credential or a message body here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType

_NONE: Mapping[str, str] = MappingProxyType({})
_BOUND: ContextVar[Mapping[str, str]] = ContextVar("rebill_log_ids", default=_NONE)


def current() -> Mapping[str, str]:
    return _BOUND.get()


def bind(**ids: object) -> Token[Mapping[str, str]]:
    """Add ids to the current context; hand the token to `unbind` when the unit of work ends."""
    values = {name: str(value) for name, value in ids.items() if value is not None}
    return _BOUND.set({**_BOUND.get(), **values})


def unbind(token: Token[Mapping[str, str]]) -> None:
    _BOUND.reset(token)


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)
