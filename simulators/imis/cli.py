"""`rebill simulate imis` / `python -m simulators.imis`: seed a billing and serve it over HTTP.

Once the server accepts connections it prints a human line with the URL and then exactly one line
`original BillingLogKey: <key>` (stdout, flushed), and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from pydantic import ValidationError

from simulators.imis.faults import Faults
from simulators.imis.seeding import DEFAULT_CYCLE
from simulators.imis.server import SimulatorServer, serve
from simulators.imis.state import ImisState

_PROBABILITY = click.FloatRange(0.0, 1.0)


def _fail_invoice(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values:
        invoice_id, sep, mode = item.rpartition("=")
        if not sep or not invoice_id:
            raise click.BadParameter(f"expected INVOICE_ID=MODE, got {item!r}")
        result[invoice_id] = mode
    return result


@click.command("imis")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--invoices", default=2000, show_default=True, type=click.IntRange(0), help="Invoices in the billing.")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same billing.")
@click.option("--cycle-name", default=DEFAULT_CYCLE, show_default=True)
@click.option("--other-billings", default=1, show_default=True, type=click.IntRange(0))
@click.option("--accounting-method", type=click.Choice(["cash", "accrual"]), default="cash", show_default=True)
@click.option("--examples/--no-examples", default=False, help="Also create the seed pages' example entities.")
@click.option("--username", default="admin", show_default=True)
@click.option("--password", default="secret", show_default=True)
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed of the fault decisions.")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--jitter-ms", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--p-429", "p_429", type=_PROBABILITY, default=0.0, show_default=True)
@click.option("--retry-after", type=click.IntRange(0), default=1, show_default=True, help="Retry-After of 429s.")
@click.option("--p-500", "p_500", type=_PROBABILITY, default=0.0, show_default=True)
@click.option("--p-503", "p_503", type=_PROBABILITY, default=0.0, show_default=True, help="HTML maintenance page.")
@click.option("--p-hang", type=_PROBABILITY, default=0.0, show_default=True)
@click.option("--hang-seconds", type=click.FloatRange(0), default=60.0, show_default=True)
@click.option("--p-reply-lost", type=_PROBABILITY, default=0.0, show_default=True, help="Applied, reply lost.")
@click.option("--reply-lost-mode", type=click.Choice(["502", "hang"]), default="502", show_default=True)
@click.option("--p-html-200", type=_PROBABILITY, default=0.0, show_default=True)
@click.option("--p-truncated-json", type=_PROBABILITY, default=0.0, show_default=True)
@click.option("--token-lifetime", type=click.FloatRange(0), default=1200.0, show_default=True, help="Seconds.")
@click.option("--page-size-cap", type=click.IntRange(1), default=500, show_default=True)
@click.option("--refusal-style", type=click.Choice(["200", "400"]), default="200", show_default=True)
@click.option("--task-step-seconds", type=click.FloatRange(0), default=0.5, show_default=True)
@click.option(
    "--rebill-outcome",
    type=click.Choice(["complete", "fail", "batch_deleted", "stall"]),
    default="complete",
    show_default=True,
)
@click.option("--fault-operation", "fault_operations", multiple=True, help="Limit faults to this operation.")
@click.option(
    "--fail-invoice",
    "fail_invoices",
    multiple=True,
    callback=_fail_invoice,
    help="INVOICE_ID=refuse|500|html|truncated (repeatable).",
)
@click.option("--log-level", default="warning", show_default=True)
def imis(**options: Any) -> None:
    """Serve a simulated iMIS tenant with one seeded billing."""
    try:
        faults = Faults(
            latency_ms=options["latency_ms"],
            jitter_ms=options["jitter_ms"],
            p_429=options["p_429"],
            retry_after_seconds=options["retry_after"],
            p_500=options["p_500"],
            p_503_html=options["p_503"],
            p_hang=options["p_hang"],
            hang_seconds=options["hang_seconds"],
            p_reply_lost=options["p_reply_lost"],
            reply_lost_mode=options["reply_lost_mode"],
            p_html_200=options["p_html_200"],
            p_truncated_json=options["p_truncated_json"],
            token_lifetime_seconds=options["token_lifetime"],
            page_size_cap=options["page_size_cap"],
            refusal_style=options["refusal_style"],
            task_step_seconds=options["task_step_seconds"],
            rebill_outcome=options["rebill_outcome"],
            fault_operations=frozenset(options["fault_operations"]) or None,
            fail_invoices=options["fail_invoices"],
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    state = ImisState(options["username"], options["password"], faults, rng_seed=options["rng_seed"])
    seeded = state.seed_billing(
        options["invoices"],
        options["seed"],
        cycle_name=options["cycle_name"],
        accounting_method=options["accounting_method"],
        other_billings=options["other_billings"],
    )
    if options["examples"]:
        state.seed_examples()

    def ready(server: SimulatorServer) -> None:
        click.echo(
            f"iMIS simulator listening on {server.base_url} "
            f"({options['invoices']} invoices, seed {options['seed']}, user {options['username']})"
        )
        click.echo(f"original BillingLogKey: {seeded.original_key}")
        sys.stdout.flush()

    serve(state, options["host"], options["port"], on_ready=ready, log_level=options["log_level"])
