"""`make bench PROVIDER=salesforce`: the void phase of a Salesforce run by the orchestrator against a bare
asyncio + httpx loop making the same calls at the same cap.

For each latency and run size, the Salesforce simulator (its own process, on loopback) is seeded with
one invoice batch run per contender. Both make the same calls: the run's invoices in query pages
(following `nextRecordsUrl`), and per 200 of them planning's reads (their lines, every line on their
billing schedules, the other invoices on those: `IN` batches of at most 200 ids, each query's pages
followed), for the contract's verdicts (`verdicts.py`, shared), then one `void` per eligible
invoice. Every call of either holds one of `cap` slots. The bare loop does only that; the
orchestrator also opens the run (two `COUNT()` queries, before its clock starts), writes the plan
and a ledger row per invoice, claims each invoice with a lease and holds the tenant limit in Redis.

The void phase is timed, for the bare loop, from its first call (its token: the orchestrator's worker
fetches its own inside the run too) to its last void answered; for the orchestrator, from the run's
creation (after opening) to the last invoice voided (the ledger's times). What follows the voids
(watching them, generate) is not timed: the run is cancelled once the voids are counted. Both
contenders' verdicts are checked against the seeding's, and the simulator must have seen one void
per eligible invoice, no second void and no void of an ineligible invoice.

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
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from ops.bench import harness
from ops.bench.harness import Measured
from orchestrator.adapters.providers.http import decode_json
from orchestrator.adapters.providers.salesforce.client import DEFAULT_API_VERSION
from orchestrator.adapters.providers.salesforce.soql import Query, eq
from orchestrator.adapters.providers.salesforce.verdicts import BatchReading, batches, selection
from orchestrator.adapters.providers.salesforce.wire import QueryPage, Record

CLIENT_ID = "bench-connected-app"
CLIENT_SECRET = "bench-client-secret"  # noqa: S105 - the loopback simulator's login, nothing real
#: Far above what a bench uses: the pause at 90 % of the org's daily allocation is not what is measured.
DAILY_ALLOCATION = 10_000_000
CALLS_PER_INVOICE = 1  # void (besides planning's queries, which both make)
#: The simulator's own default, the contract's smallest page: planning reads the most pages at it.
SIMULATOR_PAGE_SIZE = 200
DATA = f"/services/data/{DEFAULT_API_VERSION}"
HEADERS = {"Accept": "application/json"}

R = TypeVar("R", bound=Record)
#: Invoice id -> its skip reason, or None when it is to be voided.
Verdicts = dict[str, str | None]


# --- the simulator ---------------------------------------------------------------------------------


@dataclass
class SalesforceSimulator(harness.SimulatorProcess):
    def seed(self, invoices: int, seed: int) -> tuple[str, Verdicts]:
        """A new invoice batch run: its id, and the contract's verdict on each of its invoices."""
        with self.admin() as client:
            reply = client.post("/_sim/runs", json={"invoices": invoices, "seed": seed})
            reply.raise_for_status()
            seeded: dict[str, Any] = reply.json()
        return seeded["invoiceBatchRunId"], seeded["expected"]


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


def eligible(expected: Mapping[str, str | None]) -> list[str]:
    return [invoice for invoice, reason in expected.items() if reason is None]


def disagreement(expected: Mapping[str, str | None], found: Mapping[str, str | None]) -> str | None:
    """How the verdicts `found` differ from the seeding's `expected`, or None when they are the same."""
    if found == expected:
        return None
    wrong = sorted(i for i in expected.keys() & found.keys() if expected[i] != found[i])
    missing, extra = expected.keys() - found.keys(), found.keys() - expected.keys()
    shown = ", ".join(f"{i}: {found[i]} (expected {expected[i]})" for i in wrong[:5])
    return f"{len(wrong)} verdicts differ ({shown}), {len(missing)} invoices not planned, {len(extra)} not expected"


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


@dataclass
class BareRun:
    verdicts: Verdicts
    seconds: float  # from its first call (the token) to the last void answered
    first_void_seconds: float | None


def bare_loop(sim: SalesforceSimulator, batch_run: str, expected: Verdicts, cap: int) -> Measured:
    sim.reset_counters()
    cpu_before = time.process_time()
    run = asyncio.run(_bare(sim.url, batch_run, cap))
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    wrong = disagreement(expected, run.verdicts) or voided_once(counters, eligible(expected))
    if wrong:
        raise RuntimeError(f"the bare loop: {wrong}")
    voids = sum(counters["voids"].values())
    return Measured(
        "bare asyncio + httpx",
        len(eligible(expected)),
        run.seconds,
        cpu,
        counters["peak_concurrency"],
        voids,
        {"first_write_seconds": run.first_void_seconds, "requests": counters["requests"]},
    )


async def _bare(url: str, batch_run: str, cap: int) -> BareRun:
    """A token (as the orchestrator's worker fetches its own in the run), then the run's invoices a query
    page at a time and per 200 of them planning's three reads (each query's pages followed) for their
    verdicts, as the orchestrator's planner makes them, one after another; meanwhile `cap` coroutines
    void the eligible invoices already read. Every call holds one of `cap` slots."""
    slots = asyncio.Semaphore(cap)
    to_void: asyncio.Queue[str | None] = asyncio.Queue()
    verdicts: Verdicts = {}
    first_void: list[float] = []
    limits = httpx.Limits(max_connections=cap + 1, max_keepalive_connections=cap + 1)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=30, trust_env=False) as client:

        async def get(path: str, params: Mapping[str, str] | None = None) -> Any:
            async with slots:
                reply = await client.get(path, params=params)
            reply.raise_for_status()
            return decode_json(reply.content)

        async def pages(query: Query[R]) -> AsyncIterator[QueryPage[R]]:
            model: type[QueryPage[R]] = QueryPage[query.sobject.record]  # type: ignore[name-defined]  # runtime generic
            page = model.model_validate(await get(f"{DATA}/query", {"q": query.soql}))
            yield page
            while not page.done:
                assert page.nextRecordsUrl, "done is false but there is no nextRecordsUrl"
                page = model.model_validate(await get(page.nextRecordsUrl))
                yield page

        async def records(queries: Sequence[Query[R]]) -> list[R]:
            return [record for query in queries async for page in pages(query) for record in page.records]

        async def plan() -> None:
            async for page in pages(selection(eq("InvoiceBatchRunId", batch_run))):
                for batch in batches(page.records):
                    reading = BatchReading(batch)
                    lines = await records(reading.lines_of_invoices())
                    on_schedules = await records(reading.lines_on_schedules(lines))
                    for verdict in reading.verdicts(await records(reading.other_invoices(on_schedules))):
                        invoice = str(verdict.invoice.Id)
                        verdicts[invoice] = None if verdict.reason is None else verdict.reason.value
                        if verdict.reason is None:
                            to_void.put_nowait(invoice)
            for _ in range(cap):
                to_void.put_nowait(None)

        async def void() -> None:
            while (invoice := await to_void.get()) is not None:
                async with slots:
                    first_void.append(time.perf_counter())
                    reply = await client.post(f"{DATA}/commerce/invoicing/invoices/{invoice}/actions/void")
                reply.raise_for_status()
                if not decode_json(reply.content).get("requestIdentifier"):
                    raise RuntimeError(f"a void without a request identifier: {reply.text[:200]}")

        started = time.perf_counter()
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        async with slots:
            token = await client.post("/services/oauth2/token", data=form)
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {decode_json(token.content)['access_token']}"
        await asyncio.gather(plan(), *(void() for _ in range(cap)))
        seconds = time.perf_counter() - started
    return BareRun(verdicts, seconds, min(first_void) - started if first_void else None)


# --- the orchestrator ------------------------------------------------------------------------------


def orchestrator(sim: SalesforceSimulator, contest: harness.Contest, batch_run: str, expected: Verdicts) -> Measured:
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
        in_void_phase = harness.calls_until(ours.container.ledger, timed.run_id, timed.times.last_settled_at)
        planned: Verdicts = {
            item.invoice.invoice_id: item.reason if item.state is ItemState.SKIPPED else None
            for item in ours.container.ledger.iter_items(timed.run_id)
        }
    counters = sim.counters()
    voided = timed.counts.get(ItemState.REVERSED, 0)
    wrong = disagreement(expected, planned) or voided_once(counters, eligible(expected))
    if wrong or voided != len(eligible(expected)) or timed.counts.get(ItemState.FAILED, 0):
        raise RuntimeError(f"not every eligible invoice was voided exactly once: {timed.counts}; {wrong}")
    skipped = timed.counts.get(ItemState.SKIPPED, 0)
    return timed.measured(
        voided,
        counters=counters,
        writes=sum(counters["voids"].values()),
        extra={"skipped": skipped, "calls_in_void_phase": in_void_phase},
    )


# --- the matrix ------------------------------------------------------------------------------------


def contest(contest: harness.Contest, *, page_size: int) -> tuple[Measured, Measured]:
    """Each on an invoice batch run of its own in one simulator (query pages of `page_size` records)."""
    with salesforce_simulator(latency_ms=contest.latency_ms, page_size=page_size) as sim:
        batch_run, expected = sim.seed(contest.invoices, 100)
        bare = bare_loop(sim, batch_run, expected, contest.cap)
        batch_run, expected = sim.seed(contest.invoices, 101)
        return bare, orchestrator(sim, contest, batch_run, expected)


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
