"""Engine construction, transactions and migrations for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url

from bootvault.store import doorbell, locks
from bootvault.store.commits import INFO_KEY, CommitCount

JOBS_CHANGED = "bootvault_jobs_changed"  # set in conn.info by store.jobs.announce
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
HEAD_REVISION = "0010"  # the newest file in migrations/versions (a test keeps the two in step)
_WRITE = "bootvault_write"


def _private_files(database: str | None) -> None:
    """The database, its WAL and shared-memory files are the owner's only, whatever the umask."""
    if not database or database == ":memory:":
        return
    if not os.path.exists(database):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(database + suffix):
            os.chmod(database + suffix, 0o600)


def _json_loads(text: str) -> Any:
    """JSON columns (tags, two per row) as json.loads reads them; most are empty, and "{}" is
    answered without the parser."""
    return {} if text == "{}" else json.loads(text)


def _sqlite_engine(url: str, commits: Callable[[], CommitCount | None]) -> Engine:
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False}, json_deserializer=_json_loads
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info[INFO_KEY] = commits()
        # Let SQLAlchemy's begin hook, not the driver, decide how a transaction starts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        _private_files(engine.url.database)  # WAL files appear with the first connection

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so two writers never deadlock upgrading a read lock.
        # Straight to the driver: SQLAlchemy's statement machinery would cost more than the
        # query a short read transaction is for.
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

    return engine


def database_unreachable(error: BaseException) -> bool:
    """The database dropped or refused the connection (a restart, a failover, a terminated
    backend, SQLite's lock wait running out): transient, so a request may be retried."""
    return isinstance(error, exc.OperationalError) or (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated
    )


class Database:
    """One engine per process; `write()` and `read()` give short transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._subscribers: list[Callable[[], None]] = []
        self._local = threading.local()  # SQLite: each thread's read connection, kept open
        self._held: list[Connection] = []
        self._held_lock = threading.Lock()
        self.commits: CommitCount | None = None  # SQLite files: see store/commits.py
        if self.is_sqlite:
            database = make_url(url).database
            _private_files(database)
            if database and database != ":memory:":
                self.commits = CommitCount(database)
            self.engine = _sqlite_engine(url, lambda: self.commits)
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            odd = None
            try:
                with conn.begin():  # on SQLite: BEGIN IMMEDIATE, the write lock is ours
                    if self.commits is not None:
                        odd = self.commits.begin()
                    yield conn
            finally:
                if odd is not None:
                    self.commits.end(odd)  # type: ignore[union-attr]
            if conn.info.pop(JOBS_CHANGED, False):
                for wake in self._subscribers:
                    wake()
                if self.is_sqlite and self.engine.url.database:  # workers in other processes
                    doorbell.ring(doorbell.directory(self.engine.url.database))

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Call wake() after every committed transaction that queued or finished a job."""
        self._subscribers.append(wake)

    def psycopg_url(self) -> str:
        """The libpq URL of a PostgreSQL database (for LISTEN on a connection of its own)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        if not self.is_sqlite:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        # SQLite: a thread keeps one connection for its reads, so a read costs BEGIN and COMMIT
        # and not a pool checkout, a reset and a return (more than a small query costs). A read
        # inside a read of the same thread gets a connection of its own, as before.
        kept = self._read_connection()
        if kept is None:
            with self.engine.connect() as fresh, fresh.begin():
                yield fresh
            return
        with kept.begin():
            yield kept

    @contextmanager
    def read_one(self) -> Iterator[Connection]:
        """A read of one statement. On SQLite it runs without BEGIN and COMMIT around it: one
        statement alone sees one snapshot, and the pair costs more than a read by key. Otherwise
        (PostgreSQL, or a read inside a read) the same as read()."""
        conn = self._read_connection() if self.is_sqlite else None
        if conn is None:
            with self.read() as other:
                yield other
            return
        try:
            yield conn
        finally:
            if conn.in_transaction():  # a statement through SQLAlchemy began one
                conn.rollback()

    def _read_connection(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.invalidated):
            conn = None
        if conn is None:
            conn = self.engine.connect()
            self._local.conn = conn
            with self._held_lock:
                self._held = [c for c in self._held if not c.closed]
                self._held.append(conn)
        return None if conn.in_transaction() else conn

    def schema_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except exc.DBAPIError:
            return None  # no schema yet

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; serialised across processes on PG).

        Every process calls this at start-up; when the schema is current it costs one query
        instead of loading Alembic's migration scripts."""
        if self.schema_revision() == HEAD_REVISION:
            return
        from alembic import command  # imported only to migrate: a third of a process's start-up
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.write() as conn:
            locks.hold(conn, locks.Lock.MIGRATE)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        for conn in held:
            conn.close()
        self.engine.dispose()
        if self.commits is not None:
            self.commits.close()
            self.commits = None
