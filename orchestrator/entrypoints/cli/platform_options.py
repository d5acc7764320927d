"""The command line of `rebill run` for every platform, generated from each platform's typed selector
and options: a new platform's run options appear without touching the command line.

A field becomes `--field-name` (help from its description); a bool becomes `--x/--no-x`; a field may
name its own flag with `json_schema_extra={"cli": "--on/--off"}` (iMIS keeps its historic flags).
Fields several platforms share (same name, same type) are one option.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic.fields import FieldInfo

from orchestrator.adapters.providers.registry import PLATFORMS, Platform
from orchestrator.entrypoints.cli import params

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class PlatformField:
    platform: str
    name: str
    selector: bool  # part of what the run selects (else one of the platform's options)
    required: bool


def _bare(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """The click type of a field and whether it may be given several times."""
    bare = _bare(annotation)
    if typing.get_origin(bare) in (list, tuple):
        inner, _ = _click_type(typing.get_args(bare)[0])
        return inner, True
    if isinstance(bare, type) and issubclass(bare, enum.Enum):
        return params.ShortChoice([str(member.value) for member in bare]), False
    if bare is date:
        return params.ShortDate(), False
    if bare is Path:
        return click.Path(dir_okay=False, path_type=Path), False
    if bare in (int, float, str):
        return bare, False
    return str, False


def _flag(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, Mapping) and isinstance(extra.get("cli"), str):
        return str(extra["cli"])
    dashed = "--" + name.replace("_", "-")
    return f"{dashed}/--no-{name.replace('_', '-')}" if _bare(info.annotation) is bool else dashed


def fields_of(platform: Platform) -> Iterator[tuple[str, FieldInfo, bool]]:
    for model, selector in ((platform.selector, True), (platform.options, False)):
        for name, info in model.model_fields.items():
            yield name, info, selector


def platform_fields() -> dict[str, list[PlatformField]]:
    """Every field of every platform, by field name."""
    found: dict[str, list[PlatformField]] = {}
    for platform in PLATFORMS.values():
        for name, info, selector in fields_of(platform):
            found.setdefault(name, []).append(PlatformField(platform.name, name, selector, info.is_required()))
    return found


def platform_options(fn: F) -> F:
    """Decorate `run` with one option per platform field (shared fields once)."""
    seen: set[str] = set()
    options = []
    for platform in PLATFORMS.values():
        for name, info, _ in fields_of(platform):
            if name in seen:
                continue
            seen.add(name)
            owners = [p.platform for p in platform_fields()[name]]
            kind, multiple = _click_type(info.annotation)
            flag = _flag(name, info)
            help_text = f"[{', '.join(owners)}] {info.description or ''}".strip()
            if _bare(info.annotation) is bool:
                options.append(click.option(flag, name, default=None, help=help_text))
            else:
                options.append(click.option(flag, name, type=kind, multiple=multiple, default=None, help=help_text))
    for option in reversed(options):
        fn = option(fn)
    return fn


def given(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The platform fields the user gave (click passes None, or () for a multiple option, when not)."""
    fields = platform_fields()
    return {name: value for name, value in raw.items() if name in fields and value not in (None, ())}


def flag_of(platform: Platform, name: str) -> str:
    for field, info, _ in fields_of(platform):
        if field == name:
            return _flag(field, info).split("/")[0]
    return "--" + name.replace("_", "-")


def split_for(platform: Platform, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The given values as this platform's selector and options; a value of another platform is an error."""
    selector_fields = set(platform.selector.model_fields)
    option_fields = set(platform.options.model_fields)
    foreign = [name for name in values if name not in selector_fields | option_fields]
    if foreign:
        owners = platform_fields()
        described = ", ".join(
            f"{'--' + name.replace('_', '-')} ({'/'.join(p.platform for p in owners[name])})" for name in foreign
        )
        raise click.UsageError(f"not options of {platform.name}: {described}")
    missing = [
        name for name, info in platform.selector.model_fields.items() if info.is_required() and name not in values
    ]
    if missing:
        raise click.UsageError(
            f"{platform.name} needs {', '.join(flag_of(platform, name) for name in missing)} to select what to rebill"
        )
    selector = {name: _plain(value) for name, value in values.items() if name in selector_fields}
    options = {name: _plain(value) for name, value in values.items() if name in option_fields}
    return selector, options


def infer_platform(values: Mapping[str, Any]) -> str | None:
    """The one platform whose selector the given values belong to, when that is unambiguous."""
    candidates = {p.platform for name in values for p in platform_fields().get(name, []) if p.selector}
    return candidates.pop() if len(candidates) == 1 else None


def _plain(value: Any) -> Any:
    """Values as JSON keeps them (a date as its ISO text, a path as text, several values as a list)."""
    if isinstance(value, tuple):
        return [_plain(one) for one in value]
    if hasattr(value, "date") and callable(value.date):
        return value.date().isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def retry_options(fn: F) -> F:
    """Decorate `retry` with what each platform's retry may ask for (`Platform.retry_options`)."""
    options = []
    for platform in PLATFORMS.values():
        if platform.retry_options is None:
            continue
        for name, info in platform.retry_options.model_fields.items():
            help_text = f"[{platform.name}] {info.description or ''}".strip()
            if _bare(info.annotation) is bool:
                options.append(
                    click.option("--" + name.replace("_", "-"), name, is_flag=True, default=None, help=help_text)
                )
            else:
                kind, multiple = _click_type(info.annotation)
                options.append(
                    click.option("--" + name.replace("_", "-"), name, type=kind, multiple=multiple, help=help_text)
                )
    for option in reversed(options):
        fn = option(fn)
    return fn


def retry_asked(platform: Platform, raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator asked this platform's retry for; another platform's retry option is an error."""
    asked = {
        name: _plain(value)
        for other in PLATFORMS.values()
        if other.retry_options is not None
        for name in other.retry_options.model_fields
        if (value := raw.get(name)) not in (None, (), False)
    }
    mine = set(platform.retry_options.model_fields) if platform.retry_options is not None else set()
    foreign = sorted(set(asked) - mine)
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise click.UsageError(f"{flags}: not a retry option of {platform.name} runs")
    return asked
