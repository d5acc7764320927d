"""`rebill demo`: the built-in iMIS simulator, an embedded worker, a whole run with live progress."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import click

from orchestrator.bootstrap import Container, broker_url
from orchestrator.config import load_settings
from orchestrator.domain.run import ItemState
from orchestrator.entrypoints.cli.output import write_report
from orchestrator.entrypoints.cli.progress import follow
from orchestrator.services import planning, runs
from simulators.imis.server import SimulatorServer
from simulators.imis.state import ImisState

DEMO_USER = "demo"


def run_demo(*, invoices: int, latency_ms: float, seed: int | None, concurrency: int) -> int:
    seed = seed if seed is not None else int(time.time())
    password = secrets.token_urlsafe(18)
    base = load_settings()
    data_dir = Path(base.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    broker_url(base)  # start the embedded Redis once, before the worker and this process race for it

    state = ImisState(username=DEMO_USER, password=password)
    state.faults.update(latency_ms=latency_ms, jitter_ms=latency_ms / 4, task_step_seconds=1.0)
    billing = state.seed_billing(invoices=invoices, seed=seed)
    click.echo(f"iMIS simulator: {invoices} invoices in billing {billing.original_key} (seed {seed})")
    started = time.monotonic()
    with SimulatorServer(state) as server:
        env = {
            **os.environ,
            "REBILL_IMIS_BASE_URL": server.base_url,
            "REBILL_IMIS_USERNAME": DEMO_USER,
            "REBILL_IMIS_PASSWORD": password,
            "REBILL_POLL_INTERVAL_SECONDS": "0.5",
            "REBILL_IMIS_MAX_CONCURRENCY": str(concurrency),
        }
        worker_log = data_dir / "demo-worker.log"
        with worker_log.open("w") as log_handle:
            worker = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.entrypoints.cli", "worker", f"--concurrency={concurrency}"],
                env=env,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
            )
            try:
                container = Container(
                    load_settings(
                        imis_base_url=server.base_url,
                        imis_username=DEMO_USER,
                        imis_password=password,
                        poll_interval_seconds=0.5,
                    )
                )
                options = container.settings.run_options()
                run = planning.start_run(container.context, "imis", {"billing_log": billing.original_key}, options)
                click.echo(f"run {run.id} started; worker log: {worker_log}")
                code = follow(container, run.id)
                report = _write_report(container, run.id, data_dir)
                _summarise(container, run.id, state, time.monotonic() - started, report)
                container.close()
            finally:
                worker.terminate()
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
    return code


def _write_report(container: Container, run_id: str, data_dir: Path) -> Path:
    ctx = container.context
    path = data_dir / "reports" / f"{run_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        write_report(ctx, runs.find_run(ctx, run_id), "csv", handle)
    return path


def _summarise(container: Container, run_id: str, state: ImisState, seconds: float, report: Path) -> None:
    ctx = container.context
    run = runs.find_run(ctx, run_id)
    reasons: Counter[str] = Counter()
    outcomes: Counter[ItemState] = Counter()
    for item in ctx.ledger.iter_items(run.id):
        outcomes[item.state] += 1
        if item.state is not ItemState.REVERSED:
            reasons[f"{item.state.value.lower()}: {item.reason}"] += 1
    path = " → ".join(event.code for event in ctx.ledger.status_events(run.id))
    counters = state.counters()
    twice = sum(1 for count in counters["reversals"].values() if count > 1)
    click.echo("")
    click.echo(f"reversed  {outcomes[ItemState.REVERSED]}")
    for reason, count in reasons.most_common():
        click.echo(f"{count:>8}  {reason}")
    click.echo(f"BillingLog {run.last_status.subject if run.last_status else '-'}: {path}")
    click.echo(
        f"simulator: {sum(counters['reversals'].values())} reversals applied, {twice} invoice(s) reversed twice, "
        f"{counters['refused_second_reversals']} second reversal(s) refused, {len(counters['rebills'])} rebill(s)"
    )
    click.echo(f"took {seconds:.1f} s; report: {report}")
