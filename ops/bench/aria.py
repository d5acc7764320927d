"""`make bench PROVIDER=aria`: Aria runs by the orchestrator against a bare asyncio + httpx loop making the
same calls at the same cap.

For each latency and bill-run size, the Aria simulator (its own process, on loopback) is seeded with
one bill run per contender (a bill date each). Both make the same calls: per eligible invoice its
header (object query), its lines (get_invoice_details_m) and gen_rb_m with the corrections applied,
and once per account whose header leaves the verdict open its invoice history (whether it was
rebilled already: skipping that read would risk a second rebill). The bare loop is handed the
eligible invoices; the orchestrator plans them itself (object-query pages, the histories), claims
each with a lease, keeps a ledger row per invoice and holds the tenant limit in Redis.

    python -m ops.bench.aria                       # 2,000 and 20,000 invoices at 50 ms and 0 ms
    python -m ops.bench.aria --invoices 2000 --latency-ms 50 --cap 8 --threads 16 --quiet-below 1.2
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from ops.bench import harness
from ops.bench.harness import Measured
from orchestrator.adapters.providers.aria.client import CORE_PATH, OBJECT_QUERY_PATH
from orchestrator.adapters.providers.aria.corrections import load_corrections, rebill_lines
from orchestrator.adapters.providers.aria.eligibility import rebill_unknown
from orchestrator.adapters.providers.aria.queries import one_invoice
from orchestrator.adapters.providers.aria.wire import InvoiceDetails, InvoiceHeader
from orchestrator.adapters.providers.http import decode_json, encode_json

CLIENT_NO = 7_000_123
AUTH_KEY = "bench-auth-key"
REASON_CODE = 2
CORRECTIONS = harness.ROOT / "ops" / "demo" / "aria-corrections.csv"
CALLS_PER_INVOICE = 3  # header, lines, gen_rb_m (and an account's history where its headers need it)
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


# --- the simulator ---------------------------------------------------------------------------------


@dataclass
class AriaSimulator(harness.SimulatorProcess):
    def seed(self, invoices: int, seed: int, bill_date: str) -> dict[str, Any]:
        with self.admin() as client:
            reply = client.post("/_sim/runs", json={"invoices": invoices, "seed": seed, "bill_date": bill_date})
            reply.raise_for_status()
            seeded: dict[str, Any] = reply.json()
            return seeded

    def eligible_by_account(self, bill_date: str) -> list[list[int]]:
        """The bill run's eligible invoices, an account's together (read before the timing starts)."""
        with self.admin() as client:
            invoices = client.get("/_sim/invoices", params={"bill_date": bill_date}).json()
        accounts: dict[int, list[int]] = {}
        for invoice in invoices:
            if invoice["eligible"]:
                accounts.setdefault(invoice["acct_no"], []).append(invoice["invoice_no"])
        return list(accounts.values())


@contextmanager
def aria_simulator(*, latency_ms: float) -> Iterator[AriaSimulator]:
    """`python -m simulators.aria` on a free port, with nothing of its own seeded (each contender seeds)."""
    command = [
        sys.executable, "-m", "simulators.aria", "--port", "0", "--invoices", "0",
        "--client-no", str(CLIENT_NO), "--auth-key", AUTH_KEY, "--latency-ms", str(latency_ms),
    ]  # fmt: skip
    with harness.simulator_process(command, "bill date: ") as (proc, url, _):
        yield AriaSimulator(proc, url)


# --- the bare loop ---------------------------------------------------------------------------------


def bare_loop(sim: AriaSimulator, accounts: list[list[int]], cap: int) -> Measured:
    sim.reset_counters()
    cpu_before = time.process_time()
    started = time.perf_counter()
    asyncio.run(_bare(sim.url, accounts, cap))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    return Measured(
        "bare asyncio + httpx",
        sum(len(invoice_nos) for invoice_nos in accounts),
        seconds,
        cpu,
        counters["peak_concurrency"],
        counters["rebills_total"],
    )


async def _bare(url: str, accounts: list[list[int]], cap: int) -> None:
    """`cap` coroutines, each taking the next account and rebilling its invoices one after another
    (Aria refuses concurrent work on one billing group with 3108); an account's history is read once,
    at its first header that leaves the verdict open, as the orchestrator's planning does."""
    corrections = load_corrections(CORRECTIONS)
    queue = list(reversed(accounts))
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) as client:

        async def call(path: str, rest_call: str, **params: Any) -> Any:
            body = {"rest_call": rest_call, "client_no": CLIENT_NO, "auth_key": AUTH_KEY, "output_format": "json"}
            reply = await client.post(path, content=encode_json({**body, **params}), headers=JSON_HEADERS)
            reply.raise_for_status()
            payload = decode_json(reply.content)
            if payload["error_code"] != 0:
                raise RuntimeError(f"{rest_call}: {payload['error_code']} {payload['error_msg']}")
            return payload

        async def rebill(invoice_no: int, histories_read: set[int]) -> None:
            page = await call(
                OBJECT_QUERY_PATH, "get_invoice_information_m", query_string=one_invoice(invoice_no).text, limit=1
            )
            header = InvoiceHeader.model_validate(page["invoice_details_m"][0])
            acct_no = header.acct_no
            if rebill_unknown(header) and acct_no not in histories_read:
                histories_read.add(acct_no)
                await call(
                    CORE_PATH,
                    "get_invoice_history_m",
                    acct_no=acct_no,
                    master_plan_instance_id=-1,
                    include_voided="false",
                    rb_option=0,
                )
            details = InvoiceDetails.model_validate(
                await call(CORE_PATH, "get_invoice_details_m", invoice_no=invoice_no, acct_no=acct_no)
            )
            lines = rebill_lines(details.invoice_line_details, corrections)
            await call(
                CORE_PATH,
                "gen_rb_m",
                acct_no=acct_no,
                orig_invoice_no=invoice_no,
                reason_cd=REASON_CODE,
                rb_line_items=[item.to_wire() for item in lines.items],
                do_collect=0,
                do_write="true",
                alt_caller_id="bench",
                rb_comments="bench",
            )

        async def worker() -> None:
            while queue:
                histories_read: set[int] = set()
                for invoice_no in queue.pop():
                    await rebill(invoice_no, histories_read)

        await asyncio.gather(*(worker() for _ in range(cap)))


# --- the orchestrator ------------------------------------------------------------------------------


def orchestrator(sim: AriaSimulator, contest: harness.Contest, bill_date: str, eligible: int) -> Measured:
    from orchestrator.domain.run import ItemState

    tenant = {
        "REBILL_ARIA_BASE_URL": sim.url,
        "REBILL_ARIA_CLIENT_NO": str(CLIENT_NO),
        "REBILL_ARIA_AUTH_KEY": AUTH_KEY,
        "REBILL_ARIA_MAX_CONCURRENCY": str(contest.cap),
    }
    workdir = contest.workdir("aria")
    with harness.orchestrator(contest.backends, tenant, threads=contest.threads, workdir=workdir) as ours:
        timed = ours.timed_run(
            "aria",
            {"bill_date": bill_date},
            {"corrections": str(CORRECTIONS), "reason_code": REASON_CODE},
            write="gen_rb_m",
            before=sim.reset_counters,
            profile=contest.profile,
        )
    counters = sim.counters()
    rebilled = timed.counts.get(ItemState.REVERSED, 0)
    if rebilled != eligible or timed.counts.get(ItemState.FAILED, 0) or counters["duplicate_attempts"]:
        raise RuntimeError(f"not every eligible invoice was rebilled exactly once: {timed.counts}, {counters}")
    return timed.measured(
        rebilled,
        counters=counters,
        writes=counters["rebills_total"],
        extra={"busy_refusals": counters["busy_refusals"]},
    )


# --- the matrix ------------------------------------------------------------------------------------


def contest(contest: harness.Contest) -> tuple[Measured, Measured]:
    """Each on a bill run of its own (a bill date each) in one simulator."""
    with aria_simulator(latency_ms=contest.latency_ms) as sim:
        sim.seed(contest.invoices, 100, "2031-01-01")
        bare = bare_loop(sim, sim.eligible_by_account("2031-01-01"), contest.cap)
        seeded = sim.seed(contest.invoices, 101, "2031-02-01")
        return bare, orchestrator(sim, contest, "2031-02-01", len(seeded["eligible"]))


def main(argv: list[str] | None = None) -> None:
    args = harness.platform_args("python -m ops.bench.aria", __doc__, argv)
    harness.compare_platform("Aria", args, contest, calls_per_invoice=CALLS_PER_INVOICE, done="rebilled")


if __name__ == "__main__":
    main()
