"""The `rebill` command line.

Exit codes: 0 done (for `run --wait`: completed with BillingLog status 2), 1 the run ended otherwise,
2 bad input or configuration (one line on stderr, nothing half-made left behind), 130 interrupted.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click

from orchestrator.bootstrap import Container
from orchestrator.config import load_settings
from orchestrator.domain.errors import ProviderAuthError, ProviderError, RebillError
from orchestrator.domain.run import RunMode
from orchestrator.services import planning, reconciler, runs

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_RUN_NOT_COMPLETED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_INTERNAL = 0, 1, 2, 130, 70


class RebillGroup(click.Group):
    """Turns every error we raise on purpose into one line and an exit code; never a stack trace."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RebillError as error:
            click.echo(f"error: {_one_line(error)}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            if os.environ.get("REBILL_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(error).__name__}: {_one_line(error)} (set REBILL_DEBUG=1 for details)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class CliState:
    """Built lazily: `rebill --help` or `rebill simulate` must not need settings or a database."""

    def __init__(self) -> None:
        self._container: Container | None = None

    @property
    def container(self) -> Container:
        if self._container is None:
            from orchestrator.adapters.logs import register_secret

            settings = load_settings()
            for secret in (settings.imis_password, settings.flower_basic_auth):
                register_secret(secret.get_secret_value() if secret is not None else None)
            self._container = Container(settings)
        return self._container

    def close(self) -> None:
        if self._container is not None:
            self._container.close()


pass_state = click.make_pass_decorator(CliState, ensure=True)


@click.group(cls=RebillGroup)
@click.version_option(package_name="rebill")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rebill: reverse every open invoice of a billing run and bill the members again."""
    state = ctx.ensure_object(CliState)
    ctx.call_on_close(state.close)
    from orchestrator.adapters.logs import configure_logging

    level, fmt = os.environ.get("REBILL_LOG_LEVEL", "WARNING"), os.environ.get("REBILL_LOG_FORMAT", "text")
    configure_logging(level, fmt, unless_configured=True)


def _run_options(fn: F) -> F:
    options = [
        click.option("--party-id", help="Single contact: reverse and rebill only this party's invoices."),
        click.option("--dry-run", is_flag=True, help="Plan and show the rebill request; no write call is made."),
        click.option(
            "--mode",
            type=click.Choice([m.value for m in RunMode]),
            default=RunMode.ORCHESTRATED.value,
            show_default=True,
            help="native: one server-side task with both actions (iMIS 20.3.208+).",
        ),
        click.option("--no-tracking-log", is_flag=True, help="Do not POST a 'Reversing invoices' BillingLog first."),
        click.option("--allow-partial", is_flag=True, help="Rebill even if some invoices could not be reversed."),
        click.option("--chunk-size", type=click.IntRange(min=1), help="Invoices per reversal task."),
        click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts per invoice on transient errors."),
        click.option("--adjustment-reason", help="AdjustmentReason sent with each reversal."),
        click.option("--adjustment-date", type=click.DateTime(formats=["%Y-%m-%d"]), help="Default: today."),
        click.option(
            "--cancel-membership",
            is_flag=True,
            help="Send DoNotCancelMembership=false (memberships are kept by default).",
        ),
        click.option(
            "--auto-post-batch/--no-auto-post-batch", default=None, help="AutomaticallyPostBatch on the rebill."
        ),
        click.option(
            "--post-unposted-batch/--leave-unposted-batch",
            default=None,
            help="Post the batch when the BillingLog stops at 4 (Unposted batch).",
        ),
        click.option("--poll-interval", type=click.FloatRange(min=0.05), help="Seconds between BillingLog reads."),
        click.option("--stall-after", type=click.FloatRange(min=1), help="Seconds without a status change: STALLED."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@click.option("--billing-log", "billing_log", required=True, help="BillingLogKey of the billing to reverse.")
@_run_options
@click.option("--wait", is_flag=True, help="Follow the run with live progress; exit 0 only if it completed.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@pass_state
def run(state: CliState, /, billing_log: str, wait: bool, as_json: bool, **raw: Any) -> None:
    """Reverse every open, unpaid invoice of a billing and rebill its members."""
    container = state.container
    options = container.settings.run_options(
        party_id=raw["party_id"],
        dry_run=raw["dry_run"] or None,
        mode=RunMode(raw["mode"]),
        tracking_log=False if raw["no_tracking_log"] else None,
        allow_partial=raw["allow_partial"] or None,
        chunk_size=raw["chunk_size"],
        max_attempts=raw["max_attempts"],
        adjustment_reason=raw["adjustment_reason"],
        adjustment_date=raw["adjustment_date"].date() if raw["adjustment_date"] else None,
        do_not_cancel_membership=False if raw["cancel_membership"] else None,
        automatically_post_batch=raw["auto_post_batch"],
        post_unposted_batch=raw["post_unposted_batch"],
        poll_interval_seconds=raw["poll_interval"],
        stall_after_seconds=raw["stall_after"],
    )
    ctx = container.context
    try:
        started = planning.start_run(ctx, billing_log, options)
    except ProviderError as error:
        raise _start_error(container, error) from None
    if options.dry_run:
        from orchestrator.adapters.cli.output import print_dry_run

        print_dry_run(ctx, started, as_json=as_json)
        return
    if as_json and not wait:
        click.echo(json.dumps(runs.run_summary(ctx, started), indent=2))
        return
    click.echo(started.id)
    if wait:
        from orchestrator.adapters.cli.progress import follow

        sys.exit(follow(container, started.id))


def _start_error(container: Container, error: ProviderError) -> RebillError:
    """A tenant we cannot talk to is bad input for `run`: say which setting to look at."""
    if isinstance(error, ProviderAuthError):
        return RebillError(f"cannot start: {error} (check REBILL_IMIS_USERNAME and REBILL_IMIS_PASSWORD)")
    base = str(container.settings.imis_base_url or "").rstrip("/")
    return RebillError(f"cannot start: {error} (REBILL_IMIS_BASE_URL={base})")


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def status(state: CliState, run_id: str, as_json: bool) -> None:
    """A run's state, counts per item state, BillingLog status history and rebill log key."""
    from orchestrator.adapters.cli.output import print_status

    ctx = state.container.context
    found = runs.find_run(ctx, run_id)
    summary = runs.run_summary(ctx, found)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_status(summary)


@cli.command(name="runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@pass_state
def list_runs(state: CliState, limit: int) -> None:
    """The most recent runs."""
    from orchestrator.adapters.cli.output import print_runs

    print_runs(state.container.ledger.list_runs(limit))


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Follow the run afterwards.")
@pass_state
def retry(state: CliState, run_id: str, wait: bool) -> None:
    """Re-run only what failed (chunks holding FAILED invoices), then the rebill once all are settled."""
    container = state.container
    result = runs.retry_run(container.context, run_id)
    click.echo(result.message)
    if wait and result.resumed:
        from orchestrator.adapters.cli.progress import follow

        sys.exit(follow(container, runs.find_run(container.context, run_id).id))


@cli.command()
@click.argument("run_id")
@pass_state
def cancel(state: CliState, run_id: str) -> None:
    """Stop dispatching; what is in flight finishes and is recorded."""
    click.echo(runs.cancel_run(state.container.context, run_id))


@cli.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@pass_state
def report(state: CliState, run_id: str, fmt: str, output: Path | None) -> None:
    """One line per invoice: id, party, amount, outcome, reason, attempts."""
    ctx = state.container.context
    found = runs.find_run(ctx, run_id)
    if output is None:
        write_report(ctx, found, fmt, sys.stdout)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        write_report(ctx, found, fmt, handle)
    click.echo(str(output))


def write_report(ctx: Any, found: Any, fmt: str, handle: Any) -> None:
    rows = runs.report_rows(ctx, found)
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=runs.REPORT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "amount": runs.money(row["amount"])})
        return
    for row in rows:
        handle.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return runs.money(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


@cli.command()
@pass_state
def reconcile(state: CliState) -> None:
    """Re-dispatch work whose message may have been lost (also runs inside every worker)."""
    done = reconciler.reconcile(state.container.context)
    click.echo(
        f"checked {done.runs} active run(s): re-dispatched {done.chunks} chunk(s), {done.plans} plan(s), "
        f"{done.rebills} rebill(s), {done.polls} poll(s)"
    )


@cli.command()
@click.option("--concurrency", type=click.IntRange(min=1), help="Threads (default REBILL_WORKER_CONCURRENCY).")
@click.option("--loglevel", help="Default: REBILL_LOG_LEVEL.")
@click.option("--no-reconcile", is_flag=True, help="Leave recovery of lost work to other workers or beat.")
@pass_state
def worker(state: CliState, concurrency: int | None, loglevel: str | None, no_reconcile: bool) -> None:
    """A Celery worker with the project's settings (threads: calls to the API wait without a process each)."""
    from workers.worker import run_worker

    container = state.container
    run_worker(
        container,
        concurrency=concurrency or container.settings.worker_concurrency,
        loglevel=loglevel or container.settings.log_level,
        reconcile=not no_reconcile,
    )


@cli.command()
@click.option("--loglevel", help="Default: REBILL_LOG_LEVEL.")
@pass_state
def beat(state: CliState, loglevel: str | None) -> None:
    """Celery beat (redbeat: one active beat, restarts carry on): reconciling and REBILL_SCHEDULE_FILE's runs."""
    from workers.monitoring import run_beat

    run_beat(state.container, loglevel=loglevel or state.container.settings.log_level)


@cli.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5555, show_default=True)
@click.option(
    "--max-tasks", type=click.IntRange(min=100), default=10_000, show_default=True, help="Tasks kept in memory."
)
@pass_state
def flower(state: CliState, address: str, port: int, max_tasks: int) -> None:
    """Flower on the project's broker, read-only, behind REBILL_FLOWER_BASIC_AUTH."""
    from workers.monitoring import run_flower

    run_flower(state.container, address=address, port=port, max_tasks=max_tasks)


@cli.command()
@click.option("--address", help="Default: REBILL_METRICS_ADDRESS.")
@click.option(
    "--port", type=click.IntRange(min=0, max=65535), default=9808, show_default=True, help="0: any free port."
)
@pass_state
def metrics(state: CliState, address: str | None, port: int) -> None:
    """Prometheus /metrics from the ledger: runs by state, items and API calls per run, BillingLog status."""
    from workers.monitoring import run_metrics

    container = state.container
    run_metrics(
        container,
        address=address or container.settings.metrics_address,
        port=port,
        ready=lambda url: click.echo(f"serving metrics on {url}"),
    )


def _mount_schedule_commands() -> None:
    from orchestrator.adapters.cli.schedule import schedule

    cli.add_command(schedule)


_mount_schedule_commands()


@cli.group()
def simulate() -> None:
    """Run a billing-platform simulator."""


def _mount_simulators() -> None:
    from simulators.imis.cli import imis
    from simulators.salesforce.cli import salesforce

    simulate.add_command(imis)
    simulate.add_command(salesforce)


_mount_simulators()


@cli.command()
@click.option("--invoices", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(min=0), default=20.0, show_default=True)
@click.option("--seed", type=int, help="Simulator seed (default: a new billing every time).")
@click.option("--workers", "concurrency", type=click.IntRange(min=1), default=8, show_default=True)
def demo(invoices: int, latency_ms: float, seed: int | None, concurrency: int) -> None:
    """A whole reverse-and-rebill against the built-in iMIS simulator, with live progress."""
    from orchestrator.adapters.cli.demo import run_demo

    sys.exit(run_demo(invoices=invoices, latency_ms=latency_ms, seed=seed, concurrency=concurrency))


def main() -> None:
    cli(obj=CliState())
