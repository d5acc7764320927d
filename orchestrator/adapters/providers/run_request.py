"""A run request's typed parts (a platform's selector and options), parsed into errors a user can act on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator.domain.errors import RunRefused

M = TypeVar("M", bound=BaseModel)


def parse_run_request(model: type[M], data: Mapping[str, Any], what: str) -> M:
    """The typed request, or RunRefused naming each field at fault (never echoing a whole value)."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        problems = []
        for issue in error.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in issue["loc"])
            message = str(issue["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if field else message)
        raise RunRefused(f"bad {what}: " + "; ".join(problems)) from None
