"""Requests counted per operation, replies per status, and how many were in flight at once.

A platform's state holds one `RequestCounters` and merges `snapshot()` into its own counters; the
HTTP layer calls `started`/`finished` around every counted request. No HTTP here.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class RequestCounters:
    """Thread-safe; `reset()` zeroes everything but the requests still in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._responses: Counter[int] = Counter()
        self._in_flight = 0
        self._peak = 0

    def started(self, operation: str) -> None:
        with self._lock:
            self._requests[operation] += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)

    def finished(self, status: int | None) -> None:
        """`status` is None when no reply was sent (the client went away, the server stopped)."""
        with self._lock:
            self._in_flight -= 1
            if status is not None:
                self._responses[status] += 1

    def snapshot(self) -> dict[str, Any]:
        """`requests` per operation, `responses` per status (as strings), `peak_concurrency`, `in_flight`."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "responses": {str(code): n for code, n in sorted(self._responses.items())},
                "peak_concurrency": self._peak,
                "in_flight": self._in_flight,
            }

    def reset(self) -> None:
        """Zero the counts; the peak restarts from the requests still in flight."""
        with self._lock:
            self._requests.clear()
            self._responses.clear()
            self._peak = self._in_flight
