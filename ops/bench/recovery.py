"""How long a run takes when its worker dies or freezes, with the default settings (issue 11).

The same 3,000-invoice iMIS billing at 15 ms per call, one worker: once untouched; once with the
worker SIGKILLed at about 30 % of the reversals and a new worker started at once; once with the
worker frozen (SIGSTOP) at 30 % and a new one started at once (the frozen one is thawed at the end).
Reported: total time of each run, and the time from the fault to the first reversal after it.

    python -m ops.bench.recovery [--invoices 3000] [--latency-ms 15] [--redis-url ... --database-url ...]

Target: each faulted run finishes within 1.3 x the untouched run + 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.bench import harness
from ops.bench.contenders import orchestrator_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.recovery", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=15.0)
    parser.add_argument("--at", type=float, default=0.3, help="share of the reversals done when the fault strikes")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--redis-url", default=os.environ.get("REBILL_BENCH_REDIS_URL"))
    parser.add_argument("--database-url", default=os.environ.get("REBILL_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--planning-invoices",
        type=int,
        default=100_000,
        help="the billing planned while its worker is killed (0: skip)",
    )
    parser.add_argument("--json", type=Path, help="where to write the results")
    return parser.parse_args(argv)


def one_run(args: argparse.Namespace, fault: str | None, seed: int) -> dict[str, Any]:
    from orchestrator.bootstrap import Container
    from orchestrator.domain.run import ItemState
    from orchestrator.services import planning

    backends = harness.Backends(args.redis_url, args.database_url)
    with (
        harness.simulator(invoices=args.invoices, latency_ms=args.latency_ms, seed=seed) as sim,
        backends.ledger_url() as url,
    ):
        env = orchestrator_env(sim, backends, url, cap=8, threads=args.threads)
        settings = harness.settings_from_env(env)
        container = Container(settings)
        ledger = container.ledger
        workdir = backends.workdir
        workers = [harness.start_worker(env, threads=args.threads, log=workdir / "worker-0.log")]
        workers[0].wait_ready()
        try:
            started = time.monotonic()
            run = planning.start_run(
                container.context, "imis", {"billing_log": sim.original_key}, settings.run_options()
            )
            fault_at: float | None = None
            resumed_at: float | None = None
            done_at_fault = 0
            while True:
                current = ledger.get_run(run.id)
                assert current is not None
                reversed_now = ledger.item_counts(run.id).get(ItemState.REVERSED, 0)
                if fault and fault_at is None and current.planned and reversed_now >= args.at * current.plan_count:
                    victim = workers[-1]
                    victim.process.send_signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
                    fault_at, done_at_fault = time.monotonic(), reversed_now
                    workers.append(harness.start_worker(env, threads=args.threads, log=workdir / "worker-1.log"))
                elif fault_at is not None and resumed_at is None and reversed_now > done_at_fault + 8:
                    resumed_at = time.monotonic()  # past what was in flight at the fault
                if current.state.is_final:
                    break
                time.sleep(0.05)
            total = time.monotonic() - started
            return {
                "fault": fault or "none",
                "state": current.state.value,
                "seconds": round(total, 1),
                "fault_to_progress_seconds": round(resumed_at - fault_at, 1) if resumed_at and fault_at else None,
                "reversals_applied": sum(sim.counters()["reversals"].values()),
                "second_reversals_refused": sim.counters()["refused_second_reversals"],
            }
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGCONT)
                worker.stop()
            container.close()
            backends.stop_embedded_redis()


def planning_killed(args: argparse.Namespace) -> dict[str, Any]:
    """The worker killed while it plans a large billing: planning resumes from its committed cursor,
    no invoice is written twice. Only planning is timed (the run is cancelled once it is planned)."""
    from orchestrator.bootstrap import Container
    from orchestrator.services import planning, runs

    backends = harness.Backends(args.redis_url, args.database_url)
    invoices = args.planning_invoices
    with harness.simulator(invoices=invoices, latency_ms=0, seed=11) as sim, backends.ledger_url() as url:
        env = orchestrator_env(sim, backends, url, cap=8, threads=args.threads)
        settings = harness.settings_from_env(env)
        container = Container(settings)
        ledger = container.ledger
        workers = [harness.start_worker(env, threads=args.threads, log=backends.workdir / "planner-0.log")]
        workers[0].wait_ready()
        try:
            started = time.monotonic()
            run = planning.start_run(
                container.context, "imis", {"billing_log": sim.original_key}, settings.run_options()
            )
            killed_at = resumed_at = None
            offset_at_kill = 0
            while True:
                current = ledger.get_run(run.id)
                assert current is not None
                if killed_at is None and current.plan_offset >= 0.3 * invoices:
                    workers[-1].process.send_signal(signal.SIGKILL)
                    killed_at, offset_at_kill = time.monotonic(), current.plan_offset
                    workers.append(
                        harness.start_worker(env, threads=args.threads, log=backends.workdir / "planner-1.log")
                    )
                elif killed_at is not None and resumed_at is None and current.plan_offset > offset_at_kill:
                    resumed_at = time.monotonic()
                if current.planned or current.state.is_final:
                    break
                time.sleep(0.05)
            planned_in = time.monotonic() - started
            rows = sum(1 for _ in ledger.iter_items(run.id))
            runs.cancel_run(container.context, run.id)
            return {
                "fault": "kill while planning",
                "invoices": invoices,
                "planned_seconds": round(planned_in, 1),
                "killed_at_offset": offset_at_kill,
                "kill_to_progress_seconds": round(resumed_at - killed_at, 1) if resumed_at and killed_at else None,
                "item_rows": rows,
                "invoice_count": current.invoice_count,
                "duplicates": rows - len({item.invoice.invoice_id for item in ledger.iter_items(run.id)}),
            }
        finally:
            for worker in workers:
                worker.stop()
            container.close()
            backends.stop_embedded_redis()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = [one_run(args, fault, seed=7) for fault in (None, "kill", "freeze")]
    untouched = results[0]["seconds"]
    for result in results:
        result["target_seconds"] = round(1.3 * untouched + 10, 1)
        result["met"] = result["seconds"] <= result["target_seconds"]
    report = {
        "at": datetime.now(UTC).isoformat(),
        "machine": harness.machine(),
        "invoices": args.invoices,
        "results": results,
        "planning": planning_killed(args) if args.planning_invoices else None,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
