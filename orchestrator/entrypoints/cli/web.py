"""`rebill web` and `rebill report --format html`: the web view wired to the ledger, and nothing else
(no broker, no platform), so it keeps working while either is down."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TextIO

from orchestrator.bootstrap import Container
from orchestrator.domain.errors import RunRefused
from orchestrator.domain.user_input import quoted
from orchestrator.entrypoints.cli.reading import run_views
from orchestrator.entrypoints.web.app import create_app
from orchestrator.entrypoints.web.auth import web_auth
from orchestrator.entrypoints.web.pages import Pages
from orchestrator.entrypoints.web.server import bind, serve

log = logging.getLogger(__name__)


def pages_for(container: Container) -> Pages:
    settings = container.settings
    caps = {name: settings.provider(name).max_concurrency for name in settings.providers}
    return Pages(run_views(container), tenant_caps=caps)


def run_web(
    container: Container, *, address: str, port: int, insecure_local: bool, ready: Callable[[str], None]
) -> None:
    """Refuses before touching anything when the view would be open to others; then serves until ^C."""
    auth = web_auth(container.settings.web_basic_auth, address=address, insecure_local=insecure_local)
    sock = bind(address, port)
    app = create_app(pages_for(container), auth=auth)
    if auth is None:
        log.warning("the web view is open to anyone on this machine (--insecure-local, no REBILL_WEB_BASIC_AUTH)")
    serve(app, sock, log_level=container.settings.log_level, ready=ready)


def write_html_report(container: Container, run_id: str, handle: TextIO) -> None:
    pages = pages_for(container)
    resolved = pages.views.resolve(run_id)
    detail = pages.views.run(resolved) if resolved else None
    if detail is None:
        raise RunRefused(f"no run {quoted(run_id)} in this ledger (see `rebill runs`)")
    for piece in pages.report(detail):
        handle.write(piece)
