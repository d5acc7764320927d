"""The `rebill` command line.

Exit codes: 0 done (for `run --wait`: completed with BillingLog status 2), 1 the run ended otherwise,
2 bad input or configuration (one line on stderr, nothing half-made left behind), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from orchestrator.adapters.providers.registry import PLATFORMS
from orchestrator.bootstrap import Container
from orchestrator.config import load_settings
from orchestrator.domain.errors import ConfigurationError, ProviderAuthError, ProviderError, RebillError
from orchestrator.domain.run import RunState
from orchestrator.entrypoints.cli import params
from orchestrator.entrypoints.cli.platform_options import (
    given,
    infer_platform,
    platform_options,
    retry_asked,
    retry_options,
    split_for,
)
from orchestrator.services import planning, reconciler, reports, runs
from orchestrator.services.views import RunsQuery

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
        except BrokenPipeError:
            _discard_stdout()
            click.echo("error: the output was closed before all of it was written (broken pipe)", err=True)
            ctx.exit(EXIT_RUN_NOT_COMPLETED)
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


def _discard_stdout() -> None:
    """The reader of stdout left (`rebill report RUN | head`): what is still buffered goes nowhere,
    instead of failing again when Python flushes it on exit."""
    with contextlib.suppress(OSError, ValueError):  # stdout is no file (a test runner's buffer): nothing to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class CliState:
    """Built lazily: `rebill --help` or `rebill simulate` must not need settings or a database."""

    def __init__(self) -> None:
        self._container: Container | None = None

    @property
    def container(self) -> Container:
        if self._container is None:
            from orchestrator.adapters.logs import configure_logging, register_secret

            settings = load_settings()
            for secret in settings.secret_values():
                register_secret(secret)
            # The command line stays quiet (warnings only) unless REBILL_LOG_LEVEL asks for more.
            level = settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
            configure_logging(level, settings.log_format, unless_configured=True)
            self._container = Container(settings)
        return self._container

    def reading_container(self) -> Container:
        """The container of a command that only reads: a missing SQLite ledger is an error, never created."""
        from orchestrator.entrypoints.cli.reading import require_ledger

        require_ledger(self.container.settings)
        return self.container

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


def _run_options(fn: F) -> F:
    options = [
        click.option("--dry-run", is_flag=True, help="Plan and show what would be sent; no write call is made."),
        click.option("--allow-partial", is_flag=True, help="Rebill even if some invoices could not be reversed."),
        click.option("--chunk-size", type=params.CHUNK_SIZE, help="Invoices per reversal task."),
        click.option("--max-attempts", type=params.ATTEMPTS, help="Attempts per invoice on transient errors."),
        click.option("--poll-interval", type=params.POLL_INTERVAL_SECONDS, help="Seconds between status reads."),
        click.option(
            "--stall-after", type=params.STALL_AFTER_SECONDS, help="Seconds without a status change: STALLED."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command()
@click.option("--provider", help="The platform to run on (default: the one configured; see `rebill providers`).")
@platform_options
@_run_options
@click.option("--wait", is_flag=True, help="Follow the run with live progress; exit 0 only if it completed.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@pass_state
def run(state: CliState, /, provider: str | None, wait: bool, as_json: bool, **raw: Any) -> None:
    """Reverse every eligible invoice of a selection and rebill it (iMIS: `--billing-log KEY`)."""
    container = state.container
    values = given(raw)
    name = _choose_provider(container, provider, values)
    selector, provider_options = split_for(PLATFORMS[name], values)
    options = container.settings.run_options(
        dry_run=raw["dry_run"] or None,
        allow_partial=raw["allow_partial"] or None,
        chunk_size=raw["chunk_size"] or PLATFORMS[name].default_chunk_size,
        max_attempts=raw["max_attempts"],
        poll_interval_seconds=raw["poll_interval"],
        stall_after_seconds=raw["stall_after"],
    )
    ctx = container.context
    _require_broker(container)  # before the tenant, whose call limit lives in the broker's Redis too
    try:
        started = planning.start_run(ctx, name, selector, options, provider_options=provider_options)
    except ProviderError as error:
        raise _start_error(container, name, error) from None
    if options.dry_run:
        from orchestrator.entrypoints.cli.output import print_dry_run
        from orchestrator.entrypoints.cli.progress import follow

        if not started.state.is_final:
            follow(container, started.id, quiet=as_json)
        print_dry_run(ctx, runs.find_run(ctx, started.id), as_json=as_json)
        return
    if as_json and not wait:
        from orchestrator.entrypoints.cli.reading import run_views

        click.echo(json.dumps(reports.run_summary(ctx, run_views(container), started), indent=2))
        return
    click.echo(started.id)
    if wait:
        from orchestrator.entrypoints.cli.progress import follow

        sys.exit(follow(container, started.id))


def _choose_provider(container: Container, asked: str | None, values: dict[str, Any]) -> str:
    """`--provider`, else the only configured one, else the one the selection's options belong to."""
    if asked is not None:
        if asked not in PLATFORMS:
            raise click.UsageError(f"no provider {asked[:40]!r}: choose one of {', '.join(PLATFORMS)}")
        return asked
    inferred = infer_platform(values)
    if inferred is not None:
        return inferred
    configured = container.settings.configured_providers()
    if len(configured) == 1:
        return configured[0]
    if not configured:
        raise ConfigurationError(
            "no provider is configured: set one platform's settings (see `rebill providers`), e.g. "
            "REBILL_IMIS_BASE_URL, REBILL_IMIS_USERNAME and REBILL_IMIS_PASSWORD"
        )
    raise click.UsageError(f"several providers are configured: choose one with --provider ({', '.join(configured)})")


def _require_broker(container: Container) -> None:
    """A broker that does not answer is named as the broker, with the setting that points at it."""
    from orchestrator.adapters.broker.celery import check_broker, shown_broker

    settings = container.settings
    if settings.broker_url:
        described = f"REBILL_BROKER_URL={shown_broker(settings.broker_url)}"
    else:
        described = f"the embedded Redis under REBILL_DATA_DIR={settings.data_dir}; REBILL_BROKER_URL is unset"
    check_broker(container.producer, described=described)


def _start_error(container: Container, provider: str, error: ProviderError) -> RebillError:
    """A tenant we cannot talk to is bad input for `run`: say which settings to look at."""
    settings = container.settings.provider(provider)
    names = [settings.env_name(field) for field in settings.required_fields if field != "base_url"]
    credentials = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if isinstance(error, ProviderAuthError):
        return RebillError(f"cannot start: {error} (check {credentials})")
    return RebillError(f"cannot start: {error} ({settings.env_name('base_url')}={settings.base()})")


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="All of it as JSON (every failure group, every call count).")
@pass_state
def status(state: CliState, run_id: str, as_json: bool) -> None:
    """A run's state and counts, money per outcome, failures grouped by reason (with an example invoice),
    the platform's status path with times, and the API calls made."""
    from orchestrator.entrypoints.cli.output import print_status
    from orchestrator.entrypoints.cli.reading import run_views

    container = state.reading_container()
    summary = reports.run_summary(container.context, run_views(container), runs.find_run(container.context, run_id))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_status(summary)


@cli.command(name="runs")
@click.option("--limit", type=params.LISTED, default=20, show_default=True)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=params.ShortChoice([state.value for state in RunState], case_sensitive=False),
    help="Only runs in this state (repeatable).",
)
@click.option("--provider", "providers", multiple=True, help="Only runs on this provider (repeatable).")
@click.option("--dry-runs", is_flag=True, help="Include dry runs (also with --state DRY_RUN).")
@click.option("--wide", is_flag=True, help="Full run ids and reasons, however wide.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def list_runs(
    state: CliState,
    limit: int,
    states: tuple[str, ...],
    providers: tuple[str, ...],
    dry_runs: bool,
    wide: bool,
    as_json: bool,
) -> None:
    """The most recent runs: state, when, how long, invoices reversed / left / failed, money, reason."""
    from orchestrator.entrypoints.cli.output import print_runs
    from orchestrator.entrypoints.cli.reading import run_views

    chosen = frozenset(RunState(value.upper()) for value in states)
    query = RunsQuery(
        states=chosen,
        providers=frozenset(providers),
        include_dry_runs=dry_runs or RunState.DRY_RUN in chosen,
        limit=limit,
    )
    found = run_views(state.reading_container()).runs(query).runs
    if as_json:
        now = datetime.now(UTC)
        click.echo(json.dumps([reports.headline_json(run, now) for run in found], indent=2))
    else:
        print_runs(found, wide=wide)


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Follow the run afterwards.")
@retry_options
@pass_state
def retry(state: CliState, /, run_id: str, wait: bool, **raw: Any) -> None:
    """Re-run only what failed (chunks holding FAILED invoices), then the rebill once all are settled."""
    container = state.container
    found = runs.find_run(container.context, run_id)
    _require_broker(container)
    asked = retry_asked(PLATFORMS[found.provider], raw) if found.provider in PLATFORMS else {}
    result = runs.retry_run(container.context, found.id, asked=asked)
    click.echo(result.message)
    if wait and result.resumed:
        from orchestrator.entrypoints.cli.progress import follow

        sys.exit(follow(container, runs.find_run(container.context, run_id).id))


@cli.command()
@click.argument("run_id")
@pass_state
def cancel(state: CliState, run_id: str) -> None:
    """Stop dispatching; what is in flight finishes and is recorded."""
    click.echo(runs.cancel_run(state.container.context, run_id))


@cli.command()
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=params.ShortChoice(["csv", "json", "jsonl", "html"]),
    default="csv",
    show_default=True,
    help="json: one document (the run and its invoices); jsonl: one invoice per line.",
)
@click.option("--failed", "failed_only", is_flag=True, help="Only the invoices that failed.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Default: stdout.")
@pass_state
def report(state: CliState, run_id: str, fmt: str, failed_only: bool, output: Path | None) -> None:
    """Every invoice: id, number, party, amount, outcome, reason, the platform's references, attempts (and
    failures a retry replaced), when, and (json, jsonl) every API call. `html`: the run's web page as one
    self-contained file (charts, failures, every invoice and call; opens without a network)."""
    from orchestrator.entrypoints.cli.output import write_report

    if failed_only and fmt == "html":
        raise click.UsageError("--failed is for csv, json and jsonl; the html report filters failed invoices itself")
    container = state.reading_container()
    if fmt == "html":
        from orchestrator.entrypoints.cli.web import write_html_report

        with _written(output, newline=None) as handle:
            write_html_report(container, run_id, handle)
        return
    runs.find_run(container.context, run_id)  # an unknown run is said before any file is made
    with _written(output, newline="") as handle:
        write_report(container, run_id, fmt, handle, failed_only=failed_only)


@contextmanager
def _written(path: Path | None, *, newline: str | None) -> Iterator[TextIO]:
    """stdout, or `path` (its folder made); a path that cannot be written is bad input, named."""
    if path is None:
        yield sys.stdout
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", encoding="utf-8", newline=newline)
    except OSError as error:
        raise RebillError(f"cannot write the report to {path}: {error.strerror or error}") from None
    with handle:
        yield handle
    click.echo(str(path))


@cli.group(invoke_without_command=True)
@click.pass_context
def providers(click_ctx: click.Context) -> None:
    """The platforms rebill knows, and whether each is configured here."""
    if click_ctx.invoked_subcommand is not None:
        return
    settings = click_ctx.ensure_object(CliState).container.settings
    for name in PLATFORMS:
        own = settings.provider(name)
        missing = own.missing()
        where = (
            f"{own.base()}, cap {own.max_concurrency}" if not missing else "not configured: set " + ", ".join(missing)
        )
        click.echo(f"{name:<11} {own.platform:<11} {where}")


@providers.command("check")
@click.argument("name", required=False)
@pass_state
def providers_check(state: CliState, name: str | None) -> None:
    """Sign in to each configured provider (or NAME) and read one page; exit 1 if any fails."""
    container = state.container
    names = [name] if name else container.settings.configured_providers()
    if not names:
        raise ConfigurationError("no provider is configured (see `rebill providers`)")
    failed = 0
    for provider in names:
        try:
            line = f"ok: {container.providers.get(provider).check()}"
        except RebillError as error:
            failed += 1
            line = f"FAILED: {_one_line(error)}"
        click.echo(f"{provider}: {line}")
    sys.exit(EXIT_RUN_NOT_COMPLETED if failed else EXIT_OK)


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
@click.option("--concurrency", type=params.THREADS, help="Threads (default REBILL_WORKER_CONCURRENCY).")
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
@click.option("--port", type=params.PORT, default=5555, show_default=True)
@click.option(
    "--max-tasks",
    type=params.BoundedInt(100, 1_000_000),
    default=10_000,
    show_default=True,
    help="Tasks kept in memory.",
)
@pass_state
def flower(state: CliState, address: str, port: int, max_tasks: int) -> None:
    """Flower on the project's broker, read-only, behind REBILL_FLOWER_BASIC_AUTH."""
    from workers.monitoring import run_flower

    run_flower(state.container, address=address, port=port, max_tasks=max_tasks)


@cli.command()
@click.option("--address", help="Default: REBILL_METRICS_ADDRESS.")
@click.option("--port", type=params.PORT, default=9808, show_default=True, help="0: any free port.")
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


@cli.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", type=params.PORT, default=8050, show_default=True, help="0: any free port.")
@click.option("--insecure-local", is_flag=True, help="Serve without REBILL_WEB_BASIC_AUTH; only on 127.0.0.1 or ::1.")
@pass_state
def web(state: CliState, address: str, port: int, insecure_local: bool) -> None:
    """The web view: runs, each run's progress, failures by reason, money and invoices. Read-only, from
    the ledger alone (works while the broker is down), behind REBILL_WEB_BASIC_AUTH."""
    from orchestrator.entrypoints.cli.web import run_web

    run_web(
        state.container,
        address=address,
        port=port,
        insecure_local=insecure_local,
        ready=lambda url: click.echo(f"serving the web view on {url}"),
    )


@cli.group()
def broker() -> None:
    """The embedded Redis: rebill's broker when REBILL_BROKER_URL is unset."""


@broker.command("stop")
def broker_stop() -> None:
    """Stop the embedded Redis under REBILL_DATA_DIR (`make stop`); the next command that needs it starts it."""
    from orchestrator.adapters.broker import embedded

    settings = load_settings()
    if settings.broker_url:
        click.echo("REBILL_BROKER_URL is set: rebill runs no broker of its own here, nothing to stop")
        return
    where = embedded.locate(Path(settings.data_dir)).directory
    if embedded.stop(Path(settings.data_dir)):
        click.echo(f"stopped the embedded Redis in {where}")
    else:
        click.echo(f"no embedded Redis running in {where}")


def _mount_schedule_commands() -> None:
    from orchestrator.entrypoints.cli.schedule import schedule

    cli.add_command(schedule)


_mount_schedule_commands()


@cli.group()
def simulate() -> None:
    """Run a billing-platform simulator."""


def _mount_simulators() -> None:
    from simulators.aria.cli import aria
    from simulators.energycap.cli import energycap
    from simulators.imis.cli import imis
    from simulators.salesforce.cli import salesforce

    for command in (imis, aria, salesforce, energycap):
        simulate.add_command(command)


_mount_simulators()


@cli.command()
@click.option(
    "--provider",
    type=click.Choice(["imis", "aria", "salesforce", "energycap"]),
    default="imis",
    show_default=True,
    help="The simulated platform (aria: a bill run rebilled with ops/demo/aria-corrections.csv; energycap: "
    "a period reversed, then corrected bills generated for it imported).",
)
@click.option("--invoices", type=params.DEMO_INVOICES, default=2000, show_default=True)
@click.option("--latency-ms", type=params.LATENCY_MS, default=20.0, show_default=True)
@click.option("--seed", type=params.SEED, help="Simulator seed (default: a new billing every time).")
@click.option("--workers", "concurrency", type=params.THREADS, default=8, show_default=True)
def demo(provider: str, invoices: int, latency_ms: float, seed: int | None, concurrency: int) -> None:
    """A whole reverse-and-rebill against a built-in simulator (iMIS, Aria, Salesforce or EnergyCAP), with live
    progress."""
    from orchestrator.entrypoints.cli.demo import run_demo

    sys.exit(run_demo(provider=provider, invoices=invoices, latency_ms=latency_ms, seed=seed, concurrency=concurrency))


def main() -> None:
    cli(obj=CliState())
