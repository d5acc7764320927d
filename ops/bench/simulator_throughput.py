"""How many requests per second the iMIS simulator sustains (latency 0, no faults).

Starts `python -m simulators.imis` in a subprocess, then hammers it for `--duration` seconds with
asyncio httpx clients holding `--concurrency` keep-alive connections in all, with a mix of
InvoiceSummary GETs (45% one invoice, 5% a 100-invoice page of the billing) and Invoice/_execute
POSTs (25% CanCashInvoiceBeReversed, 25% ProcessCashReversal). Prints requests/s, latency
percentiles and the server process's CPU time over the window.

An httpx client costs about three times more CPU per request than the simulator does, so one
Python process cannot generate 1,000 requests/s on this kind of machine. The connections are spread
over `--processes` client processes (default 2), which start on a shared clock.

    .venv/bin/python -m ops.bench.simulator_throughput --duration 5 --concurrency 16 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ops.bench import harness
from ops.bench.contenders import can_reverse_body, reversal_body

# httpcore asks sniffio which event loop runs, on every request. When sniffio is not installed
# that is a failing `import sniffio` that rescans sys.path each time (about a millisecond per
# request, enough to make the client the bottleneck). A None entry makes the import fail at once,
# and httpcore then assumes asyncio, which is what runs here.
try:
    import sniffio  # noqa: F401
except ImportError:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]
JSON_HEADERS = {"Content-Type": "application/json"}


def start_simulator(invoices: int) -> tuple[subprocess.Popen[str], str, str]:
    command = [sys.executable, "-m", "simulators.imis", "--port", "0", "--invoices", str(invoices), "--seed", "1"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = key = ""
    deadline = time.monotonic() + 60
    while not key and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator exited before it was ready")
        if "listening on " in line:
            url = line.split("listening on ", 1)[1].split()[0]
        if line.startswith("original BillingLogKey: "):
            key = line.split(": ", 1)[1].strip()
    return proc, url, key


def prepare(url: str, key: str) -> dict[str, Any]:
    """Token and the billing's invoice ids, fetched once and shared with the client processes."""
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post(
            "/token", data={"grant_type": "password", "username": "admin", "password": "secret"}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        ids: list[str] = []
        offset = 0
        while True:
            page = client.get("/api/InvoiceSummary", params={"BillingLogKey": key, "limit": 500, "offset": offset})
            data = page.json()
            ids += [item["InvoiceId"] for item in data["Items"]["$values"]]
            if not data["HasNext"]:
                break
            offset = data["NextOffset"]
    return {"url": url, "key": key, "token": token, "ids": ids}


def client_process(
    setup: dict[str, Any], index: int, processes: int, connections: int, start_at: float, duration: float
) -> dict[str, Any]:
    """One load-generating process: `connections` single-connection clients on a uvloop loop."""
    factory = _loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_hammer(setup, index, processes, connections, start_at, duration))


async def _hammer(
    setup: dict[str, Any], index: int, processes: int, connections: int, start_at: float, duration: float
) -> dict[str, Any]:
    ids: list[str] = setup["ids"]
    key: str = setup["key"]
    # Each process reverses its own share of the invoices, so no reversal is sent twice.
    to_reverse = ids[index::processes]
    random.Random(index).shuffle(to_reverse)
    get_paths = [f"/api/InvoiceSummary/{quote(i, safe='')}" for i in ids]
    page_paths = [
        "/api/InvoiceSummary?" + urlencode({"BillingLogKey": key, "limit": 100, "offset": offset})
        for offset in range(0, len(ids), 100)
    ]
    can_bodies = [can_reverse_body(i) for i in ids]
    # One single-connection client per connection: httpcore's pool scans every connection (and asks
    # anyio for each socket's attributes) on every request, which costs more than the request itself
    # once a pool holds many connections. The server still sees `connections` keep-alive connections.
    tls = ssl.create_default_context()  # unused over http://, but building one per client is slow
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    clients = [
        httpx.AsyncClient(base_url=setup["url"], limits=limits, timeout=30, verify=tls, headers=headers)
        for _ in range(connections)
    ]
    statuses: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    latencies: list[float] = []

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        await client.get("/api/InvoiceSummary/" + quote(ids[0], safe=""))  # open the connection
        await asyncio.sleep(max(0.0, start_at - time.time()))
        rng = random.Random(index * 1000 + n)
        stop_at = start_at + duration
        while time.time() < stop_at:
            pick = rng.random()
            started = time.perf_counter()
            if pick < 0.45:
                operation = "InvoiceSummary.get"
                response = await client.get(rng.choice(get_paths))
            elif pick < 0.50:
                operation = "InvoiceSummary.list(limit=100)"
                response = await client.get(rng.choice(page_paths))
            elif pick < 0.75:
                operation = "Invoice.CanCashInvoiceBeReversed"
                response = await client.post(
                    "/api/Invoice/_execute", content=rng.choice(can_bodies), headers=JSON_HEADERS
                )
            else:
                operation = "Invoice.ProcessCashReversal"
                target = to_reverse.pop() if to_reverse else rng.choice(ids)
                response = await client.post(
                    "/api/Invoice/_execute", content=reversal_body(target), headers=JSON_HEADERS
                )
            latencies.append(time.perf_counter() - started)
            statuses[str(response.status_code)] += 1
            operations[operation] += 1

    try:
        await asyncio.gather(*(worker(n, client) for n, client in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    return {"latencies": latencies, "statuses": dict(statuses), "operations": dict(operations)}


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the clients too when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections in all")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing the connections")
    parser.add_argument("--invoices", type=int, default=2000)
    args = parser.parse_args()
    proc, url, key = start_simulator(args.invoices)
    try:
        setup = prepare(url, key)
        shares = [
            args.concurrency // args.processes + (i < args.concurrency % args.processes) for i in range(args.processes)
        ]
        start_at = time.time() + 3.0  # time for the processes to start and connect
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
            futures = [
                pool.submit(client_process, setup, i, args.processes, share, start_at, args.duration)
                for i, share in enumerate(shares)
            ]
            time.sleep(max(0.0, start_at - time.time()))
            cpu_before = _cpu_seconds(proc.pid)
            results = [f.result() for f in futures]
            cpu_after = _cpu_seconds(proc.pid)
        counters = httpx.get(f"{url}/_sim/counters").json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: Counter[str] = Counter()
    operations: Counter[str] = Counter()
    for r in results:
        statuses.update(r["statuses"])
        operations.update(r["operations"])
    total = len(latencies)
    server_cpu = cpu_after - cpu_before
    report = {
        "machine": harness.machine(),
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
        "server_peak_concurrency": counters["peak_concurrency"],
        "server_reversals": len(counters["reversals"]),
        "server_refused_second_reversals": counters["refused_second_reversals"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
