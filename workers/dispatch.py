"""The Dispatcher port on Celery: task names and ids only, never payloads or credentials."""

from __future__ import annotations

from celery import Celery


class CeleryDispatcher:
    def __init__(self, app: Celery, *, queue: str, max_countdown_seconds: float) -> None:
        self._app = app
        self._queue = queue
        self._max_countdown = max_countdown_seconds

    def _send(self, name: str, args: list[object], countdown: float) -> None:
        countdown = min(max(0.0, countdown), self._max_countdown)
        self._app.send_task(name, args=args, countdown=countdown or None, queue=self._queue)

    def plan(self, run_id: str) -> None:
        self._send("rebill.plan_run", [run_id], 0)

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None:
        self._send("rebill.reverse_chunk", [run_id, chunk_id], countdown)

    def rebill(self, run_id: str, *, countdown: float = 0) -> None:
        self._send("rebill.submit_rebill", [run_id], countdown)

    def poll(self, run_id: str, *, countdown: float = 0) -> None:
        self._send("rebill.poll_run", [run_id], countdown)
