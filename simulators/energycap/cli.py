"""`rebill simulate energycap` / `python -m simulators.energycap`: seed an account period and serve it over HTTP.

Once the server accepts connections it prints a human line with the URL and then exactly one line
`account period: YYYYMM` (stdout, flushed), and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from simulators.common import SimulatorServer, serve
from simulators.energycap.app import EnergyCapApp
from simulators.energycap.faults import EnergyCapFaults
from simulators.energycap.state import DEFAULT_ACCOUNT_PERIOD, EnergyCapState

_PROBABILITY = click.FloatRange(0.0, 1.0)


@click.command("energycap")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--bills", default=2000, show_default=True, type=click.IntRange(0), help="Bills in the account period.")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same bills.")
@click.option(
    "--account-period", default=DEFAULT_ACCOUNT_PERIOD, show_default=True, type=click.IntRange(190001, 209912)
)
@click.option("--api-key", default="sim-api-key", show_default=True, help="The ECI-ApiKey the simulator accepts.")
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed of the fault decisions and kickouts.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--jitter-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--fail-500", type=_PROBABILITY, default=0.0, show_default=True, help="500 (not applied).")
@click.option("--fail-503", type=_PROBABILITY, default=0.0, show_default=True, help="503 HTML page (not applied).")
@click.option("--fail-429", type=_PROBABILITY, default=0.0, show_default=True, help="429 with Retry-After.")
@click.option("--lose-reply", type=_PROBABILITY, default=0.0, show_default=True, help="Applied, then 502.")
@click.option("--fault-operation", "fault_operations", multiple=True, help="Limit faults to this operation.")
@click.option("--import-seconds", type=click.FloatRange(0), default=0.5, show_default=True, help="An import's run.")
@click.option("--kickout", type=_PROBABILITY, default=0.0, show_default=True, help="Random kickouts (first import).")
@click.option("--page-cap", type=click.IntRange(1), default=None, help="Items per page at most (API max: 1000).")
@click.option("--log-level", default="warning", show_default=True)
def energycap(**options: Any) -> None:
    """Serve a simulated EnergyCAP datasource with one seeded account period."""
    try:
        faults = EnergyCapFaults(
            latency_ms=options["latency_ms"],
            jitter_ms=options["jitter_ms"],
            p_500=options["fail_500"],
            p_503_html=options["fail_503"],
            p_429=options["fail_429"],
            p_reply_lost=options["lose_reply"],
            fault_operations=frozenset(options["fault_operations"]) or None,
            import_seconds=options["import_seconds"],
            p_kickout=options["kickout"],
            page_cap=options["page_cap"],
        )
        state = EnergyCapState(options["api_key"], faults, rng_seed=options["rng_seed"])
        seeded = state.seed_period(options["bills"], options["seed"], options["account_period"])
    except (ValidationError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None

    def ready(server: SimulatorServer[EnergyCapState]) -> None:
        click.echo(
            f"EnergyCAP simulator listening on {server.base_url} "
            f"({options['bills']} bills, seed {options['seed']}, {len(seeded.eligible_ids)} eligible)"
        )
        click.echo(f"account period: {seeded.account_period}")
        sys.stdout.flush()

    server = SimulatorServer(
        EnergyCapApp(state),
        options["host"],
        options["port"],
        log_level=options["log_level"],
        thread_name="energycap-simulator",
    )
    serve(server, on_ready=ready)
