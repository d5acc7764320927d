"""Thin tasks: explicit stable names, ids in, one service call, retries mapped from typed errors."""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task

from orchestrator.domain.errors import TransientProviderError
from orchestrator.domain.run import full_jitter, retry_delay
from orchestrator.services import planning, poller, rebill, reconciler, reversal
from workers import scheduled
from workers.celery_app import app
from workers.runtime import container, context

_BACKOFF_BASE_SECONDS = 2.0
_BACKOFF_CAP_SECONDS = 300.0


def _retry(task: Task[Any, Any], error: TransientProviderError) -> NoReturn:
    """Back off with jitter, never before the server's Retry-After."""
    delay = retry_delay(
        task.request.retries + 1,
        base=_BACKOFF_BASE_SECONDS,
        cap=_BACKOFF_CAP_SECONDS,
        retry_after=error.retry_after,
        jitter=full_jitter,
    )
    raise task.retry(exc=error, countdown=delay, max_retries=None)


@app.task(name="rebill.plan_run", bind=True)
def plan_run(self: Task[Any, Any], run_id: str) -> None:
    try:
        planning.plan_run(context(), run_id)
    except TransientProviderError as error:
        _retry(self, error)


@app.task(name="rebill.reverse_chunk")
def reverse_chunk(run_id: str, chunk_id: int) -> None:
    reversal.process_chunk(context(), run_id, chunk_id)


@app.task(name="rebill.submit_rebill", bind=True)
def submit_rebill(self: Task[Any, Any], run_id: str) -> None:
    try:
        rebill.send_rebill(context(), run_id)
    except TransientProviderError as error:
        _retry(self, error)


@app.task(name="rebill.poll_run")
def poll_run(run_id: str) -> None:
    poller.poll_run(context(), run_id)


@app.task(name="rebill.reconcile")
def reconcile() -> None:
    reconciler.reconcile(context())


@app.task(name="rebill.fire_schedule", bind=True)
def fire_schedule(self: Task[Any, Any], schedule: str, slot: str) -> None:
    """One firing of a schedule slot (a name and a time only); the ledger makes one run per slot."""
    try:
        scheduled.fire(container(), schedule, slot)
    except TransientProviderError as error:
        _retry(self, error)
