"""Small builders shared by the EnergyCAP simulator tests."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any

import httpx

from simulators.energycap.state import SELF_CONTAINED, ImportRequest, ReverseRequest

API_KEY = "sim-test-key"
READER_KEY = "reader-key"
OTHER_KEY = "other-key"
HEADER = "accountCode,meterCode,billingPeriod,beginDate,endDate,totalCost"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def reverse(
    ids: Sequence[int], code: str = "RB-TEST-0001", note: str | None = "run-1", **extra: object
) -> ReverseRequest:
    return ReverseRequest(tuple(ids), extra.pop("mode", SELF_CONTAINED), code, note, **extra)  # type: ignore[arg-type]  # ill-typed on purpose: refused as on the wire


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def import_request(csv_text: str, code: str = "RB-TEST-I1", **changes: object) -> ImportRequest:
    fields: dict[str, object] = {
        "batch_mode": SELF_CONTAINED,
        "batch_code": code,
        "data": b64(csv_text),
        "file_name": "corrected.csv",
        "note": "run-1",
    }
    fields.update(changes)
    return ImportRequest(**fields)  # type: ignore[arg-type]  # ill-typed on purpose: refused as on the wire


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def wait_for_task(client: httpx.Client, guid: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the task until it has ended (the served imports take a fraction of a second)."""
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = client.get(f"/api/v3/task/{guid}").json()
        if task["status"] in ("Completed", "Completed with kickouts", "Failed"):
            return task
        assert time.monotonic() < deadline, f"task {guid} still {task['status']}"
        time.sleep(0.02)
