"""`rebill beat` and `rebill flower`: the same app and settings as the workers."""

from __future__ import annotations

from pathlib import Path

from orchestrator.bootstrap import Container
from orchestrator.domain.errors import ConfigurationError
from workers.celery_app import configure


def run_beat(container: Container, *, loglevel: str) -> None:
    """Celery beat: drives the reconciler on a schedule (and, later, scheduled billing cycles)."""
    settings = container.settings
    app = configure(settings, container.broker_url)
    schedule = Path(settings.data_dir) / "beat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={schedule}"])


def run_flower(container: Container, *, address: str, port: int) -> None:
    """Flower on the project's broker: basic auth required, read-only (no task can be sent or revoked)."""
    settings = container.settings
    if settings.flower_basic_auth is None or ":" not in settings.flower_basic_auth.get_secret_value():
        raise ConfigurationError("REBILL_FLOWER_BASIC_AUTH must be set to user:password to start Flower")
    app = configure(settings, container.broker_url)
    app.start(
        [
            "flower",
            f"--address={address}",
            f"--port={port}",
            f"--basic_auth={settings.flower_basic_auth.get_secret_value()}",
            "--read_only=True",
        ]
    )
