"""`make bench PROVIDER=aria`: Aria runs by the orchestrator against a bare asyncio + httpx loop making the
same calls at the same cap.

For each latency and bill-run size, the Aria simulator (its own process, on loopback) is seeded with
one bill run per contender (a bill date each). Both make the same calls: the bill run's headers in
object-query pages, the invoice history of each account whose header leaves the verdict open (to
tell an invoice rebilled already from a paid one), and per eligible invoice its header again, its
lines (get_invoice_details_m) and gen_rb_m with the corrections applied. The bare loop does only that;
the orchestrator also claims each invoice with a lease, keeps a ledger row per invoice and holds the
tenant limit in Redis.

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
from datetime import date
from typing import Any

import httpx

from ops.bench import harness
from ops.bench.harness import Measured
from orchestrator.adapters.providers.aria.client import CORE_PATH, OBJECT_QUERY_PATH
from orchestrator.adapters.providers.aria.corrections import load_corrections, rebill_lines
from orchestrator.adapters.providers.aria.eligibility import rebill_unknown, verdict
from orchestrator.adapters.providers.aria.queries import bill_run, one_invoice
from orchestrator.adapters.providers.aria.settings import AriaSettings
from orchestrator.adapters.providers.aria.wire import InvoiceDetails, InvoiceHeader, InvoiceHistory, InvoicePage
from orchestrator.adapters.providers.http import decode_json, encode_json

CLIENT_NO = 7_000_123
AUTH_KEY = "bench-auth-key"
REASON_CODE = 2
CORRECTIONS = harness.ROOT / "ops" / "demo" / "aria-corrections.csv"
CALLS_PER_INVOICE = 3  # header, lines, gen_rb_m (besides the pages and histories both read)
PAGE: int = AriaSettings.model_fields["page_size"].default  # headers per object-query page, as the provider
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


def bare_loop(sim: AriaSimulator, bill_date: str, cap: int) -> Measured:
    sim.reset_counters()
    cpu_before = time.process_time()
    started = time.perf_counter()
    rebilled = asyncio.run(_bare(sim.url, date.fromisoformat(bill_date), cap))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    return Measured(
        "bare asyncio + httpx", rebilled, seconds, cpu, counters["peak_concurrency"], counters["rebills_total"]
    )


async def _bare(url: str, bill_date: date, cap: int) -> int:
    """The bill run's headers a page at a time (the orchestrator's query and page size); per account, its
    history once where a header needs it, then its eligible invoices one after another (Aria refuses
    concurrent work on one billing group with 3108), each as the orchestrator does it: its header again,
    its lines, gen_rb_m. Pages are read while `cap` coroutines work the accounts already read, and every
    call holds one of `cap` slots. Returns how many invoices were rebilled."""
    corrections = load_corrections(CORRECTIONS)
    slots = asyncio.Semaphore(cap)
    accounts: asyncio.Queue[tuple[int, list[InvoiceHeader]] | None] = asyncio.Queue()
    busy: dict[int, asyncio.Lock] = {}
    histories: dict[int, InvoiceHistory] = {}
    rebilled = 0
    limits = httpx.Limits(max_connections=cap + 1, max_keepalive_connections=cap + 1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) as client:

        async def call(path: str, rest_call: str, **params: Any) -> Any:
            body = {"rest_call": rest_call, "client_no": CLIENT_NO, "auth_key": AUTH_KEY, "output_format": "json"}
            async with slots:
                reply = await client.post(path, content=encode_json({**body, **params}), headers=JSON_HEADERS)
            reply.raise_for_status()
            payload = decode_json(reply.content)
            if payload["error_code"] != 0:
                raise RuntimeError(f"{rest_call}: {payload['error_code']} {payload['error_msg']}")
            return payload

        async def read_pages() -> None:
            query, offset = bill_run(bill_date).text, 0
            while True:
                page = InvoicePage.model_validate(
                    await call(
                        OBJECT_QUERY_PATH, "get_invoice_information_m", query_string=query, limit=PAGE, offset=offset
                    )
                )
                by_account: dict[int, list[InvoiceHeader]] = {}
                for header in page.invoice_details_m:
                    by_account.setdefault(header.acct_no, []).append(header)
                for account in by_account.items():
                    accounts.put_nowait(account)
                offset += len(page.invoice_details_m)
                if not page.invoice_details_m or (page.total_records is not None and offset >= page.total_records):
                    break
            for _ in range(cap):
                accounts.put_nowait(None)

        async def rebill(invoice_no: int) -> None:
            page = await call(
                OBJECT_QUERY_PATH, "get_invoice_information_m", query_string=one_invoice(invoice_no).text, limit=1
            )
            acct_no = page["invoice_details_m"][0]["acct_no"]
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
            nonlocal rebilled
            while (account := await accounts.get()) is not None:
                acct_no, headers = account
                async with busy.setdefault(acct_no, asyncio.Lock()):
                    if any(rebill_unknown(header) for header in headers) and acct_no not in histories:
                        histories[acct_no] = InvoiceHistory.model_validate(
                            await call(
                                CORE_PATH,
                                "get_invoice_history_m",
                                acct_no=acct_no,
                                master_plan_instance_id=-1,
                                include_voided="false",
                                rb_option=0,
                            )
                        )
                    for header in headers:
                        history = histories.get(acct_no)
                        done_before = history is not None and history.rebilled(header.invoice_no)
                        if verdict(header, rebilled=done_before) is None:
                            await rebill(header.invoice_no)
                            rebilled += 1

        await asyncio.gather(read_pages(), *(worker() for _ in range(cap)))
    return rebilled


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
        eligible = len(sim.seed(contest.invoices, 100, "2031-01-01")["eligible"])
        bare = bare_loop(sim, "2031-01-01", contest.cap)
        if bare.invoices != eligible or bare.reversals != eligible:
            raise RuntimeError(f"the bare loop rebilled {bare.invoices} ({bare.reversals} gen_rb_m) of {eligible}")
        seeded = sim.seed(contest.invoices, 101, "2031-02-01")
        return bare, orchestrator(sim, contest, "2031-02-01", len(seeded["eligible"]))


def main(argv: list[str] | None = None) -> None:
    args = harness.platform_args("python -m ops.bench.aria", __doc__, argv)
    harness.compare_platform("Aria", args, contest, calls_per_invoice=CALLS_PER_INVOICE, done="rebilled")


if __name__ == "__main__":
    main()
