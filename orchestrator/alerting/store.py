"""The notification record, one row per alert and per delivery, in a store
(orchestrator.store): a SQLite file in WAL mode, or a PostgreSQL database.

Each delivery (one audience on one channel) moves queued -> sent -> acknowledged, or
-> failed; a delivery suppressed by the dedupe window is recorded as such, pointing at
the one it duplicates. The store holds facts and outcomes only: no secret, no message
text, no phone number list (counts and rejected numbers only).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Connection

from orchestrator.alerting.models import Alert, Delivery, Frozen, NotificationState
from orchestrator.alerting.psap import NoticeKind, PsapClock, mark_sent, merge
from orchestrator.errors import InvalidInput
from orchestrator.store import url as store_url
from orchestrator.store.db import Store
from orchestrator.store.migrate import Migration, sql_steps, upgrade
from orchestrator.store.url import Backend


def _schema(backend: Backend) -> list[str]:
    real_id = "INTEGER PRIMARY KEY" if backend is Backend.SQLITE else "BIGSERIAL PRIMARY KEY"
    return [f"""CREATE TABLE IF NOT EXISTS alerts (
    id {real_id},
    incident_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    alert_json TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id, id)",
            f"""CREATE TABLE IF NOT EXISTS notifications (
    id {real_id},
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    incident_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    audience TEXT NOT NULL,
    channel TEXT NOT NULL,
    channel_type TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error TEXT,
    detail_json TEXT NOT NULL DEFAULT '{{}}')""",
            "CREATE INDEX IF NOT EXISTS notifications_dedupe ON notifications (dedupe_key, audience, channel, "
            "created_at)",
            "CREATE INDEX IF NOT EXISTS notifications_incident ON notifications (incident_id, id)"]


def _tables(conn: Connection, backend: Backend) -> None:
    for stmt in _schema(backend):
        conn.exec_driver_sql(stmt)


COMPONENT = "alerts"
# Version 1 is the schema of stores made before versions (CREATE IF NOT EXISTS adopts them).
_PSAP_CLOCKS = ("CREATE TABLE IF NOT EXISTS psap_clocks (incident_id TEXT PRIMARY KEY, clock_json TEXT NOT NULL,"
                " updated_at TEXT NOT NULL)")
MIGRATIONS = (Migration(version=1, description="alerts and their deliveries", apply=_tables),
              Migration(version=2, description="the PSAP notification clock of each incident",
                        apply=sql_steps(sqlite=[_PSAP_CLOCKS], postgresql=[_PSAP_CLOCKS])))


# States that count as "already told" for the dedupe window; a failed delivery does not,
# so the next occurrence of the same key is delivered again (at least once).
_LIVE = (NotificationState.QUEUED.value, NotificationState.SENT.value, NotificationState.ACKNOWLEDGED.value)


def _iso(moment: datetime) -> str:
    # Fixed-width UTC ISO strings compare correctly as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class Incident(Frozen):
    """An incident as the store knows it: its alerts and their deliveries."""

    incident_id: str
    first_raised: datetime
    last_raised: datetime
    last_kind: str
    severity: str
    resolved: bool
    alerts: int
    facts: dict[str, Any] = Field(default_factory=dict)
    notifications: tuple[Delivery, ...] = ()


class AlertStore:
    """Thread-safe access to the record (each call its own transaction)."""

    def __init__(self, *, path: Path | str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.url = store_url.parse(path)
        self.path = path if isinstance(path, Path) else Path(self.url.display())
        self._now = now
        # NORMAL: a delivery record may lose its last state to a power cut (it is retried), not to a kill
        self._store = Store(self.url, component=COMPONENT, busy_timeout_s=5.0, synchronous="NORMAL")
        try:
            if self.url.backend is Backend.SQLITE:
                self.url.file.parent.mkdir(parents=True, exist_ok=True)
            with self._store.write() as conn:
                upgrade(self._store, conn, COMPONENT, MIGRATIONS)
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise InvalidInput(f"{self.url.display()}: cannot open the alert store ({exc})") from None

    def close(self) -> None:
        """Close pooled connections."""
        self._store.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._store.write() as conn:
            yield conn

    def record_alert(self, alert: Alert) -> int:
        """Record an alert as received; returns its id."""
        with self._tx() as db:
            return int(db.execute(sa.text(
                "INSERT INTO alerts (incident_id, dedupe_key, kind, severity, raised_at, recorded_at, alert_json)"
                " VALUES (:i, :k, :kind, :s, :r, :rec, :j) RETURNING id"),
                {"i": alert.incident_id, "k": alert.dedupe_key, "kind": alert.kind.value, "s": alert.severity.value,
                 "r": _iso(alert.raised_at), "rec": _iso(self._now()),
                 "j": alert.model_dump_json(by_alias=True)}).scalar_one())

    def claim(self, *, alert_id: int, alert: Alert, audience: str, channel: str, channel_type: str,
              window_s: float) -> tuple[int, bool]:
        """Record a delivery as queued, unless the same dedupe key went to the same audience
        and channel within the window (then it is recorded as suppressed).

        Returns (notification id, whether to deliver). Atomic across threads and processes."""
        now = self._now()
        since = _iso(now - timedelta(seconds=window_s))
        with self._tx() as db:
            prior = db.execute(sa.text(
                "SELECT id FROM notifications WHERE dedupe_key = :k AND audience = :a AND channel = :c"
                " AND state IN :live AND created_at >= :since ORDER BY id DESC LIMIT 1").bindparams(
                    sa.bindparam("live", expanding=True)),
                {"k": alert.dedupe_key, "a": audience, "c": channel, "live": list(_LIVE),
                 "since": since}).mappings().first()
            state = NotificationState.SUPPRESSED if prior else NotificationState.QUEUED
            detail = {"duplicate_of": prior["id"]} if prior else {}
            new_id = db.execute(sa.text(
                "INSERT INTO notifications (alert_id, incident_id, dedupe_key, audience, channel, channel_type,"
                " state, created_at, updated_at, detail_json) VALUES (:aid, :i, :k, :a, :c, :ct, :s, :t, :t, :d)"
                " RETURNING id"),
                {"aid": alert_id, "i": alert.incident_id, "k": alert.dedupe_key, "a": audience, "c": channel,
                 "ct": channel_type, "s": state.value, "t": _iso(now), "d": json.dumps(detail)}).scalar_one()
            return int(new_id), prior is None

    # -- the PSAP notification clock (orchestrator.alerting.psap) -----------------------
    @staticmethod
    def _read_clock(db: Connection, incident_id: str) -> PsapClock | None:
        raw = db.execute(sa.text("SELECT clock_json FROM psap_clocks WHERE incident_id = :i"),
                         {"i": incident_id}).scalar_one_or_none()
        return None if raw is None else PsapClock.model_validate_json(raw)

    def _write_clock(self, db: Connection, clock: PsapClock, *, exists: bool) -> None:
        args = {"i": clock.incident_id, "j": clock.model_dump_json(), "u": _iso(self._now())}
        if exists:
            db.execute(sa.text("UPDATE psap_clocks SET clock_json = :j, updated_at = :u WHERE incident_id = :i"), args)
        else:
            db.execute(sa.text("INSERT INTO psap_clocks (incident_id, clock_json, updated_at) VALUES (:i, :j, :u)"),
                       args)

    def psap_clock(self, incident_id: str) -> PsapClock | None:
        """An incident's PSAP clock (None: it never affected routing, or predates the clock)."""
        with self._store.read() as db:
            if "psap_clocks" not in self._store.table_names(db):
                return None  # a store of an older callfleet, opened read-only
            return self._read_clock(db, incident_id)

    def save_psap_clock(self, clock: PsapClock) -> PsapClock:
        """Record the clock (opened, closed, numbers); sent times already recorded are kept."""
        with self._tx() as db:
            stored = self._read_clock(db, clock.incident_id)
            new = clock if stored is None else merge(stored, clock)
            if new != stored:
                self._write_clock(db, new, exists=stored is not None)
            return new

    def claim_psap(self, clock: PsapClock, kind: NoticeKind, *, at: datetime) -> tuple[bool, PsapClock]:
        """Mark a notice as handed over, unless it already was: (whether to send it, the clock).

        Atomic across threads, processes and watchers: a notice is claimed once. A crash
        between the claim and the hand-over loses that notice (the journal says so)."""
        with self._tx() as db:
            stored = self._read_clock(db, clock.incident_id)
            if stored is not None and stored.sent_at(kind) is not None:
                return False, merge(stored, clock)
            base = clock if stored is None else merge(stored, clock)
            new = mark_sent(base, kind, at)
            self._write_clock(db, new, exists=stored is not None)
            return True, new

    def update(self, notification_id: int, *, state: NotificationState, attempts: int, error: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        """Move a delivery to a new state (error and detail must already be free of secrets)."""
        with self._tx() as db:
            db.execute(sa.text("UPDATE notifications SET state = :s, attempts = :a, updated_at = :u, error = :e,"
                               " detail_json = :d WHERE id = :i"),
                       {"s": state.value, "a": attempts, "u": _iso(self._now()), "e": error,
                        "d": json.dumps(detail or {}, default=str), "i": notification_id})

    def deliveries(self, *, incident_id: str | None = None, alert_id: int | None = None) -> list[Delivery]:
        """Deliveries, oldest first, optionally of one incident or one alert."""
        query, args = "SELECT * FROM notifications", dict[str, Any]()
        clauses = []
        if incident_id is not None:
            clauses.append("incident_id = :inc")
            args["inc"] = incident_id
        if alert_id is not None:
            clauses.append("alert_id = :aid")
            args["aid"] = alert_id
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._store.read() as db:
            rows = db.execute(sa.text(query + " ORDER BY id"), args).mappings().all()
        return [Delivery(id=r["id"], alert_id=r["alert_id"], incident_id=r["incident_id"], dedupe_key=r["dedupe_key"],
                         audience=r["audience"], channel=r["channel"], channel_type=r["channel_type"],
                         state=NotificationState(r["state"]), attempts=r["attempts"],
                         created_at=_parse(r["created_at"]), updated_at=_parse(r["updated_at"]), error=r["error"],
                         detail=json.loads(r["detail_json"])) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident with its deliveries (None: the store has no alert of it)."""
        found = self._incidents(where="WHERE incident_id = :inc", args={"inc": incident_id, "n": 1})
        return found[0] if found else None

    def incidents(self, *, limit: int = 100) -> list[Incident]:
        """The most recent incidents, newest first, each with its deliveries."""
        return self._incidents(where="", args={"n": limit})

    def _incidents(self, *, where: str, args: dict[str, Any]) -> list[Incident]:
        with self._store.read() as db:
            rows = db.execute(sa.text(
                # The incident's state is its last incident alert; a PSAP notice (the closing one
                # comes after the resolution) says nothing new of it.
                "SELECT incident_id, MIN(raised_at) AS first, MAX(raised_at) AS last, COUNT(*) AS n,"
                " MAX(id) AS newest, COALESCE(MAX(CASE WHEN kind <> 'psap_notice' THEN id END), MAX(id)) AS last_id"
                f" FROM alerts {where} GROUP BY incident_id ORDER BY newest DESC LIMIT :n"), args).mappings().all()
            last_sql = sa.text("SELECT kind, severity, alert_json FROM alerts WHERE id = :i")
            lasts = {r["incident_id"]: db.execute(last_sql, {"i": r["last_id"]}).mappings().one() for r in rows}
        out = []
        for r in rows:
            last = lasts[r["incident_id"]]
            facts = json.loads(last["alert_json"])
            out.append(Incident(
                incident_id=r["incident_id"], first_raised=_parse(r["first"]), last_raised=_parse(r["last"]),
                last_kind=last["kind"], severity=last["severity"], resolved=last["kind"] == "incident_resolved",
                alerts=r["n"], facts={k: facts.get(k) for k in ("failing", "since", "release", "actions",
                                                                  "substitute_numbers")},
                notifications=tuple(self.deliveries(incident_id=r["incident_id"]))))
        return out
