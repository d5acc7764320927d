"""Ledger databases for tests: a fresh SQLite file, or a fresh schema on the PostgreSQL of
REBILL_TEST_DATABASE_URL (dropped afterwards), so tests never see each other's rows."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "REBILL_TEST_DATABASE_URL"
REDIS_ENV = "REBILL_TEST_REDIS_URL"


def backends() -> list[str]:
    """sqlite always; postgresql too when the environment names a server."""
    return ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


def _postgres_base() -> str:
    url = make_url(os.environ[POSTGRES_ENV])
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
        return
    base = _postgres_base()
    schema = f"rebill_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
