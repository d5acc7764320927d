"""How many requests per second a platform's simulator sustains (latency 0, no faults).

`--provider imis|aria|salesforce|energycap` (default imis) starts `python -m simulators.<provider>` in a
subprocess, prepares a run as that platform's workload says (`simulator_workloads.py`: authenticate as
the contract says, read the ids to name, build the bodies), then hammers it for `--duration` seconds
with asyncio httpx clients holding `--concurrency` keep-alive connections in all, with the workload's
mix of the calls the orchestrator makes. iMIS: InvoiceSummary GETs (45% one invoice, 5% a 100-invoice
page of the billing) and Invoice/_execute POSTs (25% CanCashInvoiceBeReversed, 25% ProcessCashReversal).
Prints requests/s, latency percentiles, the CPU time the server process and the client processes used
over the window, and what the simulator counted of the writes, as JSON.

An httpx client costs about three times more CPU per request than the simulator does, so one
Python process cannot generate 1,000 requests/s on this kind of machine. The connections are spread
over `--processes` client processes (default 2), which start on a shared clock.

    .venv/bin/python -m ops.bench.simulator_throughput --duration 5 --concurrency 16 --processes 2
    .venv/bin/python -m ops.bench.simulator_throughput --provider aria --duration 5 --concurrency 16 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import multiprocessing
import random
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from ops.bench import harness
from ops.bench.simulator_workloads import WORKLOADS, Setup

# httpcore asks sniffio which event loop runs, on every request. When sniffio is not installed
# that is a failing `import sniffio` that rescans sys.path each time (about a millisecond per
# request, enough to make the client the bottleneck). A None entry makes the import fail at once,
# and httpcore then assumes asyncio, which is what runs here.
try:
    import sniffio  # noqa: F401
except ImportError:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Share:
    """What one client process is handed: whose simulator, where, the prepared run, which process of how
    many it is, its connections, and the shared clock's window."""

    provider: str
    url: str
    setup: Setup
    index: int
    processes: int
    connections: int
    start_at: float
    duration: float


def client_process(share: Share) -> dict[str, Any]:
    """One load-generating process: `connections` single-connection clients on a uvloop loop."""
    factory = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_hammer(share))


async def _hammer(share: Share) -> dict[str, Any]:
    index, start_at = share.index, share.start_at
    workload = WORKLOADS[share.provider]
    makers = workload.makers(share.setup, index, share.processes)
    names = list(workload.mix)
    bounds = list(itertools.accumulate(workload.mix[name] for name in names))
    # One single-connection client per connection: httpcore's pool scans every connection (and asks
    # anyio for each socket's attributes) on every request, which costs more than the request itself
    # once a pool holds many connections. The server still sees `connections` keep-alive connections.
    tls = ssl.create_default_context()  # unused over http://, but building one per client is slow
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(
            base_url=share.url, limits=limits, timeout=30, verify=tls, headers=share.setup.headers, trust_env=False
        )
        for _ in range(share.connections)
    ]
    statuses: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    latencies: list[float] = []

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        await client.get("/_sim/health")  # open the connection
        await asyncio.sleep(max(0.0, start_at - time.time()))
        rng = random.Random(index * 1000 + n)
        stop_at = start_at + share.duration
        while time.time() < stop_at:
            operation = names[min(bisect.bisect(bounds, rng.random() * bounds[-1]), len(names) - 1)]
            call = makers[operation](rng)
            started = time.perf_counter()
            response = await client.request(call.method, call.url, content=call.body, headers=call.headers)
            latencies.append(time.perf_counter() - started)
            statuses[str(response.status_code)] += 1
            operations[operation] += 1

    async def cpu_in_window() -> float:
        """This process's CPU seconds over the window (how much the load generator costs)."""
        await asyncio.sleep(max(0.0, start_at - time.time()))
        begun = time.process_time()
        await asyncio.sleep(max(0.0, start_at + share.duration - time.time()))
        return time.process_time() - begun

    try:
        cpu, *_ = await asyncio.gather(cpu_in_window(), *(worker(n, client) for n, client in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    return {"latencies": latencies, "statuses": dict(statuses), "operations": dict(operations), "cpu": cpu}


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the clients too when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--provider", choices=sorted(WORKLOADS), default="imis", help="whose simulator")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections in all")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing the connections")
    parser.add_argument("--invoices", type=int, default=2000, help="invoices (EnergyCAP: bills) seeded")
    args = parser.parse_args()
    workload = WORKLOADS[args.provider]
    load = harness.load_average()
    with harness.simulator_process(workload.command(args.invoices), workload.ready) as (proc, url, seeded):
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
            setup = workload.prepare(client, seeded, args.invoices)
        per_process = [
            args.concurrency // args.processes + (i < args.concurrency % args.processes) for i in range(args.processes)
        ]
        start_at = time.time() + 3.0  # time for the processes to start and connect
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
            futures = [
                pool.submit(
                    client_process, Share(args.provider, url, setup, i, args.processes, n, start_at, args.duration)
                )
                for i, n in enumerate(per_process)
            ]
            time.sleep(max(0.0, start_at - time.time()))
            cpu_before = harness.cpu_seconds(proc.pid)
            results = [f.result() for f in futures]
            cpu_after = harness.cpu_seconds(proc.pid)
        counters = httpx.get(f"{url}/_sim/counters", timeout=60, trust_env=False).json()
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
        operations.update(r["operations"])
    total = len(latencies)
    server_cpu = cpu_after - cpu_before
    report = {
        "provider": args.provider,
        "machine": harness.machine(),
        "load_average_1m_at_start": load,
        "invoices": args.invoices,
        "mix": workload.mix,
        "connections": args.concurrency,
        "client_processes": args.processes,
        "seconds": args.duration,
        "requests": total,
        "requests_per_second": round(total / args.duration),
        "p50_ms": round(latencies[total // 2] * 1000, 2),
        "p99_ms": round(latencies[int(total * 0.99)] * 1000, 2),
        "statuses": dict(statuses),
        "operations": dict(operations),
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu / total * 1000, 3) if total else None,
        "client_cpu_seconds": round(sum(r["cpu"] for r in results), 2),
        "server_peak_concurrency": counters["peak_concurrency"],
        **workload.summary(counters),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
