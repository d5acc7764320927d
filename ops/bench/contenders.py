"""The three ways to reverse a billing's open invoices that the benchmark compares.

- `bare_loop`: asyncio + httpx, `cap` coroutines each taking the next invoice and making its two
  calls (CanCashInvoiceBeReversed, ProcessCashReversal): exactly `cap` calls in flight, no ledger,
  no broker, no limiter. The practical limit at that cap.
- `sequential`: one call at a time with a sync httpx client, as administrators script it today.
- `orchestrator`: a real `rebill` run: worker process(es) on Redis with a ledger, planning from the
  billing, claiming every item with a lease before its reversal, the tenant limit in Redis.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

# httpcore asks sniffio which event loop runs, on every async request; without sniffio installed
# that is a failing import that rescans sys.path each time. A None entry fails it at once and
# httpcore assumes asyncio, which is what runs here (see simulator_throughput.py).
try:
    import sniffio  # noqa: F401
except ImportError:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

from ops.bench import harness
from ops.bench.harness import Measured
from orchestrator.adapters.providers.imis import envelopes

JSON_HEADERS = {"Content-Type": "application/json"}
#: The operation of iMIS's write, as the ledger records it (SQL LIKE).
REVERSAL = "Invoice.Process%Reversal"
EXECUTE = "/api/Invoice/_execute"
BENCH_DAY = date(2026, 4, 23)


def _body(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope, separators=(",", ":")).encode()


def can_reverse_body(invoice_id: str) -> bytes:
    """The same request the orchestrator's client sends (the product's own envelope builder)."""
    return _body(envelopes.can_cash_invoice_be_reversed(invoice_id))


def reversal_body(invoice_id: str) -> bytes:
    data = envelopes.cash_reversal_data(invoice_id=invoice_id, adjustment_date=BENCH_DAY, reason="benchmark")
    return _body(envelopes.process_cash_reversal(data))


# --- the bare loop ---------------------------------------------------------------------------------


def bare_loop(sim: harness.Simulator, invoice_ids: list[str], cap: int) -> Measured:
    access = harness.token(sim.url)
    sim.reset_counters()
    cpu_before = time.process_time()
    started = time.perf_counter()
    with sim.sample_in_flight() as sampler:
        asyncio.run(_bare(sim.url, access, invoice_ids, cap))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    return Measured(
        "bare asyncio + httpx",
        len(invoice_ids),
        seconds,
        cpu,
        counters["peak_concurrency"],
        sum(counters["reversals"].values()),
        {"mean_in_flight": sampler.mean},
    )


async def _bare(url: str, access: str, invoice_ids: list[str], cap: int) -> None:
    queue = list(reversed(invoice_ids))
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30, trust_env=False) as client:

        async def worker() -> None:
            while queue:
                invoice_id = queue.pop()
                can = await client.post(
                    "/api/Invoice/_execute", content=can_reverse_body(invoice_id), headers=JSON_HEADERS
                )
                can.raise_for_status()
                if not can.json().get("Result"):
                    continue
                done = await client.post(
                    "/api/Invoice/_execute", content=reversal_body(invoice_id), headers=JSON_HEADERS
                )
                done.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(cap)))


# --- the sequential script -------------------------------------------------------------------------


def sequential(sim: harness.Simulator, invoice_ids: list[str], *, max_seconds: float) -> Measured:
    """One call at a time; stops after `max_seconds` (its rate is steady, so a sample measures it)."""
    access = harness.token(sim.url)
    sim.reset_counters()
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json", **JSON_HEADERS}
    done = 0
    cpu_before = time.process_time()
    started = time.perf_counter()
    with httpx.Client(base_url=sim.url, headers=headers, timeout=30, trust_env=False) as client:
        for invoice_id in invoice_ids:
            can = client.post("/api/Invoice/_execute", content=can_reverse_body(invoice_id))
            can.raise_for_status()
            if can.json().get("Result"):
                client.post("/api/Invoice/_execute", content=reversal_body(invoice_id)).raise_for_status()
            done += 1
            if time.perf_counter() - started > max_seconds:
                break
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    counters = sim.counters()
    return Measured(
        "sequential script",
        done,
        seconds,
        cpu,
        counters["peak_concurrency"],
        sum(counters["reversals"].values()),
        {"sampled": done < len(invoice_ids)},
    )


# --- the orchestrator ------------------------------------------------------------------------------


def orchestrator_env(
    sim: harness.Simulator, backends: harness.Backends, ledger_url: str, *, cap: int, threads: int
) -> dict[str, str]:
    return {**harness.worker_env(backends, ledger_url, threads=threads), **imis_env(sim, cap=cap)}


def imis_env(sim: harness.Simulator, *, cap: int) -> dict[str, str]:
    """The iMIS tenant on the simulator, at `cap` calls in flight."""
    return {
        "REBILL_IMIS_BASE_URL": sim.url,
        "REBILL_IMIS_USERNAME": harness.USERNAME,
        "REBILL_IMIS_PASSWORD": harness.PASSWORD,
        "REBILL_IMIS_MAX_CONCURRENCY": str(cap),
        "REBILL_POLL_INTERVAL_SECONDS": "0.2",
    }


def orchestrator(
    sim: harness.Simulator,
    backends: harness.Backends,
    billing_key: str,
    open_invoices: int,
    *,
    cap: int,
    threads: int,
    workers: int,
    workdir: Path,
    profile: Path | None = None,
) -> Measured:
    from orchestrator.domain.run import ItemState

    with harness.orchestrator(
        backends, imis_env(sim, cap=cap), threads=threads, workers=workers, workdir=workdir
    ) as ours:
        ours.container.providers.get("imis").check()  # this process's token, outside the timing
        with sim.sample_in_flight() as sampler:
            timed = ours.timed_run(
                "imis",
                {"billing_log": billing_key},
                write=REVERSAL,
                before=sim.reset_counters,
                profile=profile,
            )
        counters = sim.counters()
        reversed_items = timed.counts.get(ItemState.REVERSED, 0)
        failed = timed.counts.get(ItemState.FAILED, 0)
        if failed or reversed_items != open_invoices or counters["refused_second_reversals"]:
            raise RuntimeError(
                f"the run did not reverse every open invoice exactly once: {timed.counts}, "
                f"refused second reversals {counters['refused_second_reversals']}"
            )
        return timed.measured(
            reversed_items,
            counters=counters,
            writes=sum(counters["reversals"].values()),
            extra={"mean_in_flight": sampler.mean, "threads": threads, "workers": workers},
        )
