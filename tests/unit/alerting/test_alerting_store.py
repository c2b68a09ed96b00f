"""The SQLite record: WAL mode, dedupe window on an injected clock, incidents."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator.alerting import AlertStore, NotificationState
from tests.unit.alerting.conftest import lyon


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2021, 6, 2, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_wal_mode(tmp_path: Path) -> None:
    AlertStore(path=tmp_path / "a.sqlite").close()
    assert sqlite3.connect(tmp_path / "a.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_same_key_within_the_window_is_suppressed_then_allowed_after(tmp_path: Path) -> None:
    clock = Clock()
    store = AlertStore(path=tmp_path / "a.sqlite", now=clock)
    a = lyon()
    aid = store.record_alert(a)
    claim = dict(alert_id=aid, alert=a, audience="crisis_cell", channel="mail", channel_type="smtp", window_s=600)
    first, go = store.claim(**claim)  # type: ignore[arg-type]
    assert go
    _second, go2 = store.claim(**claim)  # type: ignore[arg-type]
    assert not go2
    assert store.deliveries()[1].detail == {"duplicate_of": first}
    assert store.claim(**{**claim, "channel": "sms", "channel_type": "smpp"})[1]  # type: ignore[arg-type]
    clock.now += timedelta(seconds=601)
    assert store.claim(**claim)[1]  # type: ignore[arg-type]
    assert [d.state for d in store.deliveries()] == [NotificationState.QUEUED, NotificationState.SUPPRESSED,
                                                     NotificationState.QUEUED, NotificationState.QUEUED]


def test_a_failed_delivery_does_not_suppress_the_next(tmp_path: Path) -> None:
    store = AlertStore(path=tmp_path / "a.sqlite")
    a = lyon()
    aid = store.record_alert(a)
    claim = dict(alert_id=aid, alert=a, audience="crisis_cell", channel="mail", channel_type="smtp", window_s=600)
    nid, _ = store.claim(**claim)  # type: ignore[arg-type]
    store.update(nid, state=NotificationState.FAILED, attempts=3, error="refused", detail={"elapsed_s": 1.5})
    assert store.claim(**claim)[1]  # type: ignore[arg-type]
    d = store.deliveries()[0]
    assert (d.state, d.attempts, d.error, d.detail) == (NotificationState.FAILED, 3, "refused", {"elapsed_s": 1.5})


def test_incidents_group_alerts_and_deliveries(tmp_path: Path) -> None:
    store = AlertStore(path=tmp_path / "a.sqlite")
    for kind in ("incident_opened", "incident_updated"):
        a = lyon(kind=kind)
        store.claim(alert_id=store.record_alert(a), alert=a, audience="psaps", channel="mail", channel_type="smtp",
                    window_s=0)
    other = lyon(failing={"sites": ["paris"], "numbers": ["15"]}, kind="incident_resolved", severity="info")
    store.record_alert(other)
    incidents = store.incidents()
    assert [i.incident_id for i in incidents] == ["paris/15", "lyon/112+18"]
    assert incidents[0].resolved and not incidents[1].resolved
    assert incidents[1].alerts == 2 and incidents[1].last_kind == "incident_updated"
    assert len(incidents[1].notifications) == 2
    assert incidents[1].facts["substitute_numbers"] == ["0472000000"]
