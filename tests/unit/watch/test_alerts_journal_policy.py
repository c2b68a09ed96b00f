"""Alerts built from incident events, the watch journal, and the `watch:` policy section."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.errors import InvalidInput
from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.alerts import build_alert
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.model import Incident, IncidentEvent, IncidentKind, WatchState
from tests.unit.watch.helpers import T0


def site_incident(**over: object) -> Incident:
    fields: dict[str, object] = dict(
        id="watch/site/site3/20231114T221320Z", key="site:site3", kind=IncidentKind.SITE_FAILING, site="site3",
        opened_at=T0 + 10, since=T0, updated_at=T0 + 10, failing_numbers=("112", "18"), codes=("ser:112", "ser:18"),
        reasons=("112: SER 50.0% < 95.0%",), evidence={"ser_112": 0.5})
    fields.update(over)
    return Incident.model_validate(fields)


# --- alerts ---------------------------------------------------------------------------

def test_one_incident_id_from_opened_to_resolved() -> None:
    inc = site_incident(actions=("drained",))
    opened = build_alert(IncidentEvent(kind="incident_opened", incident=inc), release="5.8.1",
                         substitute_numbers=["0472000000"])
    resolved = build_alert(IncidentEvent(kind="incident_resolved", incident=inc), extra_actions=["undrained"])
    assert opened.incident_id == resolved.incident_id == inc.id
    assert opened.dedupe_key != resolved.dedupe_key
    assert opened.kind.value == "incident_opened" and opened.severity.value == "critical"
    assert opened.failing.sites == ("site3",) and opened.failing.numbers == ("112", "18")
    assert opened.since.timestamp() == T0
    assert opened.evidence == {"ser_112": 0.5, "release": "5.8.1"}
    assert opened.substitute_numbers == ("0472000000",)
    assert [a.value for a in resolved.actions] == ["drained", "undrained"]


def test_updates_with_new_facts_get_new_dedupe_keys_same_facts_the_same() -> None:
    def upd(inc: Incident) -> str:
        return build_alert(IncidentEvent(kind="incident_updated", incident=inc)).dedupe_key

    base = site_incident()
    assert upd(base) == upd(base.model_copy(update={"evidence": {"ser_112": 0.4}}))
    assert upd(base) != upd(base.model_copy(update={"actions": ("drained",)}))
    assert upd(base) != upd(base.model_copy(update={"failing_numbers": ("112",)}))


def test_severity_and_hold_in_the_note() -> None:
    held = site_incident(held="max_drained reached (2 of 2 drained)")
    alert = build_alert(IncidentEvent(kind="incident_opened", incident=held), site_drained_by_other=True)
    assert alert.severity.value == "warning"  # no live call reaches a site someone else drained
    assert "not drained: max_drained reached" in alert.note
    blind = Incident(id="watch/blind/metrics/x", key="blind:metrics", kind=IncidentKind.SUPERVISION_BLIND,
                     source="metrics", opened_at=T0, since=T0, updated_at=T0, reasons=("cannot see metrics: down",))
    b = build_alert(IncidentEvent(kind="incident_opened", incident=blind), substitute_numbers=["0472000000"])
    assert b.severity.value == "warning" and b.failing.sites == () and b.substitute_numbers == ()
    assert "cannot see metrics" in b.note


def test_failover_alert_names_both_releases_and_long_notes_are_cut() -> None:
    inc = site_incident(actions=("drained", "failed_over"), reasons=("x" * 300, "y" * 300))
    alert = build_alert(IncidentEvent(kind="incident_updated", incident=inc), release="5.8.2", failover_to="5.8.1")
    assert (alert.release.from_release, alert.release.to_release) == ("5.8.2", "5.8.1")
    assert len(alert.note) == 500 and alert.note.endswith("...")


# --- journal --------------------------------------------------------------------------

def test_journal_events_and_state_round_trip(tmp_path: Path) -> None:
    j = WatchJournal(tmp_path / "w" / "watch.sqlite", clock=lambda: T0)
    j.record("drain_before", round_no=3, site="site3", incident="i1", data={"reason": "failing"})
    j.record("drain_after", round_no=3, site="site3", incident="i1")
    assert [(e.kind, e.round, e.site) for e in j.events()] == [("drain_before", 3, "site3"),
                                                               ("drain_after", 3, "site3")]
    assert [e.kind for e in j.events(kind="drain_after")] == ["drain_after"]
    assert j.load_state() is None
    state = WatchState(round=4, incidents={"site:site3": site_incident()}, drained_by_watch={"site3": "i1"})
    j.save_state(state)
    again = WatchJournal(j.path).load_state()
    assert again == state


def test_unreadable_saved_state_stops_the_watch(tmp_path: Path) -> None:
    j = WatchJournal(tmp_path / "watch.sqlite")
    with j._tx() as db:
        db.exec_driver_sql("INSERT INTO watch_state(id, ts, data) VALUES (1, 0, '{\"round\": \"x\"}')")
    with pytest.raises(InvalidInput, match="unreadable"):
        j.load_state()


def test_journal_in_an_unwritable_place_is_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInput, match="cannot open the watch journal"):
        WatchJournal(tmp_path / "file" / "watch.sqlite")


# --- policy ---------------------------------------------------------------------------

def test_policy_defaults_are_coherent() -> None:
    p = WatchPolicy()
    assert p.auto_drain and p.auto_failover and p.max_drained == 2 and p.open_after == 2 and p.resolve_after == 3


@pytest.mark.parametrize(("fields", "message"), [
    ({"interval_s": 60, "window_s": 30}, r"window_s \(30\) is shorter than interval_s \(60\)"),
    ({"calls_per_number": 5, "min_probe_calls": 50, "window_s": 60, "interval_s": 30},
     r"min_probe_calls \(50\) exceeds the calls a window holds \(5 x 2 rounds\)"),
    ({"ser_min": 1.5}, "less than or equal to 1"),
    ({"open_after": 0}, "greater than or equal to 1"),
    ({"substitute_numbers": ["112"]}, "should match pattern"),
    ({"auto_drian": True}, "Extra inputs are not permitted"),
    ({"interval_s": float("nan")}, "finite number"),
])
def test_policy_refuses(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WatchPolicy.model_validate(fields)


def test_default_policy_file_spells_out_the_model_defaults() -> None:
    from orchestrator.policy.load import load_policy

    assert load_policy(None).watch == WatchPolicy()
