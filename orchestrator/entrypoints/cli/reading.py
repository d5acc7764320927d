"""Commands that only read the ledger (`runs`, `status`, `report`, `schedule list|history`) never create one."""

from __future__ import annotations

from orchestrator.adapters.ledger.database import require_existing_ledger
from orchestrator.bootstrap import database_url
from orchestrator.config import Settings


def require_ledger(settings: Settings) -> None:
    """A SQLite ledger that is not there is named with the setting that chose its path."""
    setting = "REBILL_DATABASE_URL" if settings.database_url else f"REBILL_DATA_DIR={settings.data_dir}"
    require_existing_ledger(database_url(settings), setting=setting)
