"""`make bench`: the orchestrator against a bare asyncio + httpx loop and a sequential script.

For each latency and invoice count, a fresh simulator (its own process, on loopback) is seeded with
one billing per contender; each contender reverses that billing's open invoices at the same cap.
Then the coordinator alone plans billings of two sizes (peak memory), and a large run is started to
time its first reversal.

    python -m ops.bench                 # the full matrix (about 20 minutes on 2 cores)
    python -m ops.bench --quick         # 2,000 invoices only, smaller planning sizes (about 2 minutes)
    python -m ops.bench --redis-url redis://127.0.0.1:6379/0 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Without --redis-url / --database-url (or REBILL_BENCH_REDIS_URL / REBILL_BENCH_DATABASE_URL) the
orchestrator runs on the embedded Redis and a SQLite ledger, as `make demo` does.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.bench import harness
from ops.bench.contenders import REVERSAL, bare_loop, orchestrator, orchestrator_env, sequential
from ops.bench.harness import Measured, show

CALLS_PER_INVOICE = 2  # CanCashInvoiceBeReversed + ProcessCashReversal


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 invoices, planning at 10,000 and 50,000")
    parser.add_argument("--invoices", type=harness.ints, help="billing sizes (default 2000,20000)")
    parser.add_argument("--latency-ms", type=harness.floats, default=[50.0, 0.0], help="simulator latency per call")
    parser.add_argument(
        "--cap",
        type=harness.ints,
        default=[8],
        help="REBILL_IMIS_MAX_CONCURRENCY, and the bare loop's (a list sweeps them)",
    )
    parser.add_argument("--threads", type=harness.ints, default=[16], help="worker threads (a list sweeps them)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--sequential-seconds", type=float, help="time box of the sequential script (default 10)")
    parser.add_argument("--plan-sizes", type=harness.ints, help="coordinator memory sizes (default 10000,200000)")
    parser.add_argument("--first-reversal-invoices", type=int, default=100_000)
    parser.add_argument(
        "--only",
        default="orchestrator,bare,sequential,memory,first",
        help="comma list of: orchestrator, bare, sequential, memory, first",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REBILL_BENCH_REDIS_URL"))
    parser.add_argument("--database-url", default=os.environ.get("REBILL_BENCH_DATABASE_URL"))
    parser.add_argument("--profile", type=Path, help="py-spy the workers (collapsed stacks into this folder)")
    parser.add_argument(
        "--quiet-below", type=float, help="wait for the load average under this before each measurement"
    )
    parser.add_argument("--json", type=Path, help="where to write the results (default .rebill/bench/)")
    args = parser.parse_args(argv)
    if args.invoices is None:
        args.invoices = [2000] if args.quick else [2000, 20000]
    if args.plan_sizes is None:
        args.plan_sizes = [10_000, 50_000] if args.quick else [10_000, 200_000]
    if args.sequential_seconds is None:
        args.sequential_seconds = 5.0 if args.quick else 10.0
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    return args


def theoretical(cap: int, latency_ms: float) -> float:
    """cap / (calls per invoice x latency): invoices per second if only the API's latency counted."""
    return cap / (CALLS_PER_INVOICE * latency_ms / 1000) if latency_ms > 0 else math.inf


def throughput_matrix(args: argparse.Namespace, backends: harness.Backends) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for latency, invoices, cap in itertools.product(args.latency_ms, args.invoices, args.cap):
        rows += _contest(args, backends, latency=latency, invoices=invoices, cap=cap)
    return rows


def _contest(
    args: argparse.Namespace, backends: harness.Backends, *, latency: float, invoices: int, cap: int
) -> list[dict[str, Any]]:
    """The contenders on one billing size, latency and cap, each on a billing of its own."""
    rows: list[dict[str, Any]] = []
    load = harness.wait_until_quiet(args.quiet_below)
    print(f"\n== {invoices} invoices, {latency:g} ms latency, cap {cap} (load average {load:.2f}) ==", flush=True)
    with harness.simulator(invoices=invoices, latency_ms=latency, seed=11) as sim:
        results: list[Measured] = []
        seed = 100
        if "bare" in args.only:
            billing = sim.seed(invoices, seed)
            seed += 1
            results.append(bare_loop(sim, list(billing["open_invoice_ids"]), cap))
            show(results[-1])
        if "sequential" in args.only:
            billing = sim.seed(invoices, seed)
            seed += 1
            results.append(sequential(sim, list(billing["open_invoice_ids"]), max_seconds=args.sequential_seconds))
            show(results[-1])
        if "orchestrator" in args.only:
            for threads in args.threads:
                billing = sim.seed(invoices, seed)
                seed += 1
                workdir = backends.workdir / f"run-{time.time_ns()}"
                workdir.mkdir(parents=True)
                measured = orchestrator(
                    sim,
                    backends,
                    billing["original_key"],
                    len(billing["open_invoice_ids"]),
                    cap=cap,
                    threads=threads,
                    workers=args.workers,
                    workdir=workdir,
                    profile=args.profile / f"{latency:g}ms-{invoices}-{threads}t" if args.profile else None,
                )
                results.append(measured)
                show(measured)
    bare = next((r for r in results if r.name.startswith("bare")), None)
    seq = next((r for r in results if r.name.startswith("sequential")), None)
    limit = theoretical(cap, latency)
    for result in results:
        rows.append(
            {
                "latency_ms": latency,
                "invoices": invoices,
                "cap": cap,
                "contender": result.name,
                "measured_invoices": result.invoices,
                "seconds": round(result.seconds, 3),
                "per_second": round(result.per_second, 1),
                "vs_bare": round(result.per_second / bare.per_second, 3) if bare else None,
                "vs_sequential": round(result.per_second / seq.per_second, 1) if seq else None,
                "vs_theoretical": round(result.per_second / limit, 3) if math.isfinite(limit) else None,
                "theoretical_per_second": round(limit, 1) if math.isfinite(limit) else None,
                "peak_in_flight": result.peak_in_flight,
                "cpu_s_per_1000": round(result.cpu_ms_per_invoice, 3),
                # What orchestrating adds: the contender's CPU beyond the bare loop's for the same calls.
                "orchestration_cpu_s_per_1000": (
                    round(result.cpu_ms_per_invoice - bare.cpu_ms_per_invoice, 3)
                    if bare and result is not bare and not result.name.startswith("sequential")
                    else None
                ),
                "reversals_seen_by_simulator": result.reversals,
                "load_average_before": round(load, 2),
                **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.extra.items()},
            }
        )
    return rows


def coordinator_memory(args: argparse.Namespace, backends: harness.Backends) -> list[dict[str, Any]]:
    """Plan billings of each size in a process of its own; its peak RSS is the coordinator's."""
    from orchestrator.bootstrap import Container
    from orchestrator.services import planning

    rows = []
    for size in args.plan_sizes:
        load = harness.wait_until_quiet(args.quiet_below)
        print(f"\n== coordinator alone: planning {size} invoices (load average {load:.2f}) ==", flush=True)
        with harness.simulator(invoices=size, latency_ms=0, seed=21) as sim, backends.ledger_url() as ledger_url:
            env = orchestrator_env(sim, backends, ledger_url, cap=args.cap[0], threads=1)
            settings = harness.settings_from_env(env)
            container = Container(settings)
            try:
                run = planning.start_run(
                    container.context, "imis", {"billing_log": sim.original_key}, settings.run_options()
                )
                env_file = backends.workdir / f"coordinator-{size}.json"
                env_file.write_text(json.dumps(env))
                done = subprocess.run(
                    [sys.executable, "-m", "ops.bench.coordinator", str(env_file), run.id],
                    cwd=harness.ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=3600,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                _drop_queue(container, env["REBILL_QUEUE"])
            finally:
                container.close()
        print(
            f"  planned {result['rows']} invoices in {result['seconds']:.1f} s "
            f"({result['rows'] / result['seconds']:.0f}/s), peak RSS {result['peak_rss_mib']:.1f} MiB "
            f"({result['rss_before_planning_mib']:.1f} before planning)",
            flush=True,
        )
        rounded = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()}
        rows.append({"invoices": size, "load_average_before": round(load, 2), **rounded})
    return rows


def _drop_queue(container: Any, queue: str) -> None:
    """The unconsumed plan and chunk messages of a benchmark run must not stay in a shared Redis."""
    import redis

    from orchestrator.bootstrap import redis_url

    client = redis.Redis.from_url(redis_url(container.settings))
    try:
        client.delete(queue)
    finally:
        client.close()


def first_reversal(args: argparse.Namespace, backends: harness.Backends) -> dict[str, Any]:
    """Start a large run with a worker; seconds from the start until its first reversal is sent."""
    from orchestrator.bootstrap import Container
    from orchestrator.services import planning, runs

    size = args.first_reversal_invoices
    load = harness.wait_until_quiet(args.quiet_below)
    print(f"\n== first reversal of a {size}-invoice run (50 ms latency, load average {load:.2f}) ==", flush=True)
    with harness.simulator(invoices=size, latency_ms=50, seed=31) as sim, backends.ledger_url() as ledger_url:
        env = orchestrator_env(sim, backends, ledger_url, cap=args.cap[0], threads=args.threads[0])
        settings = harness.settings_from_env(env)
        container = Container(settings)
        container.ledger  # noqa: B018 - migrated before the worker starts
        worker = harness.start_worker(env, threads=args.threads[0], log=backends.workdir / "first-reversal.log")
        try:
            worker.wait_ready()
            started_at = datetime.now(UTC)
            run = planning.start_run(
                container.context, "imis", {"billing_log": sim.original_key}, settings.run_options()
            )
            deadline = time.monotonic() + 60
            times = harness.run_times(container.ledger, run.id, write=REVERSAL)
            while times.first_reversal_at is None and time.monotonic() < deadline:
                time.sleep(0.05)
                times = harness.run_times(container.ledger, run.id, write=REVERSAL)
            runs.cancel_run(container.context, run.id)
            planned = container.ledger.get_run(run.id)
        finally:
            worker.stop()
            container.close()
    if times.first_reversal_at is None:
        raise RuntimeError("no reversal was sent within 60 s")
    seconds = (times.first_reversal_at - started_at).total_seconds()
    print(
        f"  first reversal sent {seconds:.2f} s after the start "
        f"({planned.invoice_count if planned else '?'} invoices planned by then)",
        flush=True,
    )
    return {
        "invoices": size,
        "first_reversal_seconds": round(seconds, 3),
        "planned_when_cancelled": planned.invoice_count if planned else None,
        "load_average_before": round(load, 2),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backends = harness.Backends(args.redis_url, args.database_url)
    info = harness.machine()
    print(f"machine: {info}\nbackends: {backends.describe()}\nload average before: {harness.load_average():.2f}")
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": info,
        "backends": backends.describe(),
        "commit": harness.commit(),
        "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items() if k != "json"},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": round(harness.load_average(), 2),
    }
    try:
        if args.only & {"orchestrator", "bare", "sequential"}:
            results["throughput"] = throughput_matrix(args, backends)
        if "memory" in args.only:
            results["coordinator_memory"] = coordinator_memory(args, backends)
        if "first" in args.only:
            results["first_reversal"] = first_reversal(args, backends)
    finally:
        backends.stop_embedded_redis()
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = round(harness.load_average(), 2)
    print_report(results)
    target = args.json or harness.ROOT / ".rebill" / "bench" / f"results-{int(time.time())}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {target}")


def print_report(results: dict[str, Any]) -> None:
    if results.get("throughput"):
        print_throughput(results["throughput"])
    print_rest(results)


def print_throughput(rows: list[dict[str, Any]]) -> None:
    print("\n## Throughput\n")
    print(
        "| latency | invoices | cap | contender | inv/s | vs bare | vs theoretical | vs sequential "
        "| peak in flight | mean in flight | CPU s / 1,000 inv | orchestration CPU s / 1,000 inv "
        "| worker peak RSS MiB | first reversal s |"
    )
    print("|---" * 14 + "|")
    for row in rows:

        def cell(key: str, row: dict[str, Any] = row) -> str:
            value = row.get(key)
            return "-" if value is None else str(value)

        print(
            f"| {row['latency_ms']:g} ms | {row['invoices']} | {row['cap']} | {row['contender']}"
            + (f" ({row['threads']} threads)" if "threads" in row else "")
            + f" | {row['per_second']} | {cell('vs_bare')} | {cell('vs_theoretical')} | {cell('vs_sequential')}"
            f" | {row['peak_in_flight']} | {cell('mean_in_flight')} | {row['cpu_s_per_1000']}"
            f" | {cell('orchestration_cpu_s_per_1000')} | {cell('worker_peak_rss_mib')}"
            f" | {cell('first_write_seconds')} |"
        )


def print_rest(results: dict[str, Any]) -> None:
    if results.get("coordinator_memory"):
        print("\n## Coordinator alone (planning)\n")
        print("| invoices | seconds | rows/s | peak RSS MiB |")
        print("|---|---|---|---|")
        for row in results["coordinator_memory"]:
            print(
                f"| {row['invoices']} | {row['seconds']} | {row['rows'] / row['seconds']:.0f} | {row['peak_rss_mib']} |"
            )
    if results.get("first_reversal"):
        first = results["first_reversal"]
        print(f"\nFirst reversal of a {first['invoices']}-invoice run: {first['first_reversal_seconds']} s")
    print(
        f"\n{results['seconds']} s in all; load average {results['load_average_before']} before, "
        f"{results['load_average_after']} after"
    )


if __name__ == "__main__":
    main()
