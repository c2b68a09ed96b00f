"""The watch journal: SQLite in WAL mode, beside the rollout journal but in its own file.

Every incident change, every steering action (before and after), every alert handed to
the notifier is an event; the core's state (open incidents, hysteresis counters, the sites
the watch drained) is saved after each round, so a restarted watch resumes its incidents
and still knows which drains are its own. One row holds the owner, so two supervisors never
steer the same estate at once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator import procs
from orchestrator.errors import InvalidInput
from orchestrator.watch.model import WatchState

SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, round INTEGER NOT NULL,
  kind TEXT NOT NULL, site TEXT, incident TEXT, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watch_state (id INTEGER PRIMARY KEY CHECK (id = 1), ts REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watch_owner (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL,
  host TEXT NOT NULL, since REAL NOT NULL);
"""


class WatchEvent(BaseModel):
    """One journal line."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int
    ts: float
    round: int
    kind: str
    site: str | None
    incident: str | None
    data: dict[str, Any]


def default_path(inventory: Path) -> Path:
    """$CALLFLEET_WATCH_JOURNAL, else .callfleet/watch.sqlite beside the inventory (where the
    rollout journal lives too)."""
    env = os.environ.get("CALLFLEET_WATCH_JOURNAL")
    return Path(env) if env else inventory.resolve().parent / ".callfleet" / "watch.sqlite"


class WatchJournal:
    """The journal file of one supervised estate."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            try:
                db.executescript(SCHEMA)  # its own transaction (executescript commits first)
            finally:
                db.close()
        except (OSError, sqlite3.Error) as exc:
            raise InvalidInput(f"{path}: cannot open the watch journal ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an action on disk survives a power cut, not just a kill
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # -- owner ---------------------------------------------------------------------
    def acquire(self) -> None:
        """Become the estate's only supervisor; InvalidInput names a live one already running."""
        me, host = os.getpid(), socket.gethostname()
        with self._tx() as db:
            row = db.execute("SELECT pid, host, since FROM watch_owner WHERE id=1").fetchone()
            # A holder on another machine cannot be checked from here: trust it.
            if row is not None and (row["pid"], row["host"]) != (me, host) \
                    and (row["host"] != host or procs.alive(int(row["pid"]))):
                raise InvalidInput(f"another watch (pid {row['pid']} on {row['host']}, since "
                                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row['since']))}) "
                                   f"supervises this estate through {self.path}",
                                   hint="stop it first, or give this one another --journal")
            db.execute("INSERT OR REPLACE INTO watch_owner(id, pid, host, since) VALUES (1,?,?,?)",
                       (me, host, self._clock()))

    def release(self) -> None:
        """Give up ownership (only our own)."""
        with self._tx() as db:
            db.execute("DELETE FROM watch_owner WHERE id=1 AND pid=? AND host=?", (os.getpid(), socket.gethostname()))

    # -- events --------------------------------------------------------------------
    def record(self, kind: str, *, round_no: int, site: str | None = None, incident: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        """Append one event (committed before this returns)."""
        with self._tx() as db:
            db.execute("INSERT INTO watch_events(ts, round, kind, site, incident, data) VALUES (?,?,?,?,?,?)",
                       (self._clock(), round_no, kind, site, incident, json.dumps(data or {}, default=str)))

    def events(self, *, kind: str | None = None, limit: int = 10_000) -> list[WatchEvent]:
        """Events in order (optionally of one kind), the last `limit`."""
        db = self._connect()
        try:
            sql = "SELECT * FROM watch_events" + (" WHERE kind=?" if kind else "") + " ORDER BY seq DESC LIMIT ?"
            rows = db.execute(sql, (kind, limit) if kind else (limit,)).fetchall()
        finally:
            db.close()
        return [WatchEvent(seq=r["seq"], ts=r["ts"], round=r["round"], kind=r["kind"], site=r["site"],
                           incident=r["incident"], data=json.loads(r["data"])) for r in reversed(rows)]

    # -- state ---------------------------------------------------------------------
    def save_state(self, state: WatchState) -> None:
        """Persist the core's memory (the probe window excepted: stale after a restart)."""
        data = state.model_copy(update={"probes": ()}).model_dump_json()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO watch_state(id, ts, data) VALUES (1,?,?)", (self._clock(), data))

    def load_state(self) -> WatchState | None:
        """The last saved state, or None when none was ever saved."""
        db = self._connect()
        try:
            row = db.execute("SELECT data FROM watch_state WHERE id=1").fetchone()
        finally:
            db.close()
        if row is None:
            return None
        try:
            return WatchState.model_validate_json(row["data"])
        except ValidationError:
            # Losing it would forget which drains are the watch's own: a person must look.
            raise InvalidInput(f"{self.path}: the saved watch state is unreadable (another version?)",
                               hint="check which sites are drained (`callfleet lab status` or the edge), "
                                    "then move the file aside") from None
