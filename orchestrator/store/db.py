"""Connections, serialised write transactions and the database's clock, on either backend.

A write transaction is exclusive per component on both backends, so every read-check-write
in a transaction is as safe as SQLite's BEGIN IMMEDIATE made the journals before: SQLite
takes its write lock up front; PostgreSQL takes a transaction-scoped advisory lock named
after the component (READ COMMITTED then sees every earlier writer's commit). Waiting
longer than the busy timeout is StoreBusy, not a hang.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from orchestrator.errors import CallfleetError, ExitCode
from orchestrator.store.url import Backend, StoreURL

_SQLITE_NOW = "SELECT (julianday('now') - 2440587.5) * 86400.0"
_PG_NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"


class StoreBusy(CallfleetError):
    """Another writer held the store's write lock longer than the busy timeout."""

    exit_code = ExitCode.LOCKED


class Store:
    """One store (a SQLite file or a PostgreSQL database) as seen by one component.

    `component` names the lock a write transaction takes on PostgreSQL (the rollout
    journal, the watch journal and the alert store may share one database without
    serialising each other). `read_only` connections never write (SQLite: mode=ro, or
    immutable when the directory cannot hold WAL's shared memory)."""

    def __init__(self, url: StoreURL, *, component: str, read_only: bool = False, busy_timeout_s: float = 30.0,
                 synchronous: str = "FULL") -> None:
        self.url = url
        self.component = component
        self.read_only = read_only
        self.busy_timeout_s = busy_timeout_s
        self._synchronous = synchronous
        self._closed = False
        self._lock_key = zlib.crc32(f"callfleet:{component}".encode())
        if url.backend is Backend.SQLITE:
            self.engine: Engine = sa.create_engine("sqlite://", creator=self._sqlite_connection, poolclass=NullPool)
        else:
            # a writer frozen (SIGSTOP) inside a transaction loses its session, and its lock, after 10 s
            options = "-c idle_in_transaction_session_timeout=10000"
            if read_only:
                options += " -c default_transaction_read_only=on"  # the server refuses writes too
            self.engine = sa.create_engine(url.sqlalchemy_url(), pool_pre_ping=True, pool_size=2, max_overflow=4,
                                           connect_args={"connect_timeout": 10, "application_name": "callfleet",
                                                         "options": options})

    @property
    def backend(self) -> Backend:
        """SQLite or PostgreSQL."""
        return self.url.backend

    def dispose(self) -> None:
        """Close pooled connections; the store is closed (later calls raise ResourceClosedError)."""
        self.engine.dispose()
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise sa.exc.ResourceClosedError(f"{self.url.display()}: the store was closed")

    # -- SQLite connections ------------------------------------------------------------
    def _sqlite_connection(self) -> sqlite3.Connection:
        path = self.url.file
        if self.read_only:
            return sqlite_read_only(path)
        db = sqlite3.connect(path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a transition on disk survives a power cut, not just a kill
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    # -- transactions ------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads (each statement sees the latest commit)."""
        self._check_open()
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """An exclusive write transaction: committed when the block ends, rolled back on error."""
        if self.read_only:
            raise CallfleetError(f"{self.url.display()}: opened read-only")
        self._check_open()
        with self.engine.connect() as conn:
            try:
                self._begin(conn)
            except sa.exc.OperationalError as exc:
                conn.rollback()
                if _busy(exc):
                    raise StoreBusy(f"{self.url.display()}: another process has held the {self.component}'s write "
                                    f"lock for {self.busy_timeout_s:g} s (a stuck callfleet or a database shell?)",
                                    hint="find it (`callfleet rollout status`), or wait and retry") from None
                raise
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _begin(self, conn: Connection) -> None:
        if self.backend is Backend.SQLITE:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(self.busy_timeout_s * 1000)}ms'")
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})

    def now(self, conn: Connection | None = None) -> float:
        """The database's clock (Unix seconds): every runner's lease times come from one clock."""
        sql = _SQLITE_NOW if self.backend is Backend.SQLITE else _PG_NOW
        if conn is not None:
            return float(conn.exec_driver_sql(sql).scalar_one())
        with self.read() as c:
            return float(c.exec_driver_sql(sql).scalar_one())

    def table_names(self, conn: Connection) -> set[str]:
        """The tables the store holds (in the default schema on PostgreSQL)."""
        return set(sa.inspect(conn).get_table_names())

    def columns(self, conn: Connection, table: str) -> set[str]:
        """A table's column names (empty when it does not exist)."""
        try:
            return {c["name"] for c in sa.inspect(conn).get_columns(table)}
        except sa.exc.NoSuchTableError:
            return set()


def _busy(exc: sa.exc.OperationalError) -> bool:
    orig: Any = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    return getattr(orig, "sqlstate", None) == "55P03"  # lock_not_available


def sqlite_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; `immutable` when the file's directory cannot hold WAL's
    shared-memory file (a journal the user may only read)."""
    uri = path.absolute().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30, isolation_level=None,
                             check_same_thread=False)
    return db

