"""`make bench PROVIDER=aria`: Aria runs by the orchestrator against a bare asyncio + httpx loop making the
same calls at the same cap.

For each latency and bill-run size, the Aria simulator (its own process, on loopback) is seeded with
one bill run per contender (a bill date each). Per eligible invoice both make the same three calls:
the invoice's header (object query), its lines (get_invoice_details_m), and gen_rb_m with the
corrections applied. The bare loop is handed the eligible invoices; the orchestrator plans them
itself (object-query pages, and the history of accounts whose headers leave the verdict open),
claims each with a lease, keeps a ledger row per invoice and holds the tenant limit in Redis.

    python -m ops.bench.aria                       # 2,000 and 20,000 invoices at 50 ms and 0 ms
    python -m ops.bench.aria --invoices 2000 --latency-ms 50 --cap 8 --threads 16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from ops.bench import harness
from ops.bench.contenders import Measured, run_times
from orchestrator.adapters.broker import embedded
from orchestrator.adapters.providers.aria.client import CORE_PATH, OBJECT_QUERY_PATH
from orchestrator.adapters.providers.aria.corrections import load_corrections, rebill_lines
from orchestrator.adapters.providers.aria.queries import one_invoice
from orchestrator.adapters.providers.aria.wire import InvoiceDetails
from orchestrator.adapters.providers.http import decode_json, encode_json

CLIENT_NO = 7_000_123
AUTH_KEY = "bench-auth-key"
REASON_CODE = 2
CORRECTIONS = harness.ROOT / "ops" / "demo" / "aria-corrections.csv"
CALLS_PER_INVOICE = 3  # header, lines, gen_rb_m
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.aria", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=harness.ints, default=[2000, 20000], help="bill-run sizes")
    parser.add_argument("--latency-ms", type=harness.floats, default=[50.0, 0.0], help="simulator latency per call")
    parser.add_argument("--cap", type=harness.ints, default=[8], help="REBILL_ARIA_MAX_CONCURRENCY and the loop's")
    parser.add_argument("--threads", type=int, default=16, help="worker threads")
    parser.add_argument("--redis-url", default=None, help="Redis (default: the embedded one)")
    parser.add_argument("--database-url", default=None, help="the ledger (default: SQLite)")
    parser.add_argument("--json", type=Path, help="where to write the results (default .rebill/bench/)")
    return parser.parse_args(argv)


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
    (Aria refuses concurrent work on one billing group with 3108)."""
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
            while queue:
                for invoice_no in queue.pop():
                    await rebill(invoice_no)

        await asyncio.gather(*(worker() for _ in range(cap)))


# --- the orchestrator ------------------------------------------------------------------------------


def orchestrator(
    sim: AriaSimulator, backends: harness.Backends, bill_date: str, eligible: int, *, cap: int, threads: int
) -> Measured:
    from orchestrator.bootstrap import Container
    from orchestrator.config import load_settings
    from orchestrator.domain.run import OPEN_ITEM_STATES, ItemState
    from orchestrator.services import planning

    workdir = backends.workdir / f"aria-{time.time_ns()}"
    workdir.mkdir(parents=True)
    with backends.ledger_url() as ledger_url:
        env = {
            "REBILL_ARIA_BASE_URL": sim.url,
            "REBILL_ARIA_CLIENT_NO": str(CLIENT_NO),
            "REBILL_ARIA_AUTH_KEY": AUTH_KEY,
            "REBILL_ARIA_MAX_CONCURRENCY": str(cap),
            "REBILL_WORKER_CONCURRENCY": str(threads),
            "REBILL_DATA_DIR": str(backends.workdir / "data"),
            "REBILL_DATABASE_URL": ledger_url,
            "REBILL_QUEUE": f"rebill-bench-{time.time_ns()}",
        }
        if backends.redis_url:
            env["REBILL_BROKER_URL"] = backends.redis_url
        container = Container(load_settings(**{k[len("REBILL_") :].lower(): v for k, v in env.items()}))
        container.ledger  # noqa: B018 - migrate before the worker starts, so they do not race for it
        worker = harness.start_worker(env, threads=threads, log=workdir / "worker.log")
        try:
            worker.wait_ready()
            sim.reset_counters()
            cpu_before = harness.cpu_seconds(worker.pid)
            started = time.perf_counter()
            run = planning.start_run(
                container.context,
                "aria",
                {"bill_date": bill_date},
                container.settings.run_options(),
                provider_options={"corrections": str(CORRECTIONS), "reason_code": REASON_CODE},
            )
            ledger = container.ledger
            deadline = time.monotonic() + 3600
            while True:
                current = ledger.get_run(run.id)
                assert current is not None
                counts = ledger.item_counts(run.id)
                if current.planned and not any(counts.get(state, 0) for state in OPEN_ITEM_STATES):
                    break
                if current.state.is_final or time.monotonic() > deadline:
                    raise RuntimeError(f"run {run.id} stopped as {current.state.value}: {current.reason}")
                time.sleep(0.05)
            wall = time.perf_counter() - started
            cpu = harness.cpu_seconds(worker.pid) - cpu_before
            counters = sim.counters()
            rebilled = counts.get(ItemState.REVERSED, 0)
            if rebilled != eligible or counts.get(ItemState.FAILED, 0) or counters["duplicate_attempts"]:
                raise RuntimeError(f"not every eligible invoice was rebilled exactly once: {counts}, {counters}")
            times = run_times(ledger, run.id, write="gen_rb_m")
            settled = (times.last_settled_at - times.created_at).total_seconds() if times.last_settled_at else wall
            return Measured(
                "orchestrator",
                rebilled,
                settled,
                cpu,
                counters["peak_concurrency"],
                counters["rebills_total"],
                {
                    "worker_peak_rss_mib": harness.peak_rss_mib(worker.pid),
                    "requests": sum(counters["requests"].values()),
                },
            )
        finally:
            worker.stop()
            container.close()


# --- the matrix ------------------------------------------------------------------------------------


def contest(
    backends: harness.Backends, *, latency: float, invoices: int, cap: int, threads: int
) -> list[dict[str, Any]]:
    print(f"\n== Aria: {invoices} invoices, {latency:g} ms latency, cap {cap} ==", flush=True)
    with aria_simulator(latency_ms=latency) as sim:
        sim.seed(invoices, 100, "2031-01-01")
        bare = bare_loop(sim, sim.eligible_by_account("2031-01-01"), cap)
        _show(bare)
        ours_run = sim.seed(invoices, 101, "2031-02-01")
        ours = orchestrator(sim, backends, "2031-02-01", len(ours_run["eligible"]), cap=cap, threads=threads)
        _show(ours)
    limit = cap / (CALLS_PER_INVOICE * latency / 1000) if latency > 0 else math.inf
    return [
        {
            "latency_ms": latency,
            "invoices": invoices,
            "cap": cap,
            "contender": result.name,
            "rebilled": result.invoices,
            "seconds": round(result.seconds, 3),
            "per_second": round(result.per_second, 1),
            "vs_bare": round(result.per_second / bare.per_second, 3),
            "vs_theoretical": round(result.per_second / limit, 3) if math.isfinite(limit) else None,
            "peak_in_flight": result.peak_in_flight,
            "cpu_ms_per_invoice": round(result.cpu_ms_per_invoice, 3),
            "orchestration_cpu_ms_per_invoice": (
                round(result.cpu_ms_per_invoice - bare.cpu_ms_per_invoice, 3) if result is not bare else None
            ),
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.extra.items()},
        }
        for result in (bare, ours)
    ]


def _show(result: Measured) -> None:
    print(
        f"  {result.name:22} {result.invoices:6} rebilled in {result.seconds:7.2f} s = {result.per_second:7.1f}/s, "
        f"peak in flight {result.peak_in_flight}, CPU {result.cpu_ms_per_invoice:.3f} ms/invoice",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backends = harness.Backends(args.redis_url, args.database_url)
    info = harness.machine()
    print(f"machine: {info}\nbackends: {backends.describe()}\nload average before: {harness.load_average():.2f}")
    rows: list[dict[str, Any]] = []
    try:
        for latency, invoices, cap in itertools.product(args.latency_ms, args.invoices, args.cap):
            rows += contest(backends, latency=latency, invoices=invoices, cap=cap, threads=args.threads)
    finally:
        if not backends.redis_url:
            embedded.stop(backends.workdir / "data")
    print("\n| latency | invoices | cap | contender | rebilled/s | vs bare | vs theoretical | CPU ms/invoice "
          "| orchestration CPU ms/invoice |")  # fmt: skip
    print("|---" * 9 + "|")
    for row in rows:
        print(
            f"| {row['latency_ms']:g} ms | {row['invoices']} | {row['cap']} | {row['contender']} | {row['per_second']} "
            f"| {row['vs_bare']} | {row['vs_theoretical'] or '-'} | {row['cpu_ms_per_invoice']} "
            f"| {row['orchestration_cpu_ms_per_invoice'] or '-'} |"
        )
    results = {
        "platform": "aria",
        "machine": info,
        "backends": backends.describe(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "throughput": rows,
        "load_average_after": round(harness.load_average(), 2),
    }
    target = args.json or harness.ROOT / ".rebill" / "bench" / f"aria-{int(time.time())}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {target}")


if __name__ == "__main__":
    main()
