"""The notification record: SQLite in WAL mode, one row per alert and per delivery.

Each delivery (one audience on one channel) moves queued -> sent -> acknowledged, or
-> failed; a delivery suppressed by the dedupe window is recorded as such, pointing at
the one it duplicates. The store holds facts and outcomes only: no secret, no message
text, no phone number list (counts and rejected numbers only).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from orchestrator.alerting.models import Alert, Delivery, Frozen, NotificationState
from orchestrator.errors import InvalidInput

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    alert_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts (incident_id, id);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
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
    detail_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS notifications_dedupe ON notifications (dedupe_key, audience, channel, created_at);
CREATE INDEX IF NOT EXISTS notifications_incident ON notifications (incident_id, id);
"""

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
    """Thread-safe access to the SQLite record (one connection, one lock)."""

    def __init__(self, *, path: Path, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=5.0, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InvalidInput(f"{path}: cannot open the alert store ({exc})") from None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record_alert(self, alert: Alert) -> int:
        """Record an alert as received; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO alerts (incident_id, dedupe_key, kind, severity, raised_at, recorded_at, alert_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert.incident_id, alert.dedupe_key, alert.kind.value, alert.severity.value, _iso(alert.raised_at),
                 _iso(self._now()), alert.model_dump_json(by_alias=True)))
            return int(cur.lastrowid or 0)

    def claim(self, *, alert_id: int, alert: Alert, audience: str, channel: str, channel_type: str,
              window_s: float) -> tuple[int, bool]:
        """Record a delivery as queued, unless the same dedupe key went to the same audience
        and channel within the window (then it is recorded as suppressed).

        Returns (notification id, whether to deliver). Atomic across threads and processes."""
        now = self._now()
        since = _iso(now - timedelta(seconds=window_s))
        with self._tx() as db:
            prior = db.execute(
                "SELECT id FROM notifications WHERE dedupe_key = ? AND audience = ? AND channel = ?"
                f" AND state IN ({','.join('?' * len(_LIVE))}) AND created_at >= ? ORDER BY id DESC LIMIT 1",
                (alert.dedupe_key, audience, channel, *_LIVE, since)).fetchone()
            state = NotificationState.SUPPRESSED if prior else NotificationState.QUEUED
            detail = {"duplicate_of": prior["id"]} if prior else {}
            cur = db.execute(
                "INSERT INTO notifications (alert_id, incident_id, dedupe_key, audience, channel, channel_type,"
                " state, created_at, updated_at, detail_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert_id, alert.incident_id, alert.dedupe_key, audience, channel, channel_type, state.value,
                 _iso(now), _iso(now), json.dumps(detail)))
            return int(cur.lastrowid or 0), prior is None

    def update(self, notification_id: int, *, state: NotificationState, attempts: int, error: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        """Move a delivery to a new state (error and detail must already be free of secrets)."""
        with self._tx() as db:
            db.execute("UPDATE notifications SET state = ?, attempts = ?, updated_at = ?, error = ?,"
                       " detail_json = ? WHERE id = ?",
                       (state.value, attempts, _iso(self._now()), error, json.dumps(detail or {}, default=str),
                        notification_id))

    def deliveries(self, *, incident_id: str | None = None, alert_id: int | None = None) -> list[Delivery]:
        """Deliveries, oldest first, optionally of one incident or one alert."""
        query, args = "SELECT * FROM notifications", []
        clauses = []
        if incident_id is not None:
            clauses.append("incident_id = ?")
            args.append(incident_id)
        if alert_id is not None:
            clauses.append("alert_id = ?")
            args.append(str(alert_id))
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [Delivery(id=r["id"], alert_id=r["alert_id"], incident_id=r["incident_id"], dedupe_key=r["dedupe_key"],
                         audience=r["audience"], channel=r["channel"], channel_type=r["channel_type"],
                         state=NotificationState(r["state"]), attempts=r["attempts"],
                         created_at=_parse(r["created_at"]), updated_at=_parse(r["updated_at"]), error=r["error"],
                         detail=json.loads(r["detail_json"])) for r in rows]

    def incidents(self, *, limit: int = 100) -> list[Incident]:
        """The most recent incidents, newest first, each with its deliveries."""
        with self._lock:
            rows = self._db.execute(
                "SELECT incident_id, MIN(raised_at) AS first, MAX(raised_at) AS last, COUNT(*) AS n, MAX(id) AS last_id"
                " FROM alerts GROUP BY incident_id ORDER BY last_id DESC LIMIT ?", (limit,)).fetchall()
            lasts = {r["incident_id"]: self._db.execute("SELECT kind, severity, alert_json FROM alerts WHERE id = ?",
                                                        (r["last_id"],)).fetchone() for r in rows}
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
