"""`rebill simulate salesforce` / `python -m simulators.salesforce`: seed an invoice batch run and serve it.

Once the server accepts connections it prints a human line with the URL and then exactly one line
`invoice batch run: <id>` (stdout, flushed), and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from simulators.common.server import SimulatorServer, serve
from simulators.salesforce.faults import SalesforceFaults
from simulators.salesforce.server import simulator_server
from simulators.salesforce.state import SalesforceState

_PROBABILITY = click.FloatRange(0.0, 1.0)


@click.command("salesforce")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--invoices", default=2000, show_default=True, type=click.IntRange(0), help="Invoices in the run.")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same run.")
@click.option("--client-id", default="rebill-client", show_default=True, help="The connected app's client id.")
@click.option("--client-secret", default="rebill-secret", show_default=True)
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed of the fault decisions.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--jitter-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option(
    "--void-seconds", type=click.FloatRange(0), default=2.0, show_default=True, help="Void In Progress → Voided."
)
@click.option(
    "--generate-seconds", type=click.FloatRange(0), default=3.0, show_default=True, help="Processing → invoice."
)
@click.option(
    "--fail-403", type=_PROBABILITY, default=0.0, show_default=True, help="403 REQUEST_LIMIT_EXCEEDED (concurrency)."
)
@click.option("--fail-503", type=_PROBABILITY, default=0.0, show_default=True, help="503 HTML maintenance page.")
@click.option(
    "--fail-500", type=_PROBABILITY, default=0.0, show_default=True, help="500 UNKNOWN_EXCEPTION, not applied."
)
@click.option("--lose-reply", type=_PROBABILITY, default=0.0, show_default=True, help="Applied, then 502.")
@click.option(
    "--token-ttl", type=click.FloatRange(0, min_open=True), default=None, help="Session seconds (default: no end)."
)
@click.option("--page-size", type=click.IntRange(1, 2000), default=200, show_default=True)
@click.option("--daily-allocation", type=click.IntRange(0), default=100_000, show_default=True)
@click.option(
    "--schedule-error", type=_PROBABILITY, default=0.0, show_default=True, help="Generated invoices in Error."
)
@click.option("--recover-error", type=_PROBABILITY, default=0.0, show_default=True, help="Recoveries that fail.")
@click.option(
    "--fault-operation",
    "fault_operations",
    multiple=True,
    type=click.Choice(["token", "query", "query.more", "void", "generate", "recover"]),
    help="Draw the 403/500/503/lost-reply faults for this operation only (repeatable; default: every API call).",
)
@click.option("--log-level", default="warning", show_default=True)
def salesforce(**options: Any) -> None:
    """Serve a simulated Salesforce org (Revenue Cloud Billing) with one seeded invoice batch run."""
    try:
        faults = SalesforceFaults(
            latency_ms=options["latency_ms"],
            jitter_ms=options["jitter_ms"],
            void_seconds=options["void_seconds"],
            generate_seconds=options["generate_seconds"],
            p_429=options["fail_403"],
            p_503_html=options["fail_503"],
            p_500=options["fail_500"],
            p_reply_lost=options["lose_reply"],
            token_ttl_seconds=options["token_ttl"],
            page_size=options["page_size"],
            daily_allocation=options["daily_allocation"],
            p_schedule_error=options["schedule_error"],
            p_recover_error=options["recover_error"],
            fault_operations=frozenset(options["fault_operations"]) or None,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    state = SalesforceState(options["client_id"], options["client_secret"], faults, rng_seed=options["rng_seed"])
    seeded = state.seed_run(options["invoices"], options["seed"])

    def ready(server: SimulatorServer[SalesforceState]) -> None:
        click.echo(
            f"Salesforce simulator listening on {server.base_url} "
            f"({options['invoices']} invoices, seed {options['seed']}, client id {options['client_id']})"
        )
        click.echo(f"invoice batch run: {seeded.invoice_batch_run_id}")
        sys.stdout.flush()

    serve(simulator_server(state, options["host"], options["port"], log_level=options["log_level"]), on_ready=ready)
