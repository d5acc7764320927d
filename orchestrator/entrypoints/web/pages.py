"""Pages from the read-side views: one Jinja environment shared by the server and the HTML report.

The run page is the same template in both: served, it polls its own JSON and pages invoices from
the server; as a report (`rebill report RUN --format html`), every invoice and call is inlined and
the same script pages them in the browser. Nothing is fetched from anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from orchestrator.domain.run import ItemState, RunState
from orchestrator.entrypoints.web.chart import activity_svg
from orchestrator.services.views import (
    CallView,
    InvoiceHistory,
    InvoiceLine,
    InvoicePage,
    Progress,
    RunDetail,
    RunsPage,
    RunsQuery,
    RunViews,
    StatusStep,
    operator_actions,
    shown_duration as duration,
    shown_money as money,
    shown_time as when,
)

__all__ = ["Pages", "call_json", "invoice_page_json", "line_json", "progress_json"]

_REPORT_CHUNK = 500  # invoices per piece of the inlined data, so a report streams to disk


def _asset(name: str) -> str:
    return resources.files("orchestrator.entrypoints.web").joinpath("static", name).read_text(encoding="utf-8")


def _default(value: object) -> str:
    if isinstance(value, Decimal):
        return money(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _json_script(value: Any) -> Markup:
    return htmlsafe_json_dumps(value, dumps=json.dumps, default=_default)


class Pages:
    """Renders the runs page, the run page (served or as a report) and the JSON the script reads."""

    def __init__(self, views: RunViews, *, tenant_caps: dict[str, int] | None = None) -> None:
        self.views = views
        self._caps = tenant_caps or {}
        self._env = Environment(
            loader=PackageLoader("orchestrator.entrypoints.web", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(money=money, when=when, duration=duration, number=lambda n: f"{n:,}")
        self._env.globals.update(
            style=Markup(_asset("style.css")),  # noqa: S704  # our own stylesheet, shipped with the package
            script=Markup(_asset("run.js")),  # noqa: S704  # our own script, shipped with the package
            item_states=list(ItemState),
            ItemState=ItemState,
            run_states=list(RunState),
        )

    def runs_page(self, query: RunsQuery, *, nonce: str = "") -> str:
        page: RunsPage = self.views.runs(query)
        return self._env.get_template("runs.html").render(page=page, query=query, now=datetime.now(UTC), nonce=nonce)

    def run_page(self, detail: RunDetail, *, nonce: str = "") -> str:
        return "".join(self._run_page(detail, report=None, nonce=nonce))

    def report(self, detail: RunDetail) -> Iterator[str]:
        """The run page as one self-contained file, streamed: every invoice and call inlined."""
        return self._run_page(detail, report=self._inlined(detail.headline.id), nonce="")

    def _run_page(self, detail: RunDetail, *, report: Iterator[str] | None, nonce: str) -> Iterator[str]:
        headline = detail.headline
        context = {
            "run": headline,
            "detail": detail,
            "progress": detail.progress,
            "progress_json": _json_script(progress_json(detail.progress)),
            "chart": activity_svg(detail.activity, cap=self._caps.get(headline.provider)),
            "cap": self._caps.get(headline.provider),
            "actions": operator_actions(
                headline.id, headline.state, headline.reason_code, rebill_sent=detail.rebill_sent
            ),
            "calls": sorted(detail.calls.items()),
            "report": report,
            "generated_at": datetime.now(UTC),
            "nonce": nonce,
        }
        return self._env.get_template("run.html").generate(**context)

    def _inlined(self, run_id: str) -> Iterator[str]:
        """The invoices as a JSON array in pieces (already safe inside a <script> element)."""
        yield "["
        first = True
        batch: list[dict[str, Any]] = []
        for history in self.views.every_invoice(run_id):
            batch.append(history_json(history))
            if len(batch) == _REPORT_CHUNK:
                yield ("" if first else ",") + str(_json_script(batch))[1:-1]
                first, batch = False, []
        if batch:
            yield ("" if first else ",") + str(_json_script(batch))[1:-1]
        yield "]"


def progress_json(progress: Progress) -> dict[str, Any]:
    outcomes = progress.outcomes
    step = progress.last_step
    return {
        "state": progress.state.value,
        "final": progress.state.is_final,
        "reason": progress.reason,
        "planned": progress.planned,
        "total": outcomes.total,
        "settled": outcomes.settled,
        "counts": {state.value: outcomes.count(state) for state in ItemState},
        "money": {
            "reversed": money(outcomes.reversed),
            "left": money(outcomes.left),
            "failed": money(outcomes.failed),
            "open": money(outcomes.open),
        },
        "rate_per_second": round(progress.rate_per_second, 2),
        "eta_seconds": None if progress.eta_seconds is None else round(progress.eta_seconds),
        "observed_at": progress.observed_at.isoformat(),
        "last_step": step_json(step) if step else None,
    }


def step_json(step: StatusStep) -> dict[str, Any]:
    return {"subject": step.subject, "status": step.status, "label": step.label, "at": when(step.at)}


def line_json(line: InvoiceLine) -> dict[str, Any]:
    return {
        "item_id": line.item_id,
        "invoice_id": line.invoice_id,
        "party_id": line.party_id,
        "party_name": line.party_name,
        "amount": money(line.amount),
        "outcome": line.outcome.value,
        "reason": line.reason,
        "attempts": line.attempts,
        "last_error": line.last_error,
        "settled_by_read": line.settled_by_read,
    }


def call_json(call: CallView) -> dict[str, Any]:
    return {
        "operation": call.operation,
        "outcome": call.outcome,
        "status_code": call.status_code,
        "latency_ms": round(call.latency_ms, 1),
        "started_at": when(call.started_at),
        "error": call.error,
    }


def history_json(history: InvoiceHistory) -> dict[str, Any]:
    return {**line_json(history.line), "calls": [call_json(call) for call in history.calls]}


def invoice_page_json(page: InvoicePage) -> dict[str, Any]:
    return {
        "lines": [line_json(line) for line in page.lines],
        "next_after": page.next_after,
        "previous_before": page.previous_before,
    }
