"""`make bench PROVIDER=salesforce`: the void phase of a Salesforce run by the orchestrator against a bare
asyncio + httpx loop making the same void calls at the same cap.

For each latency and run size, the Salesforce simulator (its own process, on loopback) is seeded with
one invoice batch run per contender. Both send one `void` per eligible invoice. The bare loop is handed
the eligible invoices (from the seeding, before the timing starts); the orchestrator opens the run,
plans it (the run's invoices page by page, their lines and the other invoices on their billing
schedules, 200 ids per query, for the contract's verdicts), claims each invoice with a lease, keeps a
ledger row per invoice and holds the tenant limit in Redis. Its void phase is timed from the start of
the run to the last invoice voided; what follows (watching the voids, generate) is not timed, and the
run is cancelled once the voids are counted.

    python -m ops.bench.salesforce                 # 2,000 and 20,000 invoices at 50 ms and 0 ms
    python -m ops.bench.salesforce --invoices 2000 --latency-ms 50 --cap 8 --threads 16 --quiet-below 1.2
    python -m ops.bench.salesforce --page-size 2000   # query pages as large as a real org serves
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ops.bench import harness
from ops.bench.harness import Measured
from orchestrator.adapters.providers.http import decode_json
from orchestrator.adapters.providers.salesforce.client import DEFAULT_API_VERSION

CLIENT_ID = "bench-connected-app"
CLIENT_SECRET = "bench-client-secret"  # noqa: S105 - the loopback simulator's login, nothing real
#: Far above what a bench uses: the pause at 90 % of the org's daily allocation is not what is measured.
DAILY_ALLOCATION = 10_000_000
CALLS_PER_INVOICE = 1  # void
#: The simulator's own default, the contract's smallest page: planning reads the most pages at it.
SIMULATOR_PAGE_SIZE = 200
HEADERS = {"Accept": "application/json"}


# --- the simulator ---------------------------------------------------------------------------------


@dataclass
class SalesforceSimulator(harness.SimulatorProcess):
    def seed(self, invoices: int, seed: int) -> tuple[str, list[str]]:
        """A new invoice batch run: its id, and its eligible invoices (what the contract says may be voided)."""
        with self.admin() as client:
            reply = client.post("/_sim/runs", json={"invoices": invoices, "seed": seed})
            reply.raise_for_status()
            seeded: dict[str, Any] = reply.json()
        eligible = [invoice for invoice, reason in seeded["expected"].items() if reason is None]
        return seeded["invoiceBatchRunId"], eligible

    def token(self) -> str:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        with self.admin() as client:
            reply = client.post("/services/oauth2/token", data=form)
            reply.raise_for_status()
            access: str = reply.json()["access_token"]
            return access


@contextmanager
def salesforce_simulator(*, latency_ms: float, page_size: int) -> Iterator[SalesforceSimulator]:
    """`python -m simulators.salesforce` on a free port, its own run empty (each contender seeds one)."""
    command = [
        sys.executable, "-m", "simulators.salesforce", "--port", "0", "--invoices", "0",
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--latency-ms", str(latency_ms),
        "--daily-allocation", str(DAILY_ALLOCATION), "--page-size", str(page_size),
    ]  # fmt: skip
    with harness.simulator_process(command, "invoice batch run: ") as (proc, url, _):
        yield SalesforceSimulator(proc, url)


def voided_once(counters: dict[str, Any], eligible: list[str]) -> str | None:
    """What is wrong with the voids the simulator counted, or None when each eligible invoice got one."""
    voids: dict[str, int] = counters["voids"]
    if voids != dict.fromkeys(eligible, 1):
        return f"{len(voids)} invoices voided ({sum(voids.values())} voids) of {len(eligible)} eligible"
    if counters["duplicate_void_attempts"] or counters["ineligible_void_attempts"]:
        return (
            f"{counters['duplicate_void_attempts']} second voids and "
            f"{counters['ineligible_void_attempts']} voids of ineligible invoices attempted"
        )
    return None


# --- the bare loop ---------------------------------------------------------------------------------


def bare_loop(sim: SalesforceSimulator, eligible: list[str], cap: int) -> Measured:
    access = sim.token()  # outside the timing, as the orchestrator's
    sim.reset_counters()
    cpu_before = time.process_time()
    started = time.perf_counter()
    asyncio.run(_bare(sim.url, access, eligible, cap))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    wrong = voided_once(counters, eligible)
    if wrong:
        raise RuntimeError(f"the bare loop: {wrong}")
    voids = sum(counters["voids"].values())
    return Measured("bare asyncio + httpx", len(eligible), seconds, cpu, counters["peak_concurrency"], voids)


async def _bare(url: str, access: str, eligible: list[str], cap: int) -> None:
    """`cap` coroutines, each taking the next invoice and voiding it (its reply read as the client reads it)."""
    queue = list(reversed(eligible))
    headers = {**HEADERS, "Authorization": f"Bearer {access}"}
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    actions = f"/services/data/{DEFAULT_API_VERSION}/commerce/invoicing/invoices"
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30, trust_env=False) as client:

        async def worker() -> None:
            while queue:
                reply = await client.post(f"{actions}/{queue.pop()}/actions/void")
                reply.raise_for_status()
                if not decode_json(reply.content).get("requestIdentifier"):
                    raise RuntimeError(f"a void without a request identifier: {reply.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(cap)))


# --- the orchestrator ------------------------------------------------------------------------------


def orchestrator(sim: SalesforceSimulator, contest: harness.Contest, batch_run: str, eligible: list[str]) -> Measured:
    from orchestrator.domain.run import ItemState
    from orchestrator.services import runs

    tenant = {
        "REBILL_SALESFORCE_BASE_URL": sim.url,
        "REBILL_SALESFORCE_CLIENT_ID": CLIENT_ID,
        "REBILL_SALESFORCE_CLIENT_SECRET": CLIENT_SECRET,
        "REBILL_SALESFORCE_MAX_CONCURRENCY": str(contest.cap),
    }
    workdir = contest.workdir("salesforce")
    with harness.orchestrator(contest.backends, tenant, threads=contest.threads, workdir=workdir) as ours:
        ours.container.providers.get("salesforce").check()  # this process's token, outside the timing
        timed = ours.timed_run(
            "salesforce",
            {"invoice_batch_run": batch_run},
            write="void",
            before=sim.reset_counters,
            profile=contest.profile,
        )
        runs.cancel_run(ours.container.context, timed.run_id)  # no generate step was sent yet: it can be
    counters = sim.counters()
    voided = timed.counts.get(ItemState.REVERSED, 0)
    wrong = voided_once(counters, eligible)
    if wrong or voided != len(eligible) or timed.counts.get(ItemState.FAILED, 0):
        raise RuntimeError(f"not every eligible invoice was voided exactly once: {timed.counts}; {wrong}")
    skipped = timed.counts.get(ItemState.SKIPPED, 0)
    return timed.measured(voided, counters=counters, writes=sum(counters["voids"].values()), extra={"skipped": skipped})


# --- the matrix ------------------------------------------------------------------------------------


def contest(contest: harness.Contest, *, page_size: int) -> tuple[Measured, Measured]:
    """Each on an invoice batch run of its own in one simulator (query pages of `page_size` records)."""
    with salesforce_simulator(latency_ms=contest.latency_ms, page_size=page_size) as sim:
        _, eligible = sim.seed(contest.invoices, 100)
        bare = bare_loop(sim, eligible, contest.cap)
        batch_run, eligible = sim.seed(contest.invoices, 101)
        return bare, orchestrator(sim, contest, batch_run, eligible)


def main(argv: list[str] | None = None) -> None:
    args = harness.platform_args("python -m ops.bench.salesforce", __doc__, argv, configure=_page_size)
    contender = functools.partial(contest, page_size=args.page_size)
    harness.compare_platform("Salesforce", args, contender, calls_per_invoice=CALLS_PER_INVOICE, done="voided")


def _page_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--page-size",
        type=int,
        default=SIMULATOR_PAGE_SIZE,
        help="records per query page the simulator serves (a real org: up to 2,000)",
    )


if __name__ == "__main__":
    main()
