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


def _psycopg(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def scratch_postgres_schema(url: str, prefix: str = "rebill_test") -> Iterator[str]:
    """A URL whose connections work in a new, empty schema of `url`'s database; dropped afterwards."""
    base = _psycopg(url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
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


@contextmanager
def database_url(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
        return
    with scratch_postgres_schema(os.environ[POSTGRES_ENV]) as url:
        yield url


def named_connections(url: str, application_name: str) -> str:
    """`url` with its connections labelled in pg_stat_activity, so a test can find and cut them."""
    labelled = make_url(url).update_query_dict({"application_name": application_name})
    return labelled.render_as_string(hide_password=False)


def terminate_connections(application_name: str) -> int:
    """pg_terminate_backend on every connection with this label (REBILL_TEST_DATABASE_URL's server)."""
    admin = create_engine(_psycopg(os.environ[POSTGRES_ENV]))
    try:
        with admin.begin() as conn:
            ended = conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            )
            return len(ended.all())
    finally:
        admin.dispose()
