"""`rebill demo`: a built-in simulator (iMIS by default, or Aria, Salesforce, EnergyCAP), an embedded
worker, a whole run with live progress, then what happened and where the report is."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from orchestrator.bootstrap import Container, broker_url
from orchestrator.config import load_settings
from orchestrator.domain.billing import money
from orchestrator.domain.run import ItemState
from orchestrator.entrypoints.cli.output import write_report
from orchestrator.entrypoints.cli.progress import follow
from orchestrator.services import planning, runs
from simulators.aria import AriaApp, AriaFaults, AriaState, seed_bill_run
from simulators.common import SimulatorServer
from simulators.energycap.app import EnergyCapApp
from simulators.energycap.corrected import write_corrected_bills
from simulators.energycap.faults import EnergyCapFaults
from simulators.energycap.state import EnergyCapState
from simulators.imis.server import SimulatorServer as ImisSimulatorServer
from simulators.imis.state import ImisState
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState

DEMO_USER = "demo"
DEMO_PROVIDERS = ("imis", "aria", "salesforce", "energycap")
#: The corrected rates of the Aria demo, for the services the Aria simulator seeds.
ARIA_CORRECTIONS = Path(__file__).resolve().parents[3] / "ops" / "demo" / "aria-corrections.csv"
ARIA_CLIENT_NO = 7_000_123
ARIA_REASON_CODE = 2

Summary = Callable[[Container, str, float, Path], None]


@dataclass
class _Tenant:
    """One simulated tenant of the demo and how a run on it is asked for."""

    server: SimulatorServer[Any]
    #: `load_settings` overrides that reach the tenant (also given to the worker as REBILL_* variables).
    settings: Callable[[str], dict[str, Any]]
    selector: dict[str, Any]
    summarise: Summary
    provider_options: dict[str, Any] = field(default_factory=dict)


def run_demo(*, provider: str, invoices: int, latency_ms: float, seed: int | None, concurrency: int) -> int:
    seed = seed if seed is not None else int(time.time())
    base = load_settings()
    data_dir = Path(base.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    broker_url(base)  # start the embedded Redis once, before the worker and this process race for it

    make = {"imis": _imis, "aria": _aria, "salesforce": _salesforce, "energycap": _energycap}[provider]
    tenant = make(invoices, latency_ms, seed)
    started = time.monotonic()
    with tenant.server as server:
        settings = {**tenant.settings(server.base_url), "poll_interval_seconds": 0.5}
        env = {
            **os.environ,
            **{f"REBILL_{name.upper()}": str(value) for name, value in settings.items()},
            f"REBILL_{provider.upper()}_MAX_CONCURRENCY": str(concurrency),
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
                # The worker's cap too: its calls in flight are shown against it.
                container = Container(load_settings(**settings, **{f"{provider}_max_concurrency": concurrency}))
                options = container.settings.run_options()
                run = planning.start_run(
                    container.context, provider, tenant.selector, options, provider_options=tenant.provider_options
                )
                click.echo(f"run {run.id} started; worker log: {worker_log}")
                code = follow(container, run.id)
                report = _write_report(container, run.id, data_dir)
                tenant.summarise(container, run.id, time.monotonic() - started, report)
                container.close()
            finally:
                worker.terminate()
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
    return code


def _imis(invoices: int, latency_ms: float, seed: int) -> _Tenant:
    password = secrets.token_urlsafe(18)
    state = ImisState(username=DEMO_USER, password=password)
    state.faults.update(latency_ms=latency_ms, jitter_ms=latency_ms / 4, task_step_seconds=1.0)
    billing = state.seed_billing(invoices=invoices, seed=seed)
    click.echo(f"iMIS simulator: {invoices} invoices in billing {billing.original_key} (seed {seed})")
    return _Tenant(
        server=ImisSimulatorServer(state),
        settings=lambda url: {"imis_base_url": url, "imis_username": DEMO_USER, "imis_password": password},
        selector={"billing_log": billing.original_key},
        summarise=lambda container, run_id, seconds, report: _summarise(container, run_id, state, seconds, report),
    )


def _aria(invoices: int, latency_ms: float, seed: int) -> _Tenant:
    if not ARIA_CORRECTIONS.is_file():
        raise click.ClickException(f"the demo's corrections file is missing: {ARIA_CORRECTIONS}")
    auth_key = secrets.token_urlsafe(18)
    state = AriaState(ARIA_CLIENT_NO, auth_key, faults=AriaFaults(latency_ms=latency_ms, jitter_ms=latency_ms / 4))
    seeded = seed_bill_run(state, invoices=invoices, seed=seed)
    click.echo(
        f"Aria simulator: {invoices} invoices of bill date {seeded.bill_date.isoformat()} over "
        f"{len(seeded.acct_nos)} accounts (seed {seed}); corrections {ARIA_CORRECTIONS}"
    )
    return _Tenant(
        server=SimulatorServer(AriaApp(state), thread_name="aria-simulator"),
        settings=lambda url: {"aria_base_url": url, "aria_client_no": ARIA_CLIENT_NO, "aria_auth_key": auth_key},
        selector={"bill_date": seeded.bill_date.isoformat()},
        provider_options={"corrections": str(ARIA_CORRECTIONS), "reason_code": ARIA_REASON_CODE},
        summarise=lambda container, run_id, seconds, report: _summarise_aria(container, run_id, state, seconds, report),
    )


def _salesforce(invoices: int, latency_ms: float, seed: int) -> _Tenant:
    secret = secrets.token_urlsafe(18)
    faults = SalesforceFaults(latency_ms=latency_ms, jitter_ms=latency_ms / 4, void_seconds=1.0, generate_seconds=2.0)
    state = SalesforceState(client_id=DEMO_USER, client_secret=secret, faults=faults)
    seeded = state.seed_run(invoices, seed)
    click.echo(
        f"Salesforce simulator: {invoices} invoices in invoice batch run {seeded.invoice_batch_run_id} over "
        f"{len(seeded.billing_account_ids)} billing accounts (seed {seed})"
    )

    def counted() -> str:
        c = state.counters()
        return (
            f"simulator: {sum(c['voids'].values())} voids applied, "
            f"{sum(1 for n in c['voids'].values() if n > 1)} invoice(s) voided twice, "
            f"{c['duplicate_void_attempts']} second void(s) refused, {len(c['generate_calls'])} generate "
            f"call(s), {c['duplicate_generates']} schedule(s) generated twice"
        )

    return _Tenant(
        server=simulator_server(state),
        settings=lambda url: {
            "salesforce_base_url": url,
            "salesforce_client_id": DEMO_USER,
            "salesforce_client_secret": secret,
        },
        selector={"invoice_batch_run": seeded.invoice_batch_run_id},
        summarise=lambda container, run_id, seconds, report: _summarise_counts(
            container, run_id, "voided", seconds, report, counted
        ),
    )


def _energycap(invoices: int, latency_ms: float, seed: int) -> _Tenant:
    api_key = secrets.token_urlsafe(18)
    state = EnergyCapState(api_key=api_key, faults=EnergyCapFaults(latency_ms=latency_ms, import_seconds=2.0))
    seeded = state.seed_period(invoices, seed)
    corrected = Path(load_settings().data_dir) / "demo-corrected-bills.csv"
    rows = write_corrected_bills(state, seeded, corrected)
    click.echo(
        f"EnergyCAP simulator: {invoices} bills of account period {seeded.account_period} (seed {seed}); "
        f"{rows} corrected bills in {corrected}"
    )

    def counted() -> str:
        c = state.counters()
        return (
            f"simulator: {sum(c['reversals'].values())} reversals applied, "
            f"{sum(1 for n in c['reversals'].values() if n > 1)} bill(s) reversed twice, "
            f"{len(c['batches'])} batch(es), {len(c['imports'])} import(s)"
        )

    return _Tenant(
        server=SimulatorServer(EnergyCapApp(state), thread_name="energycap-simulator"),
        settings=lambda url: {"energycap_base_url": url, "energycap_api_key": api_key},
        selector={"account_period": seeded.account_period},
        provider_options={"rebill_file": str(corrected)},
        summarise=lambda container, run_id, seconds, report: _summarise_counts(
            container, run_id, "reversed", seconds, report, counted
        ),
    )


def _summarise_counts(
    container: Container, run_id: str, done: str, seconds: float, report: Path, counted: Callable[[], str]
) -> None:
    ctx = container.context
    run = runs.find_run(ctx, run_id)
    _echo_outcomes(container, run_id, done)
    path = " → ".join(event.code for event in ctx.ledger.status_events(run.id))
    click.echo(f"{run.state.value}" + (f"; {run.provider} status {path}" if path else ""))
    click.echo(counted())
    click.echo(f"took {seconds:.1f} s; report: {report}")


def _write_report(container: Container, run_id: str, data_dir: Path) -> Path:
    path = data_dir / "reports" / f"{run_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        write_report(container, run_id, "csv", handle)
    return path


def _echo_outcomes(container: Container, run_id: str, done: str) -> None:
    """How many invoices were acted on (`done`), then the others by state and reason."""
    reasons: Counter[str] = Counter()
    acted = 0
    for item in container.ledger.iter_items(run_id):
        if item.state is ItemState.REVERSED:
            acted += 1
        else:
            reasons[f"{item.state.value.lower()}: {item.reason}"] += 1
    click.echo("")
    click.echo(f"{done}  {acted}")
    for reason, count in reasons.most_common():
        click.echo(f"{count:>8}  {reason}")


def _summarise(container: Container, run_id: str, state: ImisState, seconds: float, report: Path) -> None:
    ctx = container.context
    run = runs.find_run(ctx, run_id)
    path = " → ".join(event.code for event in ctx.ledger.status_events(run.id))
    counters = state.counters()
    twice = sum(1 for count in counters["reversals"].values() if count > 1)
    _echo_outcomes(container, run.id, "reversed")
    click.echo(f"BillingLog {run.last_status.subject if run.last_status else '-'}: {path}")
    click.echo(
        f"simulator: {sum(counters['reversals'].values())} reversals applied, {twice} invoice(s) reversed twice, "
        f"{counters['refused_second_reversals']} second reversal(s) refused, {len(counters['rebills'])} rebill(s)"
    )
    click.echo(f"took {seconds:.1f} s; report: {report}")


def _summarise_aria(container: Container, run_id: str, state: AriaState, seconds: float, report: Path) -> None:
    old = new = Decimal("0")
    for item in container.ledger.iter_items(run_id, states={ItemState.REVERSED}):
        old += item.invoice.amount
        new += item.new_amount or Decimal("0")
    counters = state.counters()
    twice = sum(1 for count in counters["rebills"].values() if count > 1)
    _echo_outcomes(container, run_id, "rebilled")
    click.echo(f"old → new {money(old)} → {money(new)} (difference {money(new - old)}) on the rebilled invoices")
    click.echo(
        f"simulator: {counters['rebills_total']} rebills applied, {twice} invoice(s) rebilled twice, "
        f"{counters['duplicate_attempts']} second rebill(s) refused, {counters['busy_refusals']} busy (3108)"
    )
    click.echo(f"took {seconds:.1f} s; report: {report}")
