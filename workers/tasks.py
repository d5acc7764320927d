"""Thin tasks: explicit stable names, ids in, one service call, retries mapped from typed errors.

A transient provider error raised out of a service (planning, a follow-up tick, a schedule firing)
is retried with backoff and jitter, never before the server's Retry-After, at most
REBILL_TASK_MAX_RETRIES times; past that the reconciler picks the work up again from the ledger.
Per-invoice retries are not here: they are the items' own (RETRY_WAIT in the ledger).
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task

from orchestrator.adapters.broker.celery import (
    FIRE_SCHEDULE,
    PLAN_RUN,
    POLL_RUN,
    RECONCILE,
    REVERSE_CHUNK,
    SUBMIT_REBILL,
)
from orchestrator.domain.errors import TransientProviderError
from orchestrator.domain.run import retry_delay
from orchestrator.services import follow_up, planning, reconciler, reversal
from workers import schedule_task
from workers.celery_app import app
from workers.process import container, context


def _retry(task: Task[Any, Any], error: TransientProviderError) -> NoReturn:
    """Back off with jitter, never before the server's Retry-After; bounded by the settings."""
    settings = container().settings
    delay = retry_delay(
        task.request.retries + 1,
        base=settings.task_retry_backoff_seconds,
        cap=settings.task_retry_backoff_max_seconds,
        retry_after=error.retry_after,
    )
    raise task.retry(exc=error, countdown=delay, max_retries=settings.task_max_retries)


@app.task(name=PLAN_RUN, bind=True)
def plan_run(self: Task[Any, Any], run_id: str) -> None:
    try:
        planning.plan_run(context(), run_id)
    except TransientProviderError as error:
        _retry(self, error)


@app.task(name=REVERSE_CHUNK)
def reverse_chunk(run_id: str, chunk_id: int) -> None:
    reversal.process_chunk(context(), run_id, chunk_id)


@app.task(name=SUBMIT_REBILL)
def submit_rebill(run_id: str) -> None:
    """The first follow-up tick of a run whose items are settled (the rebill, where there is one)."""
    follow_up.follow(context(), run_id)


@app.task(name=POLL_RUN)
def poll_run(run_id: str) -> None:
    """A later follow-up tick: its message carries a countdown, no worker sleeps."""
    follow_up.follow(context(), run_id)


@app.task(name=RECONCILE)
def reconcile() -> None:
    reconciler.reconcile(context())


@app.task(name=FIRE_SCHEDULE, bind=True)
def fire_schedule(self: Task[Any, Any], schedule: str, slot: str) -> None:
    """One firing of a schedule slot (a name and a time only); the ledger makes one run per slot."""
    try:
        schedule_task.fire(container(), schedule, slot)
    except TransientProviderError as error:
        _retry(self, error)
