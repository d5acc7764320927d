"""`rebill simulate aria` / `python -m simulators.aria`: seed a bill run and serve it over HTTP.

Once the server accepts connections it prints a human line with the URL and then exactly one line
`bill date: YYYY-MM-DD` (stdout, flushed), and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from typing import Any

import click
from pydantic import ValidationError

from simulators.aria.app import AriaApp
from simulators.aria.faults import DEFAULT_PAGE_CAP, AriaFaults
from simulators.aria.seeding import DEFAULT_BILL_DATE, seed_bill_run
from simulators.aria.state import AriaState
from simulators.common import SimulatorServer, serve

_PROBABILITY = click.FloatRange(0.0, 1.0)


@click.command("aria")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--invoices", default=2000, show_default=True, type=click.IntRange(0), help="Invoices of the bill run.")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same bill run.")
@click.option(
    "--bill-date",
    type=click.DateTime(["%Y-%m-%d"]),
    default=DEFAULT_BILL_DATE.isoformat(),
    show_default=True,
    help="The bill run's date (the older invoices are a month before).",
)
@click.option("--client-no", default=7_000_123, show_default=True, type=click.IntRange(1))
@click.option("--auth-key", default="sim-auth-key", show_default=True)
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed of the fault decisions.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--jitter-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--fail-500", type=_PROBABILITY, default=0.0, show_default=True, help="HTTP 500 page, not applied.")
@click.option("--lose-reply", type=_PROBABILITY, default=0.0, show_default=True, help="Applied, then HTTP 502.")
@click.option("--busy", type=_PROBABILITY, default=0.0, show_default=True, help="gen_rb_m answers 3108, not applied.")
@click.option("--unexpected", type=_PROBABILITY, default=0.0, show_default=True, help="gen_rb_m answers 1001.")
@click.option(
    "--unexpected-applies/--unexpected-not-applied",
    default=True,
    show_default=True,
    help="Whether a gen_rb_m answered with 1001 was applied.",
)
@click.option(
    "--page-cap", type=click.IntRange(1), default=DEFAULT_PAGE_CAP, show_default=True, help="Object-query limit cap."
)
@click.option("--fault-call", "fault_calls", multiple=True, help="Limit --fail-500/--lose-reply to this rest_call.")
@click.option("--log-level", default="warning", show_default=True)
def aria(**options: Any) -> None:
    """Serve a simulated Aria client (tenant) with one seeded bill run."""
    try:
        faults = AriaFaults(
            latency_ms=options["latency_ms"],
            jitter_ms=options["jitter_ms"],
            p_500=options["fail_500"],
            p_reply_lost=options["lose_reply"],
            p_busy=options["busy"],
            p_unexpected=options["unexpected"],
            unexpected_applies=options["unexpected_applies"],
            page_cap=options["page_cap"],
            fault_operations=frozenset(options["fault_calls"]) or None,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    state = AriaState(options["client_no"], options["auth_key"], faults=faults, rng_seed=options["rng_seed"])
    bill_date: date = _day(options["bill_date"])
    seed_bill_run(state, invoices=options["invoices"], seed=options["seed"], bill_date=bill_date)

    def ready(server: SimulatorServer[AriaState]) -> None:
        click.echo(
            f"Aria simulator listening on {server.base_url} "
            f"({options['invoices']} invoices, seed {options['seed']}, client_no {options['client_no']})"
        )
        click.echo(f"bill date: {bill_date.isoformat()}")
        sys.stdout.flush()

    server = SimulatorServer(
        AriaApp(state), options["host"], options["port"], log_level=options["log_level"], thread_name="aria-simulator"
    )
    serve(server, on_ready=ready)


def _day(value: datetime) -> date:
    return value.date()
