"""The rollout journal: SQLite in WAL mode, every transition recorded before and after its
effect, per-host progress, gate evidence, approvals, and the rollout lock.

Writes are transactions (BEGIN IMMEDIATE), so a killed orchestrator leaves the journal
intact: the last complete event is the truth, and resume redoes an effect whose
"before" has no "after" (every effect is idempotent).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from orchestrator import procs
from orchestrator.errors import CallfleetError, InvalidInput
from orchestrator.rollout.machine import TERMINAL, Phase, check

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, actor TEXT NOT NULL,
  target TEXT NOT NULL, plan TEXT NOT NULL, digest TEXT NOT NULL, inventory TEXT NOT NULL,
  policy TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '{}', lease_pid INTEGER, lease_host TEXT, outcome TEXT
);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL REFERENCES runs(id), ts REAL NOT NULL,
  kind TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL, site TEXT, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run, seq);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run TEXT NOT NULL, since REAL NOT NULL);
"""

LOCK = "rollout"


class RolloutLocked(CallfleetError):
    """Another rollout holds the lock (or another process drives this run)."""

    exit_code = 9


class Run(BaseModel):
    """A run as the journal holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    created: float
    updated: float
    actor: str
    target: str
    plan: dict[str, Any]
    digest: str
    inventory: str
    policy: str
    phase: Phase
    wave: int
    progress: dict[str, Any]
    lease_pid: int | None
    lease_host: str | None
    outcome: str | None


class Event(BaseModel):
    """One journal line."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    seq: int
    run: str
    ts: float
    kind: str
    phase: str
    wave: int
    site: str | None
    data: dict[str, Any]


def actor() -> str:
    """Who is acting: $CALLFLEET_ACTOR (a CI job id, a person), else user@host."""
    return os.environ.get("CALLFLEET_ACTOR") or f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}"


class Journal:
    """The journal file of an estate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a transition on disk survives a power cut, not just a kill
        db.execute("PRAGMA foreign_keys=ON")
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

    # -- runs ----------------------------------------------------------------------
    def create_run(self, *, plan: dict[str, Any], digest: str, target: str, inventory: str, policy: str) -> Run:
        """A new run in PENDING, holding the rollout lock; RolloutLocked names the holder."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self._tx() as db:
            held = db.execute("SELECT run FROM locks WHERE name=?", (LOCK,)).fetchone()
            if held is not None:
                other = db.execute("SELECT phase, target FROM runs WHERE id=?", (held["run"],)).fetchone()
                raise RolloutLocked(
                    f"rollout {held['run']} (to {other['target']}, {other['phase']}) holds the rollout lock",
                    hint=f"finish it (`callfleet rollout advance|resume {held['run']}`) or abort it")
            db.execute("INSERT INTO locks(name, run, since) VALUES (?,?,?)", (LOCK, run_id, now))
            db.execute("INSERT INTO runs(id, created, updated, actor, target, plan, digest, inventory, policy, phase)"
                       " VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (run_id, now, now, actor(), target, json.dumps(plan), digest, inventory, policy,
                        Phase.PENDING.value))
            self._event(db, run_id, "created", Phase.PENDING, 0, None, {"actor": actor(), "digest": digest})
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        """The run called `run_id` (InvalidInput when unknown)."""
        db = self._connect()
        try:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        finally:
            db.close()
        if row is None:
            raise InvalidInput(f"no rollout run {run_id!r} in {self.path}")
        return _run(row)

    def runs(self, limit: int = 50) -> list[Run]:
        """Newest first."""
        db = self._connect()
        try:
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        finally:
            db.close()
        return [_run(r) for r in rows]

    def lock_holder(self) -> str | None:
        """The run holding the rollout lock, if any."""
        db = self._connect()
        try:
            row = db.execute("SELECT run FROM locks WHERE name=?", (LOCK,)).fetchone()
        finally:
            db.close()
        return None if row is None else str(row["run"])

    # -- leases: one process drives a run at a time -----------------------------------
    def take_lease(self, run_id: str) -> None:
        """Claim the run for this process; RolloutLocked when a live process drives it."""
        me, host = os.getpid(), socket.gethostname()
        with self._tx() as db:
            row = db.execute("SELECT lease_pid, lease_host FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise InvalidInput(f"no rollout run {run_id!r} in {self.path}")
            pid, lhost = row["lease_pid"], row["lease_host"]
            if pid and pid != me and lhost == host and procs.alive(pid):
                raise RolloutLocked(f"rollout {run_id} is being driven by process {pid} on {host}")
            db.execute("UPDATE runs SET lease_pid=?, lease_host=? WHERE id=?", (me, host, run_id))

    def drop_lease(self, run_id: str) -> None:
        """Let another process drive the run."""
        with self._tx() as db:
            db.execute("UPDATE runs SET lease_pid=NULL, lease_host=NULL WHERE id=? AND lease_pid=?",
                       (run_id, os.getpid()))

    # -- events and transitions ------------------------------------------------------
    @staticmethod
    def _event(db: sqlite3.Connection, run_id: str, kind: str, phase: Phase, wave: int, site: str | None,
               data: dict[str, Any]) -> None:
        db.execute("INSERT INTO events(run, ts, kind, phase, wave, site, data) VALUES (?,?,?,?,?,?,?)",
                   (run_id, time.time(), kind, phase.value, wave, site, json.dumps(data, default=str)))

    def record(self, run_id: str, kind: str, *, site: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Append an event at the run's current phase and wave."""
        with self._tx() as db:
            row = db.execute("SELECT phase, wave FROM runs WHERE id=?", (run_id,)).fetchone()
            self._event(db, run_id, kind, Phase(row["phase"]), row["wave"], site, data or {})

    def transition(self, run_id: str, to: Phase, *, wave: int | None = None, site: str | None = None,
                   progress: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                   outcome: str | None = None) -> Run:
        """Move the run (checked against the state machine), atomically with its event."""
        with self._tx() as db:
            row = db.execute("SELECT phase, wave, progress FROM runs WHERE id=?", (run_id,)).fetchone()
            src = Phase(row["phase"])
            check(src, to)
            new_wave = row["wave"] if wave is None else wave
            merged = {**json.loads(row["progress"]), **(progress or {})}
            db.execute("UPDATE runs SET phase=?, wave=?, progress=?, updated=?, outcome=COALESCE(?, outcome) "
                       "WHERE id=?", (to.value, new_wave, json.dumps(merged, default=str), time.time(), outcome,
                                      run_id))
            self._event(db, run_id, "transition", to, new_wave, site, {"from": src.value, **(data or {})})
            if to in TERMINAL:
                db.execute("DELETE FROM locks WHERE name=? AND run=?", (LOCK, run_id))
        return self.run(run_id)

    def update_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        """Merge keys into the run's progress record (no phase change)."""
        with self._tx() as db:
            row = db.execute("SELECT progress FROM runs WHERE id=?", (run_id,)).fetchone()
            merged = {**json.loads(row["progress"]), **progress}
            db.execute("UPDATE runs SET progress=?, updated=? WHERE id=?",
                       (json.dumps(merged, default=str), time.time(), run_id))

    def events(self, run_id: str, *, kind: str | None = None) -> list[Event]:
        """Every event of a run, oldest first."""
        db = self._connect()
        try:
            sql = "SELECT * FROM events WHERE run=?" + (" AND kind=?" if kind else "") + " ORDER BY seq"
            rows = db.execute(sql, (run_id, kind) if kind else (run_id,)).fetchall()
        finally:
            db.close()
        return [Event(seq=r["seq"], run=r["run"], ts=r["ts"], kind=r["kind"], phase=r["phase"], wave=r["wave"],
                      site=r["site"], data=json.loads(r["data"])) for r in rows]

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check."""
        db = self._connect()
        try:
            return bool(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
        finally:
            db.close()


def _run(row: sqlite3.Row) -> Run:
    return Run(id=row["id"], created=row["created"], updated=row["updated"], actor=row["actor"],
               target=row["target"], plan=json.loads(row["plan"]), digest=row["digest"], inventory=row["inventory"],
               policy=row["policy"], phase=Phase(row["phase"]), wave=row["wave"],
               progress=json.loads(row["progress"]), lease_pid=row["lease_pid"], lease_host=row["lease_host"],
               outcome=row["outcome"])
