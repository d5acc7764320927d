"""`rebill web`: the runs and each run's page, read-only, from the ledger alone (no broker needed).

Routes (relative links throughout, so the view also works behind a path prefix):

    /                                   runs, filtered by ?state=&provider=&dry=1
    /runs/{id}                          one run (the id or a unique prefix)
    /runs/{id}/progress.json            what the run page polls
    /runs/{id}/invoices.json            a page of invoices: ?q=&outcome=&after=|before=
    /runs/{id}/invoices/{item}.json     one invoice with every API call made about it
"""

from __future__ import annotations

import secrets
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.domain.run import ItemState, RunState
from orchestrator.entrypoints.web.auth import BasicAuth, BasicAuthMiddleware
from orchestrator.entrypoints.web.pages import Pages, history_json, invoice_page_json, progress_json
from orchestrator.services.views import InvoiceQuery, RunsQuery

__all__ = ["create_app"]

_PAGE_SIZES = (25, 50, 100, 200)
E = TypeVar("E", ItemState, RunState)


def create_app(pages: Pages, *, auth: BasicAuth | None) -> Any:
    """The ASGI application; with `auth`, every request needs the credentials."""
    views = pages.views

    async def runs(request: Request) -> Response:
        params = request.query_params
        query = RunsQuery(
            states=frozenset(_choices(params.getlist("state"), RunState)),
            providers=frozenset(p for p in params.getlist("provider") if p),
            include_dry_runs=params.get("dry") == "1",
        )
        nonce = secrets.token_urlsafe(16)
        return _html(await run_in_threadpool(pages.runs_page, query, nonce=nonce), nonce)

    async def run(request: Request) -> Response:
        run_id = await _resolve(request)
        if run_id != request.path_params["run_id"]:
            return RedirectResponse(run_id, status_code=302)  # a prefix: to the run's own address
        detail = await run_in_threadpool(views.run, run_id)
        if detail is None:
            raise HTTPException(404, "no such run")
        nonce = secrets.token_urlsafe(16)
        return _html(await run_in_threadpool(pages.run_page, detail, nonce=nonce), nonce)

    async def progress(request: Request) -> Response:
        found = await run_in_threadpool(views.progress, await _resolve(request))
        if found is None:
            raise HTTPException(404, "no such run")
        return _json(progress_json(found))

    async def invoices(request: Request) -> Response:
        run_id = await _resolve(request)
        params = request.query_params
        outcome = _choices([params.get("outcome", "")], ItemState)
        size = _int(params.get("limit")) or 50
        query = InvoiceQuery(
            text=params.get("q", "")[:200],
            outcome=outcome[0] if outcome else None,
            after=_int(params.get("after")),
            before=_int(params.get("before")),
            limit=size if size in _PAGE_SIZES else 50,
        )
        return _json(invoice_page_json(await run_in_threadpool(views.invoices, run_id, query)))

    async def invoice(request: Request) -> Response:
        run_id = await _resolve(request)
        item_id = _int(request.path_params["item_id"])
        found = await run_in_threadpool(views.invoice, run_id, item_id) if item_id is not None else None
        if found is None:
            raise HTTPException(404, "no such invoice in this run")
        return _json(history_json(found))

    async def _resolve(request: Request) -> str:
        run_id = await run_in_threadpool(views.resolve, request.path_params["run_id"])
        if run_id is None:
            raise HTTPException(404, "no such run (or the prefix matches several)")
        return run_id

    app = Starlette(
        routes=[
            Route("/", runs),
            Route("/runs/{run_id}", run),
            Route("/runs/{run_id}/progress.json", progress),
            Route("/runs/{run_id}/invoices.json", invoices),
            Route("/runs/{run_id}/invoices/{item_id}.json", invoice),
        ],
    )
    return BasicAuthMiddleware(app, auth) if auth is not None else app


def _choices(values: list[str], kind: type[E]) -> list[E]:
    known = {member.value: member for member in kind}
    return [known[value] for value in values if value in known]


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) < 19 else None


_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _html(body: str, nonce: str) -> Response:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(body, headers={**_HEADERS, "Content-Security-Policy": policy})


def _json(data: dict[str, Any]) -> Response:
    return JSONResponse(data, headers=_HEADERS)
