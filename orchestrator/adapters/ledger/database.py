"""Engines for the ledger and its schema migrations (Alembic, run on first use under a lock)."""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, TimeoutError as PoolTimeoutError

from orchestrator.domain.errors import ConfigurationError

MIGRATIONS = Path(__file__).with_name("migrations")

#: What reading the ledger raises while its database is away (restarting, refusing connections, or our
#: connection cut): worth waiting out, unlike a bug. SQLAlchemy invalidates the pool on a lost connection,
#: so the next read connects afresh.
LEDGER_UNREACHABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeoutError)


def unreachable_reason(error: Exception) -> str:
    """The database driver's own words, on one line (SQLAlchemy's text adds the statement and its parameters)."""
    return " ".join(str(getattr(error, "orig", None) or error).split()) or type(error).__name__


@dataclass(frozen=True)
class LedgerEngines:
    read: Engine
    write: Engine

    def dispose(self) -> None:
        self.read.dispose()
        if self.write is not self.read:
            self.write.dispose()


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'ledger.db').resolve()}"


def _parsed(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Not repeated: it may hold a password.
        raise ConfigurationError(
            "REBILL_DATABASE_URL is not a database URL such as postgresql+psycopg://rebill@db.internal/rebill "
            "or sqlite:////var/lib/rebill/ledger.db"
        ) from None


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite ledger; None for other databases and in-memory SQLite."""
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def require_existing_ledger(url: str, *, setting: str) -> None:
    """For commands that only read: a SQLite ledger that is not there is an error, not one to create."""
    path = _sqlite_file(_parsed(url))
    if path is not None and not path.is_file():
        raise ConfigurationError(
            f"no ledger at {path} ({setting}): nothing has run with these settings; "
            "point REBILL_DATABASE_URL or REBILL_DATA_DIR at your ledger"
        )


def create_engines(url: str, *, session_label: str | None = None) -> LedgerEngines:
    """The ledger's engines. On PostgreSQL a worker's connections carry its id (`session_label`, as
    `application_name`, unless the URL names one): a worker declared dead has its sessions ended,
    so rows it locked before freezing are freed at once (`WorkerLiveness.release_worker`)."""
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            _make_folder(path.parent)
        return LedgerEngines(read=_sqlite_engine(url, immediate=False), write=_sqlite_engine(url, immediate=True))
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        # No pre-ping: it costs a round trip per transaction (three per invoice). After a database
        # restart one statement fails on a dead connection, the pool is invalidated, and the ledger-
        # driven reconciler re-dispatches whatever that task was doing.
        label = (
            {}
            if session_label is None or "application_name" in parsed.query
            else {"application_name": session_name(session_label)}
        )
        engine = create_engine(parsed, pool_size=10, max_overflow=20, pool_recycle=1800, connect_args=label)
    except (ArgumentError, ModuleNotFoundError) as error:
        raise ConfigurationError(f"REBILL_DATABASE_URL cannot be used: {error}") from None
    event.listen(engine, "connect", _bound_idle_transactions)
    return LedgerEngines(read=engine, write=engine)


def session_name(label: str) -> str:
    """`label` as PostgreSQL keeps an `application_name` (at most 63 bytes)."""
    return label.encode()[:63].decode(errors="ignore")


#: A transaction left open longer than this is ended by PostgreSQL. Ours take milliseconds; one held
#: open by a frozen process (SIGSTOP, a VM paused) would otherwise keep its row locks, and the workers
#: taking over its claims would wait on them for as long as it stays frozen.
IDLE_IN_TRANSACTION_SECONDS = 15


def _bound_idle_transactions(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_SECONDS * 1000}")
    dbapi_connection.commit()


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigurationError(
            f"cannot create the SQLite ledger's folder {folder} ({error.strerror}): "
            "check REBILL_DATABASE_URL, or REBILL_DATA_DIR when it is unset"
        ) from None


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=20)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so BEGIN can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def migrate(engines: LedgerEngines) -> None:
    """Bring the schema to the newest revision; safe when several processes start at once."""
    engine = engines.write
    try:
        with (
            _migration_lock(engine),
            engine.connect() as connection,
            _foreign_keys_off(connection),
            connection.begin(),
        ):
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            _check_foreign_keys(connection)
    except OperationalError as error:
        raise ConfigurationError(f"REBILL_DATABASE_URL: cannot reach the ledger database ({error.orig})") from None


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite only: a batch migration rebuilds a table by copying it and dropping the old one, and with
    foreign keys on that drop deletes every row referring to it (ON DELETE CASCADE: a run's items,
    chunks, steps, statuses). SQLite ignores this pragma inside a transaction, so it is set on the
    driver's connection before the migration's transaction begins."""
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite only: the rebuilt tables still satisfy every foreign key (else the migration rolls back)."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise ConfigurationError(f"the ledger migration would break {len(broken)} reference(s), e.g. {broken[0]}")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        key = int(hashlib.sha256(b"rebill-migrations").hexdigest()[:15], 16)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
