"""Logging for every rebill process: text for people, JSON lines for machines, secrets never written.

`REBILL_LOG_FORMAT=json` writes one JSON object per line with the ids bound to the unit of work
(`run_id`, `chunk_id`, `item_id`, `invoice_id`, `task_id`, `task`: see `services.logcontext`).
Every record passes a redactor first: the secrets registered with `register_secret` (the iMIS
password, Flower's credentials) and anything shaped like a bearer token, a password field or an
access token are replaced by `***` in the message, its arguments and any traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Literal

from orchestrator.services import logcontext

__all__ = ["JsonFormatter", "Redactor", "configure_logging", "register_secret"]

MASK = "***"
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(
        r"""(?i)(["']?(?:access_token|refresh_token|password|passwd|secret|authorization)["']?\s*[:=]\s*["']?)[^\s"'&,;}]+"""
    ),
    re.compile(r"(?i)(://[^/\s:@]*:)[^@\s/]+(@)"),  # user:password@ in URLs
)
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def register_secret(value: str | None) -> None:
    """Never write `value` (or, for `user:password`, the password) in any log line."""
    if not value:
        return
    with _SECRETS_LOCK:
        for part in (value, value.partition(":")[2]):
            if len(part) >= 4:
                _SECRETS.add(part)


def redact(text: str) -> str:
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex and m.lastindex > 1 else ""), text)
    return text


class Redactor(logging.Filter):
    """Renders the message once, redacted, so no handler or formatter sees the raw arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we have
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # formatted (and redacted) above
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(logcontext.current())
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in line:
                line[name] = value if isinstance(value, str | int | float | bool) or value is None else str(value)
        line["process"] = record.process
        line["thread"] = record.threadName
        if record.exc_text:
            line["exception"] = record.exc_text
        return redact(json.dumps(line, default=str))


class TextFormatter(logging.Formatter):
    """`time level logger [ids] message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = logcontext.current()
        record.ids = (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]") if ids else ""
        return redact(super().format(record))


def configure_logging(
    level: str = "INFO",
    fmt: Literal["json", "text"] | str = "text",
    *,
    secrets: tuple[str | None, ...] = (),
    stream: Any = None,
    unless_configured: bool = False,
) -> None:
    """Replace the root logger's handlers with one redacting handler in the chosen format
    (`unless_configured`: leave a root logger that already has handlers alone, as basicConfig does)."""
    for secret in secrets:
        register_secret(secret)
    root = logging.getLogger()
    if unless_configured and root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redactor())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Celery's own loggers propagate to the root; keep chatty libraries at a useful level.
    for name in ("httpx", "httpcore", "hpack", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
