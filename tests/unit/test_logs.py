"""Log lines: JSON with the bound ids, and no secret however it reaches the logger."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from orchestrator.adapters.logs import configure_logging
from orchestrator.services import logcontext

PASSWORD = "s3cret-Imis-pw"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("DEBUG", "json", secrets=(PASSWORD, "ops:flower-pw"), stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_ids(stream: io.StringIO) -> None:
    log = logging.getLogger("rebill.test")
    with logcontext.bound(run_id="r-1", task_id="t-1"), logcontext.bound(item_id=7, invoice_id="8158"):
        log.info("reversed %s", "8158")
    log.info("after")

    first, second = lines(stream)
    assert first["message"] == "reversed 8158"
    assert (first["run_id"], first["task_id"], first["item_id"], first["invoice_id"]) == ("r-1", "t-1", "7", "8158")
    assert first["level"] == "INFO"
    assert "run_id" not in second


@pytest.mark.parametrize(
    "emit",
    [
        lambda log: log.info("login with %s", PASSWORD),
        lambda log: log.warning("body: %s", {"username": "u", "password": PASSWORD}),
        lambda log: log.error("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"),
        lambda log: log.info('reply {"access_token": "tok-123456789", "expires_in": 1200}'),
        lambda log: log.info("broker redis://rebill:db-pass-42@redis:6379/0"),
        lambda log: log.info("flower auth ops:flower-pw"),
    ],
)
def test_secrets_never_reach_a_line(stream: io.StringIO, emit: Callable[[logging.Logger], None]) -> None:
    emit(logging.getLogger("rebill.test"))

    written = stream.getvalue()
    for secret in (PASSWORD, "eyJhbGciOiJIUzI1NiJ9.payload.sig", "tok-123456789", "db-pass-42", "flower-pw"):
        assert secret not in written
    assert "***" in written


def test_a_traceback_is_redacted_too(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"token refused for password={PASSWORD}")
    except RuntimeError:
        logging.getLogger("rebill.test").exception("failed")

    [line] = lines(stream)
    assert "RuntimeError" in str(line["exception"])
    assert PASSWORD not in stream.getvalue()


def test_text_format_shows_the_ids(stream: io.StringIO) -> None:
    out = io.StringIO()
    configure_logging("INFO", "text", stream=out)
    with logcontext.bound(run_id="r-9"):
        logging.getLogger("rebill.test").info("hello %s", PASSWORD)

    assert "[run_id=r-9] hello ***" in out.getvalue()
