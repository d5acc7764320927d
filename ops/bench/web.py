"""How fast the web view answers on a large run: a ledger written directly, then every page timed.

    python -m ops.bench.web                              # 200,000 invoices on SQLite, in a temp dir
    python -m ops.bench.web --invoices 20000 --report    # smaller, and time the HTML report too
    python -m ops.bench.web --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The run looks like a finished large run with failures: 93% reversed, 5% left as they were, 2% failed
(three reasons), every invoice with its calls (two per reversal, six per failure), spread over 40
minutes, amounts from 40 prices, plus 30 small runs around it. Each page is asked `--repeat` times
through the real application (Starlette, templates, queries) and the median and worst are printed.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, delete, insert

from orchestrator.adapters.ledger.database import create_engines, default_sqlite_url, migrate
from orchestrator.adapters.ledger.models import ApiCallRow, ItemRow, RunRow, StatusEventRow
from orchestrator.adapters.ledger.views import SqlRunViews
from orchestrator.entrypoints.web.app import create_app
from orchestrator.entrypoints.web.pages import Pages
from orchestrator.entrypoints.web.server import serving

PRICES = [Decimal(f"{random.Random(i).randint(20, 900)}.{random.Random(i + 99).randint(0, 99):02d}") for i in range(40)]
REASONS = (
    "Invoice is locked by another process",
    "The invoice cannot be reversed: it belongs to a closed period",
    "gave up after 5 attempts: service unavailable",
)
BATCH = 5000


def write_runs(engine: Engine, *, invoices: int, seed: int = 7, minutes: float = 40.0) -> list[str]:
    """The large run (its id first) and 30 small ones."""
    rng = random.Random(seed)
    run_id = str(uuid.uuid4())
    ids = [run_id]
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    end = start + timedelta(minutes=minutes)
    with engine.begin() as conn:
        conn.execute(insert(RunRow), [_run_row(run_id, start, end, "NEEDS_ATTENTION", invoices)])
        for small in range(30):
            other = str(uuid.uuid4())
            ids.append(other)
            conn.execute(insert(RunRow), [_run_row(other, start - timedelta(days=small + 1), None, "COMPLETED", 0)])
        conn.execute(
            insert(StatusEventRow),
            [
                {"run_id": run_id, "subject": "TRACK-1", "code": code, "label": label, "observed_at": at, "note": None}
                for code, label, at in (
                    ("5", "Reversing invoices", start),
                    ("1", "Processing", end - timedelta(minutes=2)),
                    ("2", "Completed", end - timedelta(minutes=1)),
                )
            ],
        )
    next_id = 1
    for first in range(0, invoices, BATCH):
        items, calls = [], []
        for n in range(first, min(first + BATCH, invoices)):
            at = start + timedelta(seconds=(end - start).total_seconds() * n / invoices)
            draw = rng.random()
            state, reason, error, spent = "REVERSED", None, None, 2
            if draw > 0.98:
                state, reason = "FAILED", REASONS[rng.randrange(3)]
                error, spent = f"ImisRefused({reason!r})", 6
            elif draw > 0.93:
                state, reason, spent = "SKIPPED", "has a payment applied", 1
            items.append(
                {
                    "id": next_id,
                    "run_id": run_id,
                    "chunk_id": None,
                    "invoice_id": f"CASH:{100000 + n}:1",
                    "invoice_number": str(100000 + n),
                    "details": {"accounting_method": 0, "number": 100000 + n},
                    "party_id": str(20000 + n // 3),
                    "party_name": f"Member {rng.choice(['Smith', 'Jones', 'Garcia', 'Chen', 'Okafor'])} {n}",
                    "amount": PRICES[n % len(PRICES)],
                    "balance": PRICES[n % len(PRICES)],
                    "state": state,
                    "reason": reason,
                    "attempts": 5 if state == "FAILED" else 1,
                    "claims_total": 1,
                    "settled_by_read": False,
                    "last_error": error,
                    "updated_at": at,
                }
            )
            for k in range(spent):
                failed = state == "FAILED" and k > 0
                calls.append(
                    {
                        "run_id": run_id,
                        "item_id": next_id,
                        "operation": "Invoice.CanCashInvoiceBeReversed" if k == 0 else "Invoice.ProcessCashReversal",
                        "outcome": ("transient" if k < spent - 1 else "permanent") if failed else "ok",
                        "status_code": 503 if failed and k < spent - 1 else (400 if failed else 200),
                        "latency_ms": rng.uniform(30, 80),
                        "error": reason if failed else None,
                        "started_at": at - timedelta(milliseconds=100 * (spent - k)),
                    }
                )
            next_id += 1
        with engine.begin() as conn:
            conn.execute(insert(ItemRow), items)
            conn.execute(insert(ApiCallRow), calls)
    return ids


def _run_row(run_id: str, start: datetime, end: datetime | None, state: str, invoices: int) -> dict[str, Any]:
    key = str(uuid.uuid4())
    return {
        "id": run_id,
        "provider": "imis",
        "scope": f"imis:{key}",
        "selection_label": f"BillingLog {key} (2026 Dues)",
        "selector": {"billing_log": key},
        "whole": True,
        "guard_key": None,
        "state": state,
        "reason_code": "FAILED_ITEMS" if state == "NEEDS_ATTENTION" else None,
        "reason": "invoices failed: `rebill retry` re-sends them" if state == "NEEDS_ATTENTION" else None,
        "options": {"chunk_size": 50, "max_attempts": 5},
        "provider_options": {"mode": "orchestrated"},
        "provider_state": {
            "original": {"key": key, "cycle_name": "2026 Dues", "status": 2},
            "tracking_log_key": "TRACK-1",
        },
        "item_actions": True,
        "planned": True,
        "invoice_count": invoices,
        "created_at": start,
        "updated_at": end or start,
        "finished_at": end or start,
    }


def timed(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "worst_ms": round(max(seconds) * 1000, 1)}


def measure(engine: Engine, run_id: str, *, repeat: int, report: bool) -> dict[str, Any]:
    views = SqlRunViews(engine)
    pages = Pages(views, tenant_caps={"imis": 8})
    with serving(create_app(pages, auth=None)) as url, httpx.Client(base_url=url, timeout=60) as client:
        return _measure(client, pages, run_id, repeat=repeat, report=report)


def _measure(client: httpx.Client, pages: Pages, run_id: str, *, repeat: int, report: bool) -> dict[str, Any]:
    def get(path: str) -> Callable[[], Any]:
        def call() -> Any:
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            return response

        return call

    first = get(f"/runs/{run_id}/invoices.json")().json()["lines"][0]["item_id"]
    middle = first + pages.views.run(run_id).headline.outcomes.total // 2  # type: ignore[union-attr]
    results = {
        "runs page /": timed(get("/"), repeat),
        "run page /runs/ID": timed(get(f"/runs/{run_id}"), repeat),
        "progress.json (polled every 2 s)": timed(get(f"/runs/{run_id}/progress.json"), repeat),
        "invoices, first page": timed(get(f"/runs/{run_id}/invoices.json"), repeat),
        "invoices, a page in the middle": timed(get(f"/runs/{run_id}/invoices.json?after={middle}"), repeat),
        "invoices, FAILED only": timed(get(f"/runs/{run_id}/invoices.json?outcome=FAILED"), repeat),
        "invoices, search an invoice id": timed(get(f"/runs/{run_id}/invoices.json?q=CASH:150000"), repeat),
        "invoices, search a party name (no match)": timed(get(f"/runs/{run_id}/invoices.json?q=zzz"), repeat),
        "one invoice's calls": timed(get(f"/runs/{run_id}/invoices/{middle}.json"), repeat),
    }
    if report:
        detail = pages.views.run(run_id)
        assert detail is not None
        sink = io.StringIO()
        began = time.perf_counter()
        for piece in pages.report(detail):
            sink.write(piece)
        results["HTML report (whole run)"] = {
            "seconds": round(time.perf_counter() - began, 1),
            "mib": round(len(sink.getvalue().encode()) / 2**20, 1),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.web", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=200_000)
    parser.add_argument("--database-url", help="default: a SQLite ledger in a temporary directory")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--report", action="store_true", help="also time `rebill report --format html`")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rebill-web-bench-") as directory:
        url = args.database_url or default_sqlite_url(Path(directory))
        engines = create_engines(url)
        migrate(engines)
        began = time.perf_counter()
        ids = write_runs(engines.write, invoices=args.invoices)
        run_id = ids[0]
        print(f"wrote a run of {args.invoices:,} invoices in {time.perf_counter() - began:.0f} s ({run_id})")
        try:
            results = measure(engines.read, run_id, repeat=args.repeat, report=args.report)
        finally:
            if args.database_url:  # leave a shared database as it was
                with engines.write.begin() as conn:
                    conn.execute(delete(RunRow).where(RunRow.id.in_(ids)))
            engines.dispose()
    print(json.dumps({"invoices": args.invoices, "backend": url.split(":")[0], "results": results}, indent=2))


if __name__ == "__main__":
    main()
