"""Celery as the broker adapter: the configuration every process shares, a producer app for sending,
and the `Dispatcher` port (task names and ids only, never payloads or credentials).

Celery: JSON, late acks, bounded prefetch, ids-only messages, no result backend.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestrator.adapters.broker import redis_transport

PLAN_RUN = "rebill.plan_run"
REVERSE_CHUNK = "rebill.reverse_chunk"
SUBMIT_REBILL = "rebill.submit_rebill"
POLL_RUN = "rebill.poll_run"
RECONCILE = "rebill.reconcile"
FIRE_SCHEDULE = "rebill.fire_schedule"

#: What each task's positional arguments are (ids only), for logs and Flower.
TASK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    PLAN_RUN: ("run_id",),
    REVERSE_CHUNK: ("run_id", "chunk_id"),
    SUBMIT_REBILL: ("run_id",),
    POLL_RUN: ("run_id",),
    RECONCILE: (),
    FIRE_SCHEDULE: ("schedule", "slot"),
}


def reconcile_entry(interval_seconds: float) -> dict[str, Any]:
    """The beat entry that runs the reconciler (also run inside every worker)."""
    return {RECONCILE: {"task": RECONCILE, "schedule": interval_seconds}}


def celery_config(
    broker_url: str, *, queue: str, visibility_timeout_seconds: int, reconcile_interval_seconds: float
) -> dict[str, Any]:
    redis_transport.install()  # every app of ours is configured here, before its first connection
    visibility = visibility_timeout_seconds
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker outlives a broker outage
        "broker_transport_options": {"visibility_timeout": visibility},
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": queue,
        "task_acks_late": True,
        # A worker killed mid-task gives its message back; the ledger bounds how often that may happen.
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "enable_utc": True,
        "beat_schedule": reconcile_entry(reconcile_interval_seconds),
    }


def producer_app(config: dict[str, Any]) -> Celery:
    """A separate app for sending only: its connection pool belongs to this configuration alone."""
    sender = Celery("rebill-producer", set_as_current=False)
    sender.conf.update(config)
    return sender


class CeleryDispatcher:
    """The Dispatcher port on Celery."""

    def __init__(self, app: Celery, *, queue: str, max_countdown_seconds: float) -> None:
        self._app = app
        self._queue = queue
        self._max_countdown = max_countdown_seconds

    def _send(self, name: str, args: list[object], countdown: float) -> None:
        countdown = min(max(0.0, countdown), self._max_countdown)
        self._app.send_task(name, args=args, countdown=countdown or None, queue=self._queue)

    def plan(self, run_id: str) -> None:
        self._send(PLAN_RUN, [run_id], 0)

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None:
        self._send(REVERSE_CHUNK, [run_id, chunk_id], countdown)

    def rebill(self, run_id: str, *, countdown: float = 0) -> None:
        self._send(SUBMIT_REBILL, [run_id], countdown)

    def poll(self, run_id: str, *, countdown: float = 0) -> None:
        self._send(POLL_RUN, [run_id], countdown)
