"""Request bodies: JSON whose money goes out as numbers with its exact digits.

`json.dumps` cannot write a `Decimal` as a number, and turning one into a float first would round
it; `encode_json` writes the Decimal's own digits (`44.100`, `0.125`) and refuses floats outright,
so no binary float ever reaches a tenant's books.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["encode_json"]


def encode_json(value: Any) -> bytes:
    """Compact JSON bytes of dicts, lists, tuples, strings, ints, bools, None and finite Decimals."""
    return "".join(_encode(value)).encode()


def _encode(value: Any) -> Iterator[str]:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        yield str(value)
    elif isinstance(value, float):
        raise TypeError("send money and rates as Decimal, never float")
    elif isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
            yield ("," if index else "") + json.dumps(key) + ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _encode(item)
        yield "]"
    elif value is None or isinstance(value, str | int | bool):
        yield json.dumps(value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")
