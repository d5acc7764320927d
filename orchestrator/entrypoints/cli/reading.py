"""Commands that only read the ledger (`runs`, `status`, `report`, `schedule list|history`) never create
one, and read it through the same port as the web view."""

from __future__ import annotations

from orchestrator.adapters.ledger.database import require_existing_ledger
from orchestrator.adapters.ledger.views import SqlRunViews
from orchestrator.bootstrap import Container, database_url
from orchestrator.config import Settings
from orchestrator.services.views import RunViews


def require_ledger(settings: Settings) -> None:
    """A SQLite ledger that is not there is named with the setting that chose its path."""
    setting = "REBILL_DATABASE_URL" if settings.database_url else f"REBILL_DATA_DIR={settings.data_dir}"
    require_existing_ledger(database_url(settings), setting=setting)


def run_views(container: Container) -> RunViews:
    """What operators see of runs (status, runs, reports, the web view), read from the ledger alone."""
    return SqlRunViews(container.engines.read)
