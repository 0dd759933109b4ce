"""Opening the store: engine set-up per backend, migrations on start, read and write transactions."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

try:
    import fcntl
except ImportError:  # not on Windows: writers there meet SQLite's own wait only
    fcntl = None  # type: ignore[assignment]

from billbridge.errors import UserError
from billbridge.private_files import private_file
from billbridge.store.types import DecimalSum, json_text

MIGRATIONS = Path(__file__).with_name("migrations")
NO_LOCK_FILE = -1  # Store._lock_fd when the writers' lock file cannot be made
BUSY_TIMEOUT_MS = 60_000  # how long a SQLite writer waits for the database's write lock
MIGRATION_LOCK = 4_242_001  # PostgreSQL advisory lock id: one migrating process at a time


BACKENDS = ("sqlite", "postgresql")
EXPECTED_URLS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DATABASE"


class StoreUnavailable(UserError):
    """The store cannot be opened: its URL is unreadable or names a database billbridge does not
    support, its SQLite folder does not exist, or its server cannot be reached."""


def shown(url: str | URL) -> str:
    """A store URL as it may be shown to a person: without its password."""
    return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)


def _parsed(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreUnavailable(f"the database URL is not one (expected {EXPECTED_URLS})") from None
    if parsed.get_backend_name() not in BACKENDS:
        raise StoreUnavailable(
            f"database URL {shown(parsed)}: billbridge does not store in {parsed.get_backend_name()!r} "
            f"(expected {EXPECTED_URLS})"
        )
    return parsed


def normalise_url(url: str) -> str:
    """Plain ``postgresql://`` means psycopg 3 here (psycopg2 is not a dependency)."""
    parsed = _parsed(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if url.startswith("sqlite"):
        database = make_url(url).database
        folder = Path(database).parent if database and database != ":memory:" else None
        if folder is not None and not folder.is_dir():  # SQLite would say only "unable to open database file"
            raise StoreUnavailable(f"database URL {url}: the folder {folder} does not exist")
        if folder is not None and database:
            # Made here, the store is 0600 (its folder exists: see above); SQLite gives its -wal and
            # -shm files the database file's mode.
            private_file(Path(database))
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _sqlite_transactions(engine)
        return engine
    # Sessions in UTC whatever the server's or database's default: naive timestamps (stored UTC)
    # and the UTC day of a usage event then mean the same on every connection.
    engine = create_engine(url, connect_args={"options": "-c timezone=UTC"}, **kwargs)
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections idle at least PING_AFTER_IDLE_SECONDS.

    A connection left in the pool while the server restarted is found dead and replaced before
    use, as with ``pool_pre_ping``; but one returned a moment ago is not pinged again: that ping
    was a round trip on every checkout, about a fifth of the CPU of a single usage event. A
    server that goes away while connections are in steady use fails the statements in flight
    either way, and the first disconnect error empties the pool.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")  # None: a new connection, nothing to check
        idle = checked_in is not None and time.monotonic() - checked_in >= PING_AFTER_IDLE_SECONDS
        if idle and not answers_ping(engine.dialect, dbapi_connection):
            raise DisconnectionError("connection lost while idle in the pool")  # the pool reconnects


def answers_ping(dialect: Dialect, dbapi_connection: Any) -> bool:
    """Whether a driver connection answers the dialect's ping, as ``pool_pre_ping`` asks it, through
    the dialect's public API: False when the ping fails with what the dialect calls a disconnect;
    any other driver error is raised (a ping refused for another reason is no dead connection)."""
    try:
        return bool(dialect.do_ping(dbapi_connection))
    except dialect.loaded_dbapi.Error as exc:
        if dialect.is_disconnect(exc, dbapi_connection, None):
            return False
        raise


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy emit BEGIN itself, so a writer can take the lock up front (BEGIN IMMEDIATE)
    instead of failing to upgrade a read lock when two processes write at once."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # 64 MiB of page cache instead of 2 MiB: index inserts in random key order (usage events by
        # customer) stay in memory instead of re-reading pages.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()
        dbapi_connection.create_aggregate("decimal_sum", 1, DecimalSum)  # exact sums of money (exact_sum)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        # On the driver's connection: through exec_driver_sql, Core's execution machinery cost
        # more than the statement, once per transaction of the usage API's hot path.
        connection.connection.driver_connection.execute(f"BEGIN {mode}")


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest Alembic revision (safe when several processes start at once)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(sqlite_begin="IMMEDIATE").connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (SQLite alters few things in place): dropping the old
            # copy would break its children's foreign keys, so enforcement is off meanwhile (outside a
            # transaction, where SQLite takes this pragma) and every key is checked before commit.
            _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if not sqlite:
                    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"a migration left foreign keys without their rows: {broken[:5]}")
        finally:
            if sqlite:
                _outside_transaction(connection, "PRAGMA foreign_keys=ON")


def _outside_transaction(connection: Connection, statement: str) -> None:
    """Run ``statement`` on the driver's connection, where SQLAlchemy begins no transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(statement)


class Store:
    """The store's engine and its two kinds of transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)
        self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # queued_write_connection's: the turn of this process's threads, the lock file, the connection
        self._turn = threading.RLock()  # re-entrant: dispose() from inside a queued write does not hang
        self._lock_fd: int | None = None  # None: not opened yet
        self._held: Connection | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def shared(self) -> bool:
        """Whether another process can open this store (not an in-memory SQLite database): worker
        processes of a billing run or a CRM sync open it by its URL."""
        url = self.engine.url
        return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))

    @property
    def url(self) -> str:
        """The URL another process opens this store with (with its password)."""
        return self.engine.url.render_as_string(hide_password=False)

    @property
    def locks_database(self) -> bool:
        """Whether a write transaction locks the whole database (SQLite: one writer at a time),
        so that reads are better done outside it; PostgreSQL writers only lock the rows they touch."""
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that commits on success and rolls back on any error; on SQLite it holds
        the write lock from its first statement."""
        with self._write() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """Like :meth:`write`, as a Core connection: for hot paths of plain Core statements, where
        the ORM session's bookkeeping costs more than the statements."""
        with self._write_engine.begin() as connection:
            yield connection

    @contextmanager
    def queued_write_connection(self) -> Iterator[Connection]:
        """:meth:`write_connection` for a hot path of many small transactions (the usage API): on
        SQLite, entered in turn by the threads of this process (a lock) and by the other processes
        using it (the API's workers: a lock file beside the database), on one connection the process
        keeps. The connection is for the ``with`` block only: used after it, it would begin a
        transaction outside the turn.

        SQLite makes a writer that finds the database locked sleep and try again (1, 2, 5, 10 ms
        and longer), so a single event's transaction of a fraction of a millisecond made the other
        worker sleep a millisecond and more whenever they collided; waiting on a file lock
        (``flock``) wakes it as soon as the holder is done. Other writers (a billing run) are still
        met by SQLite's own wait, and the turn and that wait share one deadline (SQLite's busy
        timeout): a writer that waited its turn waits only what is left of it for SQLite, so a stuck
        billing run fails each queued worker after about the timeout, not the k-th after k times
        it. The kept connection saves the pool's checkout, reset and checkin per transaction (a fifth
        of a single event's database work); after any error it is dropped and the next transaction
        opens another. PostgreSQL, where writers lock rows, not the database:
        :meth:`write_connection` as it is."""
        started = time.monotonic()
        lock = self._writers_lock()  # may wait for the turn too, the first time
        if lock is None:
            with self.write_connection() as connection:
                yield connection
            return
        with self._turn:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                held = self._held
                if held is None or held.closed or held.invalidated:
                    held = self._held = self.held_writer()
                waited_ms = int((time.monotonic() - started) * 1000)
                if waited_ms:  # the turn took part of the deadline: SQLite gets what is left
                    _outside_transaction(held, f"PRAGMA busy_timeout={max(0, BUSY_TIMEOUT_MS - waited_ms)}")
                try:
                    with held.begin():
                        yield held
                except BaseException:
                    self._held = None  # broken or not, the next transaction starts on a fresh connection
                    with contextlib.suppress(Exception):
                        held.invalidate()
                        held.close()
                    raise
                finally:
                    if waited_ms and self._held is held:
                        _outside_transaction(held, f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _writers_lock(self) -> int | None:
        """The open lock file of :meth:`queued_write_connection` (kept until :meth:`dispose`), or
        None where there is none to take: PostgreSQL, an in-memory SQLite, no ``fcntl``, or a
        folder the process may not create the file in (then SQLite's own wait, as before)."""
        if self._lock_fd is None and self.dialect == "sqlite" and self.shared and fcntl is not None:
            with self._turn:
                if self._lock_fd is None:
                    path = f"{self.engine.url.database}-writers.lock"
                    try:
                        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    except OSError:
                        self._lock_fd = NO_LOCK_FILE
        return None if self._lock_fd in (None, NO_LOCK_FILE) else self._lock_fd

    def held_writer(self) -> Connection:
        """A connection kept for a run of many small write transactions, each ``with
        connection.begin():`` (on SQLite BEGIN IMMEDIATE, as :meth:`write`): the pool's checkout and
        reset once, not per transaction (the SMTP relay commits once per message). The caller
        closes it."""
        return self._write_engine.connect()

    @contextmanager
    def autocommit_connection(self) -> Iterator[Connection]:
        """A connection where each statement commits on its own: for writes that are one
        statement (atomic by themselves), without BEGIN and COMMIT round trips."""
        with self._autocommit_engine.connect() as connection:
            yield connection

    def dispose(self) -> None:
        with self._turn:  # not while a queued write holds the connection and the lock file
            if self._held is not None:
                self._held.close()
                self._held = None
            if self._lock_fd not in (None, NO_LOCK_FILE):
                os.close(self._lock_fd)
            self._lock_fd = None
        self.engine.dispose()


def open_store(url: str, *, run_migrations: bool = True) -> Store:
    """The store at ``url``, migrated; StoreUnavailable when it cannot be opened or reached."""
    engine = make_engine(url)
    if run_migrations:
        try:
            migrate(engine)
        except DBAPIError as exc:
            engine.dispose()
            reason = " ".join(str(exc.orig or exc).split())  # the driver's words, on one line
            raise StoreUnavailable(f"cannot open the store {shown(url)}: {reason}") from exc
    return Store(engine)
