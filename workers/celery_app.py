"""The Celery app: JSON, late acks, bounded prefetch, ids-only messages, no result backend.

The app object is configured by `configure(settings)` from our entry points (`rebill worker`,
`rebill beat`, `rebill flower`, and any process that dispatches), so importing it has no effects.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from orchestrator.config import Settings

app = Celery("rebill", include=["workers.tasks"])


def celery_config(settings: Settings, broker_url: str) -> dict[str, Any]:
    visibility = settings.visibility_timeout_seconds
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker outlives a broker outage
        "broker_transport_options": {"visibility_timeout": visibility},
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.queue,
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
        "beat_schedule": {
            "rebill.reconcile": {"task": "rebill.reconcile", "schedule": settings.reconcile_interval_seconds},
        },
    }


def configure(settings: Settings, broker_url: str) -> Celery:
    """Configure the app the worker runs (its tasks are registered on it), and its logs and metrics."""
    from workers import observability

    app.conf.update(celery_config(settings, broker_url))
    observability.install(app, settings)
    return app


def producer_app(settings: Settings, broker_url: str) -> Celery:
    """A separate app for sending only: its connection pool belongs to these settings alone."""
    sender = Celery("rebill-producer", set_as_current=False)
    sender.conf.update(celery_config(settings, broker_url))
    return sender
