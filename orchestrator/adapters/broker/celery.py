"""Celery as the broker adapter: the configuration every process shares, a producer app for sending,
the `Dispatcher` port (task names and ids only, never payloads or credentials), and what the command
line asks the broker (is it there, does any worker consume the queue).

Celery: JSON, late acks, bounded prefetch, ids-only messages, no result backend. Each message also
carries a readable `argsrepr` (`run 3acc12ef… chunk 142 (50 invoices)`), which is what Flower shows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from orchestrator.adapters.broker import redis_transport
from orchestrator.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

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


#: A chunk's number in its run and how many invoices it holds, for its label (None: unknown).
ChunkSizes = Callable[[int], tuple[int, int] | None]


def short_id(run_id: str) -> str:
    return f"{run_id[:8]}…"


class CeleryDispatcher:
    """The Dispatcher port on Celery. Messages carry ids only; `argsrepr` says in words what each is."""

    def __init__(
        self,
        app: Callable[[], Celery],
        *,
        queue: str,
        max_countdown_seconds: float,
        chunk_sizes: ChunkSizes | None = None,
    ) -> None:
        self._app = app  # built on the first message: a command that only reads never reaches the broker
        self._queue = queue
        self._max_countdown = max_countdown_seconds
        self._chunk_sizes = chunk_sizes

    def _send(self, name: str, args: list[object], countdown: float, label: str) -> None:
        countdown = min(max(0.0, countdown), self._max_countdown)
        self._app().send_task(
            name, args=args, countdown=countdown or None, queue=self._queue, argsrepr=label, kwargsrepr="{}"
        )

    def plan(self, run_id: str) -> None:
        self._send(PLAN_RUN, [run_id], 0, f"run {short_id(run_id)} planning")

    def reverse_chunk(self, run_id: str, chunk_id: int, *, countdown: float = 0) -> None:
        self._send(REVERSE_CHUNK, [run_id, chunk_id], countdown, f"run {short_id(run_id)} {self._chunk(chunk_id)}")

    def rebill(self, run_id: str, *, countdown: float = 0) -> None:
        self._send(SUBMIT_REBILL, [run_id], countdown, f"run {short_id(run_id)} follow-up (rebill)")

    def poll(self, run_id: str, *, countdown: float = 0) -> None:
        self._send(POLL_RUN, [run_id], countdown, f"run {short_id(run_id)} follow-up")

    def _chunk(self, chunk_id: int) -> str:
        """`chunk 142 (50 invoices)`: its number in the run, as operators count them."""
        try:
            found = self._chunk_sizes(chunk_id) if self._chunk_sizes is not None else None
        except Exception as error:  # a label is never worth a message not sent: fall back to the id
            log.debug("no label for chunk %s: %s", chunk_id, error)
            found = None
        if found is None:
            return f"chunk id {chunk_id}"
        seq, size = found
        return f"chunk {seq + 1} ({size} invoice{'s' if size != 1 else ''})"


class BrokerUnreachable(ConfigurationError):
    """The broker did not answer: named as the broker (never as the billing platform)."""


def shown_broker(url: str) -> str:
    """The broker's URL without its password."""
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


def check_broker(app: Celery, *, described: str, timeout: int = 5) -> None:
    """Connect once: BrokerUnreachable, saying where `described` points, when the broker does not answer."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
    except (OperationalError, OSError) as error:
        raise BrokerUnreachable(f"cannot reach the broker ({described}): {error}") from None


def queue_consumers(app: Celery, queue: str, *, timeout: float = 1.0) -> int:
    """How many workers answer, within `timeout`, that they consume `queue` (Celery's inspect).

    BrokerUnreachable when the broker cannot be asked."""
    try:
        replies = app.control.inspect(timeout=timeout).active_queues() or {}
    except (OperationalError, OSError) as error:
        raise BrokerUnreachable(f"cannot reach the broker: {error}") from None
    return sum(1 for queues in replies.values() if any(q.get("name") == queue for q in queues or ()))
