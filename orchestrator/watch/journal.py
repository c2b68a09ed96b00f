"""The watch journal, in a store (orchestrator.store): a SQLite file in WAL mode beside the
rollout journal (its own file), or a PostgreSQL database shared by several watchers.

Every incident change, every steering action (before and after), every alert handed to
the notifier is an event; the core's state (open incidents, hysteresis counters, the sites
the watch drained) is saved after each round, so a restarted watch resumes its incidents
and still knows which drains are its own. One row holds the owner, so two supervisors never
steer the same estate at once; for several watchers on one store, the leader lease
(`lead`) decides which one acts, and `act_once` makes each action happen once whoever
leads (orchestrator.watch.leader).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Connection

from orchestrator.errors import CallfleetError, ExitCode, InvalidInput
from orchestrator.store import leases
from orchestrator.store import url as store_url
from orchestrator.store.db import Store
from orchestrator.store.lease import Decision, Holder
from orchestrator.store.migrate import Migration, sql_steps, upgrade
from orchestrator.traffic.failed_calls import FailedCall
from orchestrator.watch.model import WatchState
from orchestrator.watch.stats import Counts, Outcome, Source, Tally

COMPONENT = "watch"
LEADER_LEASE = "watch-leader"


def _lease_tables(conn: Connection, backend: store_url.Backend) -> None:
    for stmt in leases.ddl(backend):
        conn.exec_driver_sql(stmt)


MIGRATIONS = (
    Migration(version=1, description="events, saved state, the single owner", apply=sql_steps(
        sqlite=["""CREATE TABLE IF NOT EXISTS watch_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, round INTEGER NOT NULL,
  kind TEXT NOT NULL, site TEXT, incident TEXT, data TEXT NOT NULL)""",
                "CREATE TABLE IF NOT EXISTS watch_state (id INTEGER PRIMARY KEY CHECK (id = 1), ts REAL NOT NULL, "
                "data TEXT NOT NULL)",
                "CREATE TABLE IF NOT EXISTS watch_owner (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, "
                "host TEXT NOT NULL, since REAL NOT NULL)"],
        postgresql=["""CREATE TABLE IF NOT EXISTS watch_events (
  seq BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, round INTEGER NOT NULL,
  kind TEXT NOT NULL, site TEXT, incident TEXT, data TEXT NOT NULL)""",
                    "CREATE TABLE IF NOT EXISTS watch_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
                    "ts DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS watch_owner (id INTEGER PRIMARY KEY CHECK (id = 1), "
                    "pid INTEGER NOT NULL, host TEXT NOT NULL, since DOUBLE PRECISION NOT NULL)"])),
    Migration(version=2, description="the leader lease and the actions taken (idempotency keys)",
              apply=_lease_tables),
    Migration(version=3, description="call statistics per interval, site, number and source; the live cursor",
              apply=sql_steps(
        sqlite=["""CREATE TABLE IF NOT EXISTS watch_tally (
  start REAL NOT NULL, interval_s REAL NOT NULL, site TEXT NOT NULL, number TEXT NOT NULL, source TEXT NOT NULL,
  attempts REAL NOT NULL, answered REAL NOT NULL, user_busy REAL NOT NULL, no_answer REAL NOT NULL,
  rejected REAL NOT NULL, abandoned REAL NOT NULL, redirected REAL NOT NULL, network_failure REAL NOT NULL,
  causes TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (start, site, number, source))""",
                "CREATE TABLE IF NOT EXISTS watch_tally_cursor (site TEXT PRIMARY KEY, until REAL NOT NULL)"],
        postgresql=["""CREATE TABLE IF NOT EXISTS watch_tally (
  start DOUBLE PRECISION NOT NULL, interval_s DOUBLE PRECISION NOT NULL, site TEXT NOT NULL, number TEXT NOT NULL,
  source TEXT NOT NULL, attempts DOUBLE PRECISION NOT NULL, answered DOUBLE PRECISION NOT NULL,
  user_busy DOUBLE PRECISION NOT NULL, no_answer DOUBLE PRECISION NOT NULL, rejected DOUBLE PRECISION NOT NULL,
  abandoned DOUBLE PRECISION NOT NULL, redirected DOUBLE PRECISION NOT NULL,
  network_failure DOUBLE PRECISION NOT NULL, causes TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (start, site, number, source))""",
                    "CREATE TABLE IF NOT EXISTS watch_tally_cursor (site TEXT PRIMARY KEY, "
                    "until DOUBLE PRECISION NOT NULL)"])),
    Migration(version=4, description="failed callers: the public's failed emergency calls, kept from the edge",
              apply=sql_steps(
        sqlite=["CREATE TABLE IF NOT EXISTS watch_failed_calls (call_id TEXT PRIMARY KEY, at REAL NOT NULL, "
                "code INTEGER NOT NULL, number TEXT NOT NULL, site TEXT NOT NULL, host TEXT NOT NULL, "
                "caller TEXT NOT NULL)",
                "CREATE INDEX IF NOT EXISTS watch_failed_calls_at ON watch_failed_calls(at)"],
        postgresql=["CREATE TABLE IF NOT EXISTS watch_failed_calls (call_id TEXT PRIMARY KEY, "
                    "at DOUBLE PRECISION NOT NULL, code INTEGER NOT NULL, number TEXT NOT NULL, site TEXT NOT NULL, "
                    "host TEXT NOT NULL, caller TEXT NOT NULL)",
                    "CREATE INDEX IF NOT EXISTS watch_failed_calls_at ON watch_failed_calls(at)"])),
)
FAILED_TABLE = "watch_failed_calls"
TALLY_TABLE = "watch_tally"
_OUTCOMES = tuple(o.value for o in Outcome)


def _tally(row: Any) -> Tally:
    return Tally(start=row["start"], interval_s=row["interval_s"], site=row["site"], number=row["number"],
                 source=Source(row["source"]),
                 counts=Counts(attempts=row["attempts"], causes=json.loads(row["causes"]),
                               **{o: row[o] for o in _OUTCOMES}))


def read_tallies(location: Path | str, *, start: float, end: float) -> tuple[list[Tally], bool]:
    """The statistics rows of [start, end) from a watch journal, read-only (never created or
    migrated); False when the journal predates the statistics (no rows, nothing wrong).
    InvalidInput for a missing or unreadable journal."""
    url = store_url.parse(location)
    where = url.display()
    if url.backend is store_url.Backend.SQLITE and not url.file.is_file():
        raise InvalidInput(f"{where}: no watch journal here", hint="`callfleet watch` creates it (--journal)")
    store = Store(url, component=COMPONENT, read_only=True)
    try:
        with store.read() as db:
            if TALLY_TABLE not in store.table_names(db):
                return [], False
            rows = db.execute(sa.text(f"SELECT * FROM {TALLY_TABLE} WHERE start >= :a AND start < :b "
                                      "ORDER BY start, site, number, source"), {"a": start, "b": end}).mappings().all()
            return [_tally(r) for r in rows], True
    except (sa.exc.SQLAlchemyError, ValueError, ValidationError) as exc:
        raise InvalidInput(f"{where}: cannot read the watch journal's statistics ({exc})") from None
    finally:
        store.dispose()


class NotLeader(CallfleetError):
    """This watcher no longer holds the leader lease: it must not act."""

    exit_code = ExitCode.LOCKED


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


def default_path(inventory: Path) -> str:
    """$CALLFLEET_WATCH_JOURNAL (a file or a store URL), else .callfleet/watch.sqlite beside
    the inventory (where the rollout journal lives too)."""
    env = os.environ.get("CALLFLEET_WATCH_JOURNAL")
    return env or str(inventory.resolve().parent / ".callfleet" / "watch.sqlite")


class WatchJournal:
    """The journal of one supervised estate (created when absent)."""

    def __init__(self, location: Path | str, *, clock: Any = time.time) -> None:
        self.url = store_url.parse(location)
        self.where = self.url.display()
        self._clock = clock
        self.store = Store(self.url, component=COMPONENT)
        try:
            if self.url.backend is store_url.Backend.SQLITE:
                self.url.file.parent.mkdir(parents=True, exist_ok=True)
            with self.store.write() as conn:
                upgrade(self.store, conn, COMPONENT, MIGRATIONS)
            if self.url.backend is store_url.Backend.SQLITE:
                # it holds failed callers (personal data): its owner only (PostgreSQL: the role's grants)
                for suffix in ("", "-wal", "-shm"):
                    f = Path(str(self.url.file) + suffix)
                    if f.exists():
                        f.chmod(0o600)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise InvalidInput(f"{self.where}: cannot open the watch journal ({exc})") from None

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL journal has none)."""
        return self.url.file

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.store.write() as conn:
            yield conn

    # -- leader lease (several watchers) ----------------------------------------------
    def _fence(self, db: Connection, leader_token: int | None) -> None:
        """Inside a write: NotLeader unless `leader_token` (when given) still holds the lease."""
        if leader_token is not None and not leases.holds(self.store, db, LEADER_LEASE, token=leader_token):
            raise NotLeader(f"{self.where}: this watcher lost the leader lease (token {leader_token})")

    def lead(self, *, me: Holder, ttl_s: float) -> Decision:
        """Take or renew the leader lease, or learn who holds it (times: the database's clock)."""
        with self._tx() as db:
            return leases.acquire(self.store, db, LEADER_LEASE, me=me, ttl_s=ttl_s)

    def resign(self, *, me: Holder, token: int) -> None:
        """Let a standby lead at once (a clean stop)."""
        with self._tx() as db:
            leases.release(db, LEADER_LEASE, me=me, token=token)

    def act_once(self, key: str, *, me: Holder, token: int, data: dict[str, Any] | None = None) -> bool:
        """Claim the action `key` as the leader under `token`: True to take it, False when it
        was taken already (by this or an earlier leader). NotLeader when the lease is lost."""
        with self._tx() as db:
            if not leases.holds(self.store, db, LEADER_LEASE, token=token):
                raise NotLeader(f"{self.where}: this watcher lost the leader lease (token {token}); it stands by")
            return leases.claim_once(self.store, db, key, token=token, holder=me,
                                     data=json.dumps(data or {}, default=str))

    # -- events --------------------------------------------------------------------
    def record(self, kind: str, *, round_no: int, site: str | None = None, incident: str | None = None,
               data: dict[str, Any] | None = None, leader_token: int | None = None) -> None:
        """Append one event (committed before this returns); with `leader_token`, only while
        that lease is still this watcher's (NotLeader otherwise)."""
        with self._tx() as db:
            self._fence(db, leader_token)
            db.execute(sa.text("INSERT INTO watch_events(ts, round, kind, site, incident, data) "
                               "VALUES (:ts, :r, :k, :s, :i, :d)"),
                       {"ts": self._clock(), "r": round_no, "k": kind, "s": site, "i": incident,
                        "d": json.dumps(data or {}, default=str)})

    def events(self, *, kind: str | None = None, limit: int = 10_000) -> list[WatchEvent]:
        """Events in order (optionally of one kind), the last `limit`."""
        sql = "SELECT * FROM watch_events" + (" WHERE kind=:k" if kind else "") + " ORDER BY seq DESC LIMIT :n"
        with self.store.read() as db:
            rows = db.execute(sa.text(sql), {"k": kind, "n": limit}).mappings().all()
        return [WatchEvent(seq=r["seq"], ts=r["ts"], round=r["round"], kind=r["kind"], site=r["site"],
                           incident=r["incident"], data=json.loads(r["data"])) for r in reversed(rows)]

    # -- call statistics (the monthly report) ------------------------------------------
    def add_tallies(self, rows: list[Tally], *, live_until: dict[str, float] | None = None,
                    leader_token: int | None = None) -> None:
        """Add each row's counts to its interval's (one transaction), and move the live cursor
        of the sites counted (so a restarted watch neither counts a span twice nor skips it).
        With `leader_token`, only while that lease is still this watcher's (NotLeader otherwise:
        a leader paused past its lease must not count its round once more)."""
        if not rows and not live_until:
            return
        with self._tx() as db:
            self._fence(db, leader_token)
            for row in rows:
                key = {"start": row.start, "site": row.site, "number": row.number, "source": row.source.value}
                old = db.execute(sa.text(f"SELECT * FROM {TALLY_TABLE} WHERE start=:start AND site=:site AND "
                                         "number=:number AND source=:source"), key).mappings().first()
                counts = row.counts if old is None else _tally(old).counts + row.counts
                if old is not None:
                    db.execute(sa.text(f"DELETE FROM {TALLY_TABLE} WHERE start=:start AND site=:site AND "
                                       "number=:number AND source=:source"), key)
                db.execute(sa.text(f"INSERT INTO {TALLY_TABLE}(start, interval_s, site, number, source, attempts, "
                                   f"{', '.join(_OUTCOMES)}, causes, updated) VALUES (:start, :interval_s, :site, "
                                   f":number, :source, :attempts, {', '.join(':' + o for o in _OUTCOMES)}, "
                                   ":causes, :updated)"),
                           {**key, "interval_s": row.interval_s, "attempts": counts.attempts,
                            **{o: counts.outcome(Outcome(o)) for o in _OUTCOMES},
                            "causes": json.dumps(counts.causes, sort_keys=True), "updated": self._clock()})
            for site, until in (live_until or {}).items():
                db.execute(sa.text("DELETE FROM watch_tally_cursor WHERE site=:s"), {"s": site})
                db.execute(sa.text("INSERT INTO watch_tally_cursor(site, until) VALUES (:s, :u)"),
                           {"s": site, "u": until})

    # -- failed callers (personal data: the store only, never a log or an event line) ----
    def keep_failed_calls(self, calls: list[FailedCall], *, retention_s: float,
                          leader_token: int | None = None) -> list[str]:
        """Store the calls not stored yet and drop those older than `retention_s`; returns the
        Call-IDs now stored (the edge may forget them). NotLeader once the lease is lost."""
        with self._tx() as db:
            self._fence(db, leader_token)
            for call in calls:
                seen = db.execute(sa.text(f"SELECT 1 FROM {FAILED_TABLE} WHERE call_id=:c"),
                                  {"c": call.call_id}).first()
                if seen is None:
                    db.execute(sa.text(f"INSERT INTO {FAILED_TABLE}(call_id, at, code, number, site, host, caller) "
                                       "VALUES (:call_id, :at, :code, :number, :site, :host, :caller)"),
                               call.model_dump())
            db.execute(sa.text(f"DELETE FROM {FAILED_TABLE} WHERE at < :t"), {"t": self._clock() - retention_s})
        return [c.call_id for c in calls]

    def failed_calls(self, *, start: float, end: float, sites: set[str] | None = None) -> list[FailedCall]:
        """The failed calls of [start, end], of `sites` (all when None), oldest first."""
        with self.store.read() as db:
            rows = db.execute(sa.text(f"SELECT * FROM {FAILED_TABLE} WHERE at >= :a AND at <= :b "
                                      "ORDER BY at, call_id"), {"a": start, "b": end}).mappings().all()
        return [FailedCall(**r) for r in rows if sites is None or r["site"] in sites]

    def live_cursor(self) -> dict[str, float]:
        """Where each site's live count ended (absent: never counted)."""
        with self.store.read() as db:
            rows = db.execute(sa.text("SELECT site, until FROM watch_tally_cursor")).mappings().all()
        return {r["site"]: float(r["until"]) for r in rows}

    def tallies(self, *, start: float, end: float) -> list[Tally]:
        """The statistics rows of [start, end)."""
        with self.store.read() as db:
            rows = db.execute(sa.text(f"SELECT * FROM {TALLY_TABLE} WHERE start >= :a AND start < :b "
                                      "ORDER BY start, site, number, source"), {"a": start, "b": end}).mappings().all()
        return [_tally(r) for r in rows]

    # -- state ---------------------------------------------------------------------
    def save_state(self, state: WatchState, *, leader_token: int | None = None) -> None:
        """Persist the core's memory (the probe window excepted: stale after a restart); with
        `leader_token`, only while that lease is still this watcher's (NotLeader otherwise)."""
        data = state.model_copy(update={"probes": ()}).model_dump_json()
        with self._tx() as db:
            self._fence(db, leader_token)
            db.execute(sa.text("DELETE FROM watch_state WHERE id=1"))
            db.execute(sa.text("INSERT INTO watch_state(id, ts, data) VALUES (1, :ts, :d)"),
                       {"ts": self._clock(), "d": data})

    def load_state(self) -> WatchState | None:
        """The last saved state, or None when none was ever saved."""
        with self.store.read() as db:
            row = db.execute(sa.text("SELECT data FROM watch_state WHERE id=1")).mappings().first()
        if row is None:
            return None
        try:
            return WatchState.model_validate_json(row["data"])
        except ValidationError:
            # Losing it would forget which drains are the watch's own: a person must look.
            raise InvalidInput(f"{self.where}: the saved watch state is unreadable (another version?)",
                               hint="check which sites are drained (`callfleet lab status` or the edge), "
                                    "then move the file aside") from None
