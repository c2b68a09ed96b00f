"""The PSAP notification clock: the pure decision, its policy values, and its record in the
alert store (SQLite and PostgreSQL), restart included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from orchestrator.alerting.psap import IncidentFacts, NoticeKind, PsapClock, PsapDeadlines, decide, mark_sent
from orchestrator.alerting.store import MIGRATIONS, AlertStore
from orchestrator.errors import InvalidInput
from orchestrator.policy.load import load_policy

T0 = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
POLICY = PsapDeadlines()  # 1800 s, 7200 s, follow-up 300 s ahead


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def facts(*, closed: float | None = None, affects: bool = True, numbers: tuple[str, ...] = ("112", "15")) \
        -> IncidentFacts:
    return IncidentFacts(incident_id="site3-1", site="site3", numbers=numbers, started_at=at(-60),
                         discovered_at=at(0), closed_at=at(closed) if closed is not None else None,
                         affects_routing=affects)


def run(clock: PsapClock | None, f: IncidentFacts, now: float) -> tuple[PsapClock | None, list[NoticeKind]]:
    """One round: decide, then mark what was due as sent (as the supervisor does)."""
    clock, due = decide(f, clock, POLICY, at(now))
    for d in due:
        assert clock is not None
        clock = mark_sent(clock, d.kind, at(now))
    return clock, [d.kind for d in due]


def test_the_initial_notice_is_due_at_once_before_its_deadline_and_only_once() -> None:
    clock, due = decide(facts(), None, POLICY, at(10))
    assert [d.kind for d in due] == [NoticeKind.INITIAL]
    assert due[0].due_by == at(1800) and not due[0].late
    assert clock is not None and clock.initial_due_at == at(1800) and clock.follow_up_due_at == at(7200)
    clock = mark_sent(clock, NoticeKind.INITIAL, at(10))
    for now in (20, 600, 1800, 6000):
        clock, kinds = run(clock, facts(), now)
        assert kinds == [], now


def test_the_follow_up_goes_out_ahead_of_its_deadline_while_open_and_once() -> None:
    clock, kinds = run(None, facts(), 10)
    assert kinds == [NoticeKind.INITIAL]
    clock, kinds = run(clock, facts(), 7200 - 301)
    assert kinds == []
    clock, kinds = run(clock, facts(), 7200 - 300)
    assert kinds == [NoticeKind.FOLLOW_UP]
    assert clock is not None and clock.follow_up_sent_at == at(6900) <= clock.follow_up_due_at
    clock, kinds = run(clock, facts(), 7300)
    assert kinds == []


def test_no_follow_up_once_closed_and_the_closing_notice_once_at_resolution() -> None:
    clock, _ = run(None, facts(), 10)
    clock, kinds = run(clock, facts(closed=900), 900)
    assert kinds == [NoticeKind.CLOSING]
    assert clock is not None and clock.closed_at == at(900)
    for now in (901, 7000, 8000):  # the follow-up's time comes and goes: it is not owed any more
        clock, kinds = run(clock, facts(closed=900), now)
        assert kinds == []


def test_an_incident_that_does_not_affect_routing_owes_no_notice() -> None:
    assert decide(facts(affects=False), None, POLICY, at(10)) == (None, [])
    assert decide(facts(affects=False, closed=50), None, POLICY, at(50)) == (None, [])
    assert decide(facts(), None, PsapDeadlines(enabled=False), at(10)) == (None, [])


def test_a_clock_once_started_runs_to_its_closing_even_if_routing_recovers() -> None:
    clock, _ = run(None, facts(), 10)
    clock, kinds = run(clock, facts(affects=False, closed=100), 100)
    assert kinds == [NoticeKind.CLOSING]


def test_a_late_initial_is_sent_at_once_marked_late_and_before_the_closing() -> None:
    _, due = decide(facts(closed=2000), None, POLICY, at(2000))
    assert [(d.kind, d.late) for d in due] == [(NoticeKind.INITIAL, True), (NoticeKind.CLOSING, False)]
    _, due = decide(facts(), None, POLICY, at(7000))
    assert [(d.kind, d.late) for d in due] == [(NoticeKind.INITIAL, True)]  # the follow-up waits a round


def test_numbers_grow_and_are_never_forgotten() -> None:
    clock, _ = run(None, facts(numbers=("112",)), 10)
    clock, _ = run(clock, facts(numbers=("15",)), 20)
    assert clock is not None and clock.numbers == ("112", "15")


@pytest.mark.parametrize("values, message", [
    ({"initial_s": 0}, "greater than 0"),
    ({"initial_s": 7200, "follow_up_s": 1800}, "must come after initial_s"),
    ({"initial_s": 1800, "follow_up_s": 1800}, "must come after initial_s"),
    ({"initial_s": 10, "follow_up_s": 20, "follow_up_lead_s": 15}, "follow_up_lead_s"),
])
def test_deadlines_are_validated(values: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PsapDeadlines.model_validate(values)


def test_a_policy_file_with_bad_deadlines_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("watch:\n  psap_notice: {initial_s: 7200, follow_up_s: 1800}\n")
    with pytest.raises(InvalidInput) as err:
        load_policy(path)
    assert err.value.exit_code == 2
    assert "psap_notice" in err.value.message and "must come after initial_s" in err.value.message
    path.write_text("watch:\n  psap_notice: {initial_s: 20, follow_up_s: 40, follow_up_lead_s: 4}\n")
    assert load_policy(path).watch.psap_notice == PsapDeadlines(initial_s=20, follow_up_s=40, follow_up_lead_s=4)


def test_defaults_are_the_fcc_deadlines() -> None:
    assert (POLICY.initial_s, POLICY.follow_up_s) == (1800.0, 7200.0)


def test_the_store_claims_each_notice_once_across_a_restart(store_url: str) -> None:
    clock, due = decide(facts(), None, POLICY, at(10))
    assert clock is not None and [d.kind for d in due] == [NoticeKind.INITIAL]
    store = AlertStore(path=store_url)
    try:
        saved = store.save_psap_clock(clock)
        assert store.psap_clock("site3-1") == saved == clock
        claimed, clock = store.claim_psap(saved, NoticeKind.INITIAL, at=at(10))
        assert claimed and clock.initial_sent_at == at(10)
        again, _ = store.claim_psap(saved, NoticeKind.INITIAL, at=at(11))  # a stale view claims nothing
        assert not again
    finally:
        store.close()
    reopened = AlertStore(path=store_url)  # a restarted watch
    try:
        stored = reopened.psap_clock("site3-1")
        assert stored is not None and stored.initial_sent_at == at(10)
        _, due2 = decide(facts(), stored, POLICY, at(20))
        assert due2 == []
        # saving an older view never un-sends
        assert reopened.save_psap_clock(saved).initial_sent_at == at(10)
        assert reopened.psap_clock("other") is None
    finally:
        reopened.close()


def test_migration_2_brings_a_version_1_store_forward(store_url: str) -> None:
    from orchestrator.store.db import Store
    from orchestrator.store.migrate import current, upgrade
    from orchestrator.store.url import parse

    url = parse(store_url)
    if url.backend.value == "sqlite":
        url.file.parent.mkdir(parents=True, exist_ok=True)
    old = Store(url, component="alerts", busy_timeout_s=5.0)
    with old.write() as conn:
        upgrade(old, conn, "alerts", MIGRATIONS[:1])
        assert current(old, conn, "alerts") == 1
        assert "psap_clocks" not in old.table_names(conn)
    old.dispose()
    store = AlertStore(path=store_url)
    try:
        assert store.psap_clock("x") is None
        with store._store.read() as conn:
            assert current(store._store, conn, "alerts") == 2
            assert "psap_clocks" in store._store.table_names(conn)
            assert conn.execute(sa.text("SELECT COUNT(*) FROM psap_clocks")).scalar_one() == 0
    finally:
        store.close()
