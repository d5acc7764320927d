"""The worker's Celery app: its tasks are registered on it; configured by `configure(settings)` from our
entry points (`rebill worker`, `rebill beat`, `rebill flower`), so importing it has no effects."""

from __future__ import annotations

from celery import Celery

from orchestrator.bootstrap import broker_config
from orchestrator.config import Settings

app = Celery("rebill", include=["workers.tasks"])


def configure(settings: Settings, broker_url: str) -> Celery:
    """Configure the app the worker runs, and its logs and metrics."""
    from workers import observability

    app.conf.update(broker_config(settings, broker_url))
    observability.install(app, settings)
    return app
