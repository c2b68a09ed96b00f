"""The rollout journal: every transition recorded before and after its effect, per-host
progress, gate evidence, approvals, the rollout lock and the lease of the process driving
a run, in a store (orchestrator.store): a SQLite file in WAL mode (the default) or a
PostgreSQL database shared by CI runners on many hosts.

Writes are exclusive transactions, so a killed orchestrator leaves the journal intact:
the last complete event is the truth, and resume redoes an effect whose "before" has no
"after" (every effect is idempotent). A driver's writes carry its lease's fencing token:
once another runner took the lease over (after expiry, by the database's clock), the old
driver's next write is refused (LeaseLost) and it stops.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from orchestrator import procs
from orchestrator.errors import CallfleetError, ExitCode, InvalidInput
from orchestrator.rollout import estate_lock
from orchestrator.rollout.machine import TERMINAL, Phase, check
from orchestrator.rollout.state import RunProgress
from orchestrator.store import lease as leases
from orchestrator.store import url as store_url
from orchestrator.store.db import Store, StoreBusy, sqlite_read_only
from orchestrator.store.migrate import Migration, current, sql_steps, upgrade

COMPONENT = "rollout"
LOCK = "rollout"
LEASE_ENV = "CALLFLEET_LEASE_S"
DEFAULT_LEASE_S = 60.0
# PRAGMA application_id of a callfleet rollout journal ("CFRJ"): tells it from any other SQLite file.
APPLICATION_ID = 0x4346524A
_TABLES = {"runs": {"id", "phase", "progress", "lease_pid", "lease_host"}, "events": {"seq", "run", "kind"},
           "locks": {"name", "run"}}
_RECOVER = ("restore the journal from a backup, or move it aside and `sqlite3 BROKEN .recover | sqlite3 NEW`; "
            "check the estate's real state (`callfleet lab status` / `plan`) before starting a new rollout")


def _add_column(table: str, column: str, sqlite_type: str, pg_type: str) -> Any:
    def apply(conn: Connection, backend: store_url.Backend) -> None:
        have = {c["name"] for c in sa.inspect(conn).get_columns(table)}
        if column not in have:  # journals from before versions may already have it
            kind = sqlite_type if backend is store_url.Backend.SQLITE else pg_type
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    return apply


# Version 1 is the schema of journals made before versions (CREATE IF NOT EXISTS adopts them).
MIGRATIONS = (
    Migration(version=1, description="runs, events, the rollout lock", apply=sql_steps(
        sqlite=["""CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, actor TEXT NOT NULL,
  target TEXT NOT NULL, plan TEXT NOT NULL, digest TEXT NOT NULL, inventory TEXT NOT NULL,
  policy TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '{}', lease_pid INTEGER, lease_host TEXT, outcome TEXT)""",
                """CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL REFERENCES runs(id), ts REAL NOT NULL,
  kind TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL, site TEXT, data TEXT NOT NULL)""",
                "CREATE INDEX IF NOT EXISTS events_run ON events(run, seq)",
                "CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run TEXT NOT NULL, since REAL NOT NULL)"],
        postgresql=["""CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL,
  target TEXT NOT NULL, plan TEXT NOT NULL, digest TEXT NOT NULL, inventory TEXT NOT NULL,
  policy TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL DEFAULT 0,
  progress TEXT NOT NULL DEFAULT '{}', lease_pid INTEGER, lease_host TEXT, outcome TEXT)""",
                    """CREATE TABLE IF NOT EXISTS events (
  seq BIGSERIAL PRIMARY KEY, run TEXT NOT NULL REFERENCES runs(id), ts DOUBLE PRECISION NOT NULL,
  kind TEXT NOT NULL, phase TEXT NOT NULL, wave INTEGER NOT NULL, site TEXT, data TEXT NOT NULL)""",
                    "CREATE INDEX IF NOT EXISTS events_run ON events(run, seq)",
                    "CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run TEXT NOT NULL, "
                    "since DOUBLE PRECISION NOT NULL)"])),
    Migration(version=2, description="the lease holder's process start time (a reused pid is not the holder)",
              apply=_add_column("runs", "lease_start", "INTEGER", "BIGINT")),
    Migration(version=3, description="lease expiry (database clock) and fencing token",
              apply=sql_steps(sqlite=["ALTER TABLE runs ADD COLUMN lease_expires REAL",
                                      "ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0"],
                              postgresql=["ALTER TABLE runs ADD COLUMN lease_expires DOUBLE PRECISION",
                                          "ALTER TABLE runs ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0"])),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


class RolloutLocked(CallfleetError):
    """Another rollout holds the lock (or another process drives this run)."""

    exit_code = ExitCode.LOCKED


class LeaseLost(RolloutLocked):
    """This process's lease on a run expired or was taken over: it must not write again."""


class RunSummary(BaseModel):
    """A run as the journal holds it, but its plan (listed by `rollout history`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    created: float
    updated: float
    actor: str
    target: str
    digest: str
    inventory: str
    policy: str
    phase: Phase
    wave: int
    progress: RunProgress
    lease_pid: int | None
    lease_host: str | None
    outcome: str | None
    lease_start: int | None = None
    lease_expires: float | None = None
    lease_token: int = 0


class Run(RunSummary):
    """A run as the journal holds it."""

    plan: dict[str, Any]


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
    """Who is acting: $CALLFLEET_ACTOR (a CI job id, a person), else user@host (the runner's
    name, $CALLFLEET_HOLDER, when set)."""
    host = os.environ.get(leases.HOLDER_ENV) or socket.gethostname()
    return os.environ.get("CALLFLEET_ACTOR") or f"{os.environ.get('USER', 'unknown')}@{host}"


class Journal:
    """The rollout journal of an estate: a SQLite file, or a PostgreSQL database.

    `location` is a path, `sqlite:///path` or `postgresql://...`. `create=True` (a command
    that starts a rollout) makes the journal when absent; every other command opens an
    existing journal only, so a mistyped path is an error and not a new, empty journal.
    `read_only=True` (status, history) never writes (nor migrates), and works on a SQLite
    journal the user may only read. Whatever opens it, it must be a callfleet journal (a
    SQLite file that also passes SQLite's integrity check): a foreign, truncated or
    corrupt one is InvalidInput naming it, with how to recover. Opening for writing
    migrates an older schema to this version's.
    """

    def __init__(self, location: Path | str, *, create: bool = False, read_only: bool = False,
                 busy_timeout_s: float = 30.0, lease_s: float | None = None) -> None:
        self.url = store_url.parse(location)
        self.where = self.url.display()
        self.read_only = read_only
        self.busy_timeout_s = busy_timeout_s
        self.lease_s = lease_s if lease_s is not None else float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)
        self._tokens: dict[str, int] = {}  # run -> the fencing token of this process's lease
        self._heartbeats: dict[str, threading.Event] = {}
        self.store = Store(self.url, component=COMPONENT, read_only=read_only, busy_timeout_s=busy_timeout_s)
        if self.url.backend is store_url.Backend.SQLITE:
            self._open_sqlite(create)
        else:
            self._open_postgresql(create)

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL journal has none)."""
        return self.url.file

    # -- opening -------------------------------------------------------------------
    def _open_sqlite(self, create: bool) -> None:
        path = self.path
        if path.is_dir():
            raise InvalidInput(f"{path}: a directory, not a rollout journal")
        if not path.exists():
            if not create or self.read_only:
                raise InvalidInput(f"{path}: no rollout journal here",
                                   hint="check --journal / $CALLFLEET_JOURNAL; a rollout creates its journal")
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self._check_sqlite_file()
        if not self.read_only:
            self._migrate()

    def _open_postgresql(self, create: bool) -> None:
        try:
            with self.store.read() as conn:
                tables = self.store.table_names(conn)
                version = current(self.store, conn, COMPONENT)
        except sa.exc.OperationalError as exc:
            raise InvalidInput(f"{self.where}: cannot reach the rollout journal ({exc.orig})",
                               hint="check the URL, the server and the runner's credentials") from None
        if version == 0:
            if "runs" in tables:
                raise InvalidInput(f"{self.where}: not a callfleet rollout journal (a `runs` table that is not "
                                   "ours); refusing to add tables to it", hint="give callfleet its own database")
            if not create or self.read_only:
                raise InvalidInput(f"{self.where}: no rollout journal here",
                                   hint="check --journal / $CALLFLEET_JOURNAL; a rollout creates its journal")
        if not self.read_only:
            self._migrate()

    def _migrate(self) -> None:
        """Bring the schema to this version (a current journal costs one read, no write lock)."""
        try:
            with self.store.read() as conn:
                if current(self.store, conn, COMPONENT) == SCHEMA_VERSION:
                    return
            with self.store.write() as conn:
                upgrade(self.store, conn, COMPONENT, MIGRATIONS)
                if self.url.backend is store_url.Backend.SQLITE:
                    conn.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")
        except StoreBusy as exc:
            raise RolloutLocked(exc.message, hint=exc.hint) from None
        except sa.exc.DatabaseError as exc:
            raise InvalidInput(f"{self.where}: cannot write the rollout journal ({exc.orig})") from None

    def _check_sqlite_file(self) -> None:
        """A callfleet journal (by application id, or by its tables for journals made before the id),
        intact by SQLite's quick check; else InvalidInput naming the file."""
        self._check_size()
        try:
            db = sqlite_read_only(self.path)  # looking must not change a file that may not be ours
            try:
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                columns: dict[str, set[str]] = {}
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                    columns[table] = {r[1] for r in db.execute(f"PRAGMA table_info('{table}')").fetchall()}
                check_result = db.execute("PRAGMA integrity_check(1)").fetchone()[0]
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise InvalidInput(f"{self.path}: not a readable rollout journal ({exc})", hint=_RECOVER) from None
        ours = all(need <= columns.get(table, set()) for table, need in _TABLES.items())
        if app_id not in (0, APPLICATION_ID) or not ours:
            raise InvalidInput(f"{self.path}: not a callfleet rollout journal (another application's SQLite "
                               "file); refusing to add tables to it",
                               hint="point --journal at the estate's journal (default: .callfleet/journal.sqlite "
                                    "beside the inventory)")
        if check_result != "ok":
            raise InvalidInput(f"{self.path}: the rollout journal is damaged (integrity check: {check_result})",
                               hint=_RECOVER)

    def _check_size(self) -> None:
        """The file holds as many whole pages as its header says (SQLite itself reads a short
        file as a smaller database, so a lost tail would pass unnoticed)."""
        with self.path.open("rb") as f:
            header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            raise InvalidInput(f"{self.path}: not a rollout journal (no SQLite header)", hint=_RECOVER)
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        pages = int.from_bytes(header[28:32], "big")
        header_valid = header[92:96] == header[24:28]  # the in-header size is current
        size = self.path.stat().st_size
        if size % page or (header_valid and pages and size != pages * page):
            raise InvalidInput(f"{self.path}: the rollout journal is damaged ({size} bytes, expected "
                               f"{pages} pages of {page})", hint=_RECOVER)

    def _tx(self) -> Any:
        """An exclusive write transaction; a writer stuck past the busy timeout is RolloutLocked (exit 9)."""
        return _LockedTx(self)

    def _q(self, conn: Connection, sql: str, **params: Any) -> sa.engine.CursorResult[Any]:
        return conn.execute(sa.text(sql), params)

    def schema_version(self) -> int:
        """The journal's schema version (0: a journal from before versions, opened read-only)."""
        with self.store.read() as conn:
            return current(self.store, conn, COMPONENT)

    # -- runs ----------------------------------------------------------------------
    @contextmanager
    def _estate_claim(self, estate: str, run_id: str) -> Iterator[None]:
        """Hold the estate's claim on this host for `run_id` (RolloutLocked naming the other
        run), given back if the body fails; a plan without an estate claims nothing."""
        if estate:
            other = estate_lock.claim(estate=estate, journal=self.url.key(), run=run_id,
                                      still_running=_still_running)
            if other is not None:
                raise RolloutLocked(f"rollout {other.run} of estate {estate} (journal {other.journal}) is still "
                                    "going: one rollout per estate",
                                    hint=f"finish or abort it with --journal {other.journal}")
        try:
            yield
        except BaseException:
            if estate:
                estate_lock.release(estate=estate, journal=self.url.key(), run=run_id)
            raise

    def create_run(self, *, plan: dict[str, Any], digest: str, target: str, inventory: str, policy: str) -> Run:
        """A new run in PENDING, holding the rollout lock of this journal and the estate's claim
        on this host; RolloutLocked names the holder."""
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        with self._estate_claim(str(plan.get("estate") or ""), run_id), self._tx() as db:
            held = self._q(db, "SELECT run FROM locks WHERE name=:n", n=LOCK).mappings().first()
            if held is not None:
                other_run = self._q(db, "SELECT phase, target, actor FROM runs WHERE id=:r",
                                    r=held["run"]).mappings().one()
                raise RolloutLocked(
                    f"rollout {held['run']} (to {other_run['target']}, {other_run['phase']}, started by "
                    f"{other_run['actor']}) holds the rollout "
                    f"lock of {self.where}",
                    hint=f"finish it (`callfleet rollout advance|resume {held['run']}`) or abort it")
            self._q(db, "INSERT INTO locks(name, run, since) VALUES (:n, :r, :s)", n=LOCK, r=run_id, s=now)
            self._q(db, "INSERT INTO runs(id, created, updated, actor, target, plan, digest, inventory, policy, "
                    "phase) VALUES (:id, :c, :u, :a, :t, :p, :d, :i, :pol, :ph)",
                    id=run_id, c=now, u=now, a=actor(), t=target, p=json.dumps(plan), d=digest, i=inventory,
                    pol=policy, ph=Phase.PENDING.value)
            self._event(db, run_id, "created", Phase.PENDING, 0, None, {"actor": actor(), "digest": digest})
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        """The run called `run_id` (InvalidInput when unknown)."""
        with self.store.read() as db:
            row = self._q(db, "SELECT * FROM runs WHERE id=:r", r=run_id).mappings().first()
        if row is None:
            raise InvalidInput(f"no rollout run {run_id!r} in {self.where}")
        return _run(row)

    def runs(self, limit: int = 50) -> list[Run]:
        """Newest first."""
        with self.store.read() as db:
            rows = self._q(db, "SELECT * FROM runs ORDER BY created DESC LIMIT :n", n=limit).mappings().all()
        return [_run(r) for r in rows]

    def lock_holder(self) -> str | None:
        """The run holding the rollout lock, if any."""
        with self.store.read() as db:
            row = self._q(db, "SELECT run FROM locks WHERE name=:n", n=LOCK).mappings().first()
        return None if row is None else str(row["run"])

    # -- leases: one process drives a run at a time, on any host ------------------------
    def take_lease(self, run_id: str) -> None:
        """Claim the run for this process (see orchestrator.store.lease); RolloutLocked names
        the live holder. A lease of a dead process of this host is taken at once; one of
        another host when it expires (by the database's clock). Starts the heartbeat that
        keeps the lease while this process drives the run."""
        me = leases.me()
        with self._tx() as db:
            row = self._q(db, "SELECT * FROM runs WHERE id=:r", r=run_id).mappings().first()
            if row is None:
                raise InvalidInput(f"no rollout run {run_id!r} in {self.where}")
            state = _lease_state(row)
            decision = leases.decide(state, me=me, now=self.store.now(db), ttl_s=self.lease_s,
                                     local_alive=_local_alive(state.holder, me))
            if decision.verdict is leases.Verdict.REFUSED:
                left = ("while it lives" if decision.remaining_s == float("inf")
                        else f"its lease expires in {decision.remaining_s:.0f} s unless renewed")
                raise RolloutLocked(f"rollout {run_id} is being driven by {decision.holder} ({left})",
                                    hint="wait for it to finish or stop it; a dead holder's lease is taken over "
                                         "when it expires")
            self._q(db, "UPDATE runs SET lease_pid=:pid, lease_host=:host, lease_start=:start, lease_expires=:exp, "
                    "lease_token=:tok WHERE id=:r", pid=me.pid, host=me.host, start=me.start,
                    exp=decision.expires, tok=decision.token, r=run_id)
        self._tokens[run_id] = decision.token
        self._start_heartbeat(run_id)

    def renew_lease(self, run_id: str) -> None:
        """Push this process's lease's expiry out (the heartbeat); LeaseLost when it is gone."""
        with self._tx() as db:
            self._fence(db, run_id)
            self._q(db, "UPDATE runs SET lease_expires=:exp WHERE id=:r",
                    exp=self.store.now(db) + self.lease_s, r=run_id)

    def drop_lease(self, run_id: str) -> None:
        """Let another process drive the run (only this very process's lease is dropped)."""
        self._stop_heartbeat(run_id)
        self._tokens.pop(run_id, None)
        me = leases.me()
        with self._tx() as db:
            self._q(db, "UPDATE runs SET lease_pid=NULL, lease_host=NULL, lease_start=NULL, lease_expires=NULL "
                    "WHERE id=:r AND lease_pid=:pid AND lease_host=:host "
                    "AND (lease_start IS NULL OR lease_start=:start)", r=run_id, pid=me.pid, host=me.host,
                    start=me.start)

    def _fence(self, db: Connection, run_id: str) -> None:
        """Inside a write: refuse it when this process drives the run under a lease that is no
        longer its own (taken over, or expired: a process paused past its lease)."""
        token = self._tokens.get(run_id)
        if token is None:
            return  # not a driver (approve, abort): no lease to check
        row = self._q(db, "SELECT * FROM runs WHERE id=:r", r=run_id).mappings().one()
        state = _lease_state(row)
        now = self.store.now(db)
        if leases.valid(state, token=token, now=now):
            return
        # the token stays: every later write (and the heartbeat) is refused the same way
        if state.token != token and state.holder is not None:
            why = f"{state.holder} took it over (token {state.token}, ours was {token})"
        elif state.token != token:
            why = f"another process took it over and let it go (token {state.token}, ours was {token})"
        else:
            why = f"it expired {now - (state.expires or now):.0f} s ago (this process was stopped or stalled)"
        raise LeaseLost(f"rollout {run_id}: this process lost its lease on the run: {why}; it stops without "
                        "writing, the journal keeps the last recorded step",
                        hint=f"the new holder continues it; else `callfleet rollout resume {run_id}` from one runner")

    def _start_heartbeat(self, run_id: str) -> None:
        if run_id in self._heartbeats:
            return
        stop = threading.Event()
        self._heartbeats[run_id] = stop

        def beat() -> None:
            while not stop.wait(self.lease_s / 3):
                try:
                    self.renew_lease(run_id)
                except LeaseLost:
                    return  # the next write says so, with the reason
                except (CallfleetError, sa.exc.SQLAlchemyError):
                    continue  # a busy or unreachable store: try again; expiry is the safety net

        threading.Thread(target=beat, name=f"lease-{run_id}", daemon=True).start()

    def _stop_heartbeat(self, run_id: str) -> None:
        stop = self._heartbeats.pop(run_id, None)
        if stop is not None:
            stop.set()

    # -- events and transitions ------------------------------------------------------
    def _event(self, db: Connection, run_id: str, kind: str, phase: Phase, wave: int, site: str | None,
               data: dict[str, Any]) -> None:
        self._q(db, "INSERT INTO events(run, ts, kind, phase, wave, site, data) VALUES (:r, :ts, :k, :p, :w, :s, :d)",
                r=run_id, ts=time.time(), k=kind, p=phase.value, w=wave, s=site, d=json.dumps(data, default=str))

    def record(self, run_id: str, kind: str, *, site: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Append an event at the run's current phase and wave."""
        with self._tx() as db:
            self._fence(db, run_id)
            row = self._q(db, "SELECT phase, wave FROM runs WHERE id=:r", r=run_id).mappings().one()
            self._event(db, run_id, kind, Phase(row["phase"]), row["wave"], site, data or {})

    def transition(self, run_id: str, to: Phase, *, wave: int | None = None, site: str | None = None,
                   progress: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                   outcome: str | None = None) -> Run:
        """Move the run (checked against the state machine), atomically with its event."""
        with self._tx() as db:
            self._fence(db, run_id)
            row = self._q(db, "SELECT phase, wave, progress FROM runs WHERE id=:r", r=run_id).mappings().one()
            src = Phase(row["phase"])
            check(src, to)
            new_wave = row["wave"] if wave is None else wave
            merged = _progress(row["progress"]).merged(progress or {})
            self._q(db, "UPDATE runs SET phase=:ph, wave=:w, progress=:p, updated=:u, outcome=COALESCE(:o, outcome) "
                    "WHERE id=:r", ph=to.value, w=new_wave, p=merged.model_dump_json(), u=time.time(),
                    o=outcome, r=run_id)
            self._event(db, run_id, "transition", to, new_wave, site, {"from": src.value, **(data or {})})
            if to in TERMINAL:
                self._q(db, "DELETE FROM locks WHERE name=:n AND run=:r", n=LOCK, r=run_id)
        run = self.run(run_id)
        if to in TERMINAL and run.plan.get("estate"):
            estate_lock.release(estate=str(run.plan["estate"]), journal=self.url.key(), run=run_id)
        return run

    def reopen(self, run_id: str, to: Phase, *, progress: dict[str, Any], data: dict[str, Any]) -> Run:
        """Move a finished run back into motion (`rollout undo`): it takes the rollout lock (and
        the estate's claim) again, so no other rollout runs beside it; RolloutLocked names the holder."""
        run = self.run(run_id)
        if run.phase not in TERMINAL:
            raise InvalidInput(f"run {run_id} is {run.phase}, not finished")
        check(run.phase, to)
        with self._estate_claim(str(run.plan.get("estate") or ""), run_id), self._tx() as db:
            held = self._q(db, "SELECT run FROM locks WHERE name=:n", n=LOCK).mappings().first()
            if held is not None and held["run"] != run_id:
                raise RolloutLocked(f"rollout {held['run']} holds the rollout lock of {self.where}",
                                    hint=f"finish or abort it first (`callfleet rollout abort {held['run']}`)")
            row = self._q(db, "SELECT phase, wave, progress FROM runs WHERE id=:r", r=run_id).mappings().one()
            src = Phase(row["phase"])
            check(src, to)  # read again inside the transaction: another undo may have won
            if held is None:
                self._q(db, "INSERT INTO locks(name, run, since) VALUES (:n, :r, :s)", n=LOCK, r=run_id,
                        s=time.time())
            merged = _progress(row["progress"]).merged(progress)
            self._q(db, "UPDATE runs SET phase=:ph, progress=:p, updated=:u WHERE id=:r", ph=to.value,
                    p=merged.model_dump_json(), u=time.time(), r=run_id)
            self._event(db, run_id, "transition", to, row["wave"], None, {"from": src.value, **data})
        return self.run(run_id)

    def update_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        """Set fields of the run's progress record (no phase change), validated."""
        self._change_progress(run_id, lambda _: progress)

    def approve(self, run_id: str, wave: int, by: str) -> None:
        """Record an approval of one wave, merged with the others in the same transaction."""
        self._change_progress(run_id, lambda current: {"approvals": {**current.approvals, wave: by}})

    def _change_progress(self, run_id: str, change: Callable[[RunProgress], dict[str, Any]]) -> None:
        # Read, merge and write in one transaction: the CLI and the executor both write here.
        with self._tx() as db:
            self._fence(db, run_id)
            row = self._q(db, "SELECT progress FROM runs WHERE id=:r", r=run_id).mappings().one()
            current = _progress(row["progress"])
            self._q(db, "UPDATE runs SET progress=:p, updated=:u WHERE id=:r",
                    p=current.merged(change(current)).model_dump_json(), u=time.time(), r=run_id)

    def events(self, run_id: str, *, kind: str | None = None) -> list[Event]:
        """Every event of a run, oldest first."""
        with self.store.read() as db:
            sql = "SELECT * FROM events WHERE run=:r" + (" AND kind=:k" if kind else "") + " ORDER BY seq"
            rows = self._q(db, sql, r=run_id, k=kind).mappings().all()
        return [Event(seq=r["seq"], run=r["run"], ts=r["ts"], kind=r["kind"], phase=r["phase"], wave=r["wave"],
                      site=r["site"], data=json.loads(r["data"])) for r in rows]

    def live_since(self, *, estate: str, target: str) -> float | None:
        """When `target` first took live calls on `estate` in a run that completed (and was not
        undone since): the first live step of the oldest such run. None: never."""
        sql = ("SELECT r.plan AS plan, MIN(e.ts) AS first FROM runs r JOIN events e ON e.run = r.id "
               "WHERE r.target = :t AND r.phase = :ph AND e.kind = 'traffic-step' GROUP BY r.id, r.plan")
        with self.store.read() as db:
            rows = self._q(db, sql, t=target, ph=Phase.COMPLETED.value).mappings().all()
        firsts = [float(r["first"]) for r in rows if json.loads(r["plan"]).get("estate") == estate]
        return min(firsts, default=None)

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check (PostgreSQL keeps its own: reachable is intact)."""
        with self.store.read() as db:
            if self.url.backend is not store_url.Backend.SQLITE:
                return bool(db.exec_driver_sql("SELECT 1").scalar_one() == 1)
            return bool(db.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok")


def live_age_s(location: str, *, estate: str, target: str, now: float) -> float:
    """Seconds `target` has taken live calls on `estate` by the journal at `location`
    (`Journal.live_since`); 0 when never, or when the journal does not exist yet."""
    try:
        journal = Journal(location, read_only=True)
    except InvalidInput:
        return 0.0  # no journal yet: nothing has ever gone live through it
    since = journal.live_since(estate=estate, target=target)
    return 0.0 if since is None else max(0.0, now - since)


class _LockedTx:
    """Store.write(), with a busy store reported as the rollout's exit 9 and driver errors as InvalidInput."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._cm: Any = None

    def __enter__(self) -> Connection:
        self._cm = self._journal.store.write()
        try:
            return self._cm.__enter__()  # type: ignore[no-any-return]
        except StoreBusy as exc:
            raise RolloutLocked(exc.message.replace(self._journal.store.component + "'s", "journal's"),
                                hint=exc.hint) from None
        except sa.exc.DatabaseError as exc:
            raise InvalidInput(f"{self._journal.where}: cannot write the rollout journal ({exc.orig})") from None

    def __exit__(self, *exc: Any) -> bool:
        return bool(self._cm.__exit__(*exc))


def _local_alive(holder: leases.Holder | None, me: leases.Holder) -> bool | None:
    """Whether the holder is a live process of this host (None: another host, not checkable)."""
    if holder is None or holder.host != me.host:
        return None
    return procs.alive(holder.pid) and (holder.start is None or procs.start_time(holder.pid) == holder.start)


def _lease_state(row: Any) -> leases.LeaseState:
    pid, host = row["lease_pid"], row["lease_host"]
    holder = None if pid is None or host is None else leases.Holder(host=host, pid=int(pid),
                                                                     start=row.get("lease_start"))
    return leases.LeaseState(holder=holder, expires=row.get("lease_expires"), token=int(row.get("lease_token") or 0))


def _still_running(claim: estate_lock.EstateClaim) -> bool:
    """Whether the run a claim names is still going (a gone or unreadable journal is not)."""
    try:
        return Journal(claim.journal, read_only=True).run(claim.run).phase not in TERMINAL
    except CallfleetError:
        return False


def _progress(text: str) -> RunProgress:
    return RunProgress.model_validate_json(text or "{}")


def _run(row: Any) -> Run:
    return Run(id=row["id"], created=row["created"], updated=row["updated"], actor=row["actor"],
               target=row["target"], plan=json.loads(row["plan"]), digest=row["digest"], inventory=row["inventory"],
               policy=row["policy"], phase=Phase(row["phase"]), wave=row["wave"],
               progress=_progress(row["progress"]), lease_pid=row["lease_pid"], lease_host=row["lease_host"],
               outcome=row["outcome"],
               # columns a read-only open of an older journal lacks
               lease_start=row.get("lease_start"), lease_expires=row.get("lease_expires"),
               lease_token=row.get("lease_token") or 0)


def resolve_run(journal: Journal, run_id: str | None) -> Run:
    """The run called `run_id`, else the latest (InvalidInput when unknown or there is none)."""
    if run_id:
        return journal.run(run_id)
    runs = journal.runs(limit=1)
    if not runs:
        raise InvalidInput(f"no rollout in {journal.where}")
    return runs[0]
