"""The PSAP clock in the supervisor loop, with fake ports, an injected clock and a real alert
store (the ledger): initial at the opening, follow-up ahead of its deadline, closing at the
resolution, nothing sent twice across a restart, nothing for an incident that spares routing."""

from __future__ import annotations

from pathlib import Path

from orchestrator.alerting import Alert, AlertKind, AlertStore
from orchestrator.alerting.psap import NoticeKind, PsapDeadlines
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.ports import Ports
from orchestrator.watch.supervisor import Supervisor
from tests.unit.watch.helpers import NUMBERS, SITES, T0
from tests.unit.watch.test_supervisor import FAST, Clock, FakeLive, FakeProber, FakeSteering, Sink

# rounds start every 10 s; the follow-up is due 60 s after the opening and goes out 10 s ahead
POLICY = FAST.model_copy(update={"psap_notice": PsapDeadlines(initial_s=30, follow_up_s=60, follow_up_lead_s=10),
                                 "substitute_numbers": ("0472000000",)})


def supervisor(tmp_path: Path, clock: Clock, *, broken: dict[str, range], sink: Sink, ledger: AlertStore | None,
               live: FakeLive | None = None, prober: FakeProber | None = None) -> Supervisor:
    ports = Ports(prober=prober or FakeProber(clock, broken), live=live or FakeLive(), steering=FakeSteering(),
                  releases=lambda: (dict.fromkeys(SITES, "5.8.1"), None), alerts=sink, psap=ledger)
    return Supervisor(sites=SITES, numbers=NUMBERS, policy=POLICY, ports=ports,
                      journal=WatchJournal(tmp_path / "watch.sqlite", clock=clock.now), clock=clock.now,
                      monotonic=clock.mono, wait=clock.wait)


def notices(sink: Sink) -> list[Alert]:
    return [a for a in sink.alerts if a.kind is AlertKind.PSAP_NOTICE]


def test_initial_follow_up_and_closing_each_once_on_the_clock(tmp_path: Path) -> None:
    clock, sink = Clock(), Sink()
    ledger = AlertStore(path=tmp_path / "alerts.sqlite")
    sup = supervisor(tmp_path, clock, broken={"site3": range(3, 13)}, sink=sink, ledger=ledger)
    sup.run(rounds=18)
    sent = notices(sink)
    assert [a.psap.notice for a in sent if a.psap] == [NoticeKind.INITIAL, NoticeKind.FOLLOW_UP, NoticeKind.CLOSING]
    initial, follow_up, closing = sent
    opened = next(a for a in sink.alerts if a.kind is AlertKind.INCIDENT_OPENED)
    # the opening round (round 4, starts at t=30, probes take 2 s) tells the answering points at once
    assert initial.psap is not None and initial.psap.discovered_at.timestamp() == T0 + 30
    assert initial.raised_at.timestamp() == T0 + 32
    assert initial.psap.due_by.timestamp() == T0 + 60 and not initial.psap.late
    assert initial.psap.next_update_by is not None and initial.psap.next_update_by.timestamp() == T0 + 90
    assert initial.failing.sites == ("site3",) and initial.failing.numbers == NUMBERS
    assert initial.substitute_numbers == ("0472000000",) and initial.incident_id == opened.incident_id
    # the follow-up: the first round within 10 s of its deadline (round 9, t=80 + 2 <= 90)
    assert follow_up.raised_at.timestamp() == T0 + 82
    assert follow_up.psap is not None and follow_up.psap.due_by.timestamp() == T0 + 90
    # the closing notice in the round that resolves (3 good rounds after round 12: round 15, t=140)
    resolved = next(a for a in sink.alerts if a.kind is AlertKind.INCIDENT_RESOLVED)
    assert closing.psap is not None and closing.psap.ended_at == resolved.raised_at
    assert closing.raised_at.timestamp() == T0 + 142 and closing.severity.value == "info"
    kinds = [(e.kind, e.data.get("notice")) for e in sup._journal.events() if e.kind.startswith("psap")]
    assert kinds == [("psap_clock_started", None), ("psap_notice_submitted", "initial"),
                     ("psap_notice_submitted", "follow_up"), ("psap_notice_submitted", "closing")]
    stored = ledger.psap_clock(opened.incident_id)
    assert stored is not None and stored.closing_sent_at is not None and stored.closed_at is not None
    ledger.close()


def test_a_restarted_watch_sends_nothing_twice(tmp_path: Path) -> None:
    clock, sink = Clock(), Sink()
    prober = FakeProber(clock, {"site3": range(3, 13)})
    ledger = AlertStore(path=tmp_path / "alerts.sqlite")
    supervisor(tmp_path, clock, broken={}, sink=sink, ledger=ledger, prober=prober).run(rounds=5)
    assert [a.psap.notice for a in notices(sink) if a.psap] == [NoticeKind.INITIAL]
    ledger.close()
    # a new process: same journal, same store, same (still broken) site
    sink2, ledger2 = Sink(), AlertStore(path=tmp_path / "alerts.sqlite")
    supervisor(tmp_path, clock, broken={}, sink=sink2, ledger=ledger2, prober=prober).run(rounds=13)
    assert [a.psap.notice for a in notices(sink2) if a.psap] == [NoticeKind.FOLLOW_UP, NoticeKind.CLOSING]
    ledger2.close()


def test_a_blind_incident_owes_the_answering_points_nothing(tmp_path: Path) -> None:
    clock, sink = Clock(), Sink()
    ledger = AlertStore(path=tmp_path / "alerts.sqlite")
    sup = supervisor(tmp_path, clock, broken={}, sink=sink, ledger=ledger, live=FakeLive(fail_rounds=range(2, 12)))
    sup.run(rounds=14)
    assert any(a.kind is AlertKind.INCIDENT_OPENED for a in sink.alerts)
    assert notices(sink) == []
    ledger.close()


def test_without_a_psaps_audience_the_journal_says_no_notice_went_out(tmp_path: Path) -> None:
    clock, sink = Clock(), Sink()
    sup = supervisor(tmp_path, clock, broken={"site3": range(3, 100)}, sink=sink, ledger=None)
    sup.run(rounds=8)
    assert notices(sink) == []
    missing = [e for e in sup._journal.events() if e.kind == "psap_notice_not_sent"]
    assert len(missing) == 1 and "psaps" in missing[0].data["reason"]
