"""The supervisor loop with fake ports and an injected clock: no SIPp, no Prometheus, no edge,
no sleeping. A host of site3 goes down at round 3 and comes back at round 8."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.alerting import Alert
from orchestrator.errors import RemoteError
from orchestrator.store.lease import Holder
from orchestrator.traffic.steering import SiteTraffic
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.leader import Role
from orchestrator.watch.model import Blind, LiveSample, ProbeSample, WatchState
from orchestrator.watch.ports import Ports
from orchestrator.watch.report import RoundReport
from orchestrator.watch.supervisor import Supervisor
from tests.unit.watch.helpers import NUMBERS, POLICY, SITES, T0, live, site_probes

FAST = POLICY.model_copy(update={"window_s": 10.0})  # one round per window: events land on exact rounds


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return T0 + self.t

    def mono(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        self.t += seconds
        return False


class FakeProber:
    def __init__(self, clock: Clock, broken: dict[str, range]) -> None:
        self.clock, self.broken, self.rounds = clock, broken, 0

    def probe(self, *, at: float) -> tuple[list[ProbeSample], list[Blind]]:
        self.rounds += 1
        self.clock.t += 2.0  # probing takes time
        bad = {s: [2] for s, r in self.broken.items() if self.rounds in r}
        return [p for s in SITES for p in site_probes(s, at=at, bad_hosts=bad.get(s, ()))], []


class FakeLive:
    def __init__(self, fail_rounds: range = range(0)) -> None:
        self.fail_rounds, self.rounds = fail_rounds, 0

    def read(self, *, at: float) -> tuple[list[LiveSample], list[Blind]]:
        self.rounds += 1
        if self.rounds in self.fail_rounds:
            raise_blind = [Blind(source="metrics", site=s, message="Prometheus unreachable") for s in SITES]
            return [], raise_blind
        return [live(s, at=at) for s in SITES], []


class FakeSteering:
    def __init__(self, *, fail_drain: bool = False) -> None:
        self.drained: dict[str, bool] = dict.fromkeys(SITES, False)
        self.calls: list[str] = []
        self.fail_drain = fail_drain

    def state(self) -> dict[str, SiteTraffic]:
        return {s: SiteTraffic(site=s, weight=100, drained=d, share=0.0) for s, d in self.drained.items()}

    def drain(self, site: str) -> None:
        self.calls.append(f"drain {site}")
        if self.fail_drain:
            raise RemoteError("edge control socket refused")
        self.drained[site] = True

    def undrain(self, site: str) -> None:
        self.calls.append(f"undrain {site}")
        self.drained[site] = False


class Handle:
    def wait(self, timeout: float) -> bool:
        return True


class Sink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def submit(self, alert: Alert) -> Handle:
        self.alerts.append(alert)
        return Handle()


def make(tmp_path: Path, *, broken: dict[str, range] | None = None, steering: FakeSteering | None = None,
         live_reader: FakeLive | None = None, sink: Sink | None = None, policy=FAST,  # type: ignore[no-untyped-def]
         journal: WatchJournal | None = None):
    clock = Clock()
    reports: list[RoundReport] = []
    ports = Ports(prober=FakeProber(clock, broken or {}), live=live_reader or FakeLive(), steering=steering,
                  releases=lambda: (dict.fromkeys(SITES, "5.8.1"), None), alerts=sink)
    sup = Supervisor(sites=SITES, numbers=NUMBERS, policy=policy, ports=ports,
                     journal=journal or WatchJournal(tmp_path / "watch.sqlite", clock=clock.now),
                     emit=reports.append, clock=clock.now, monotonic=clock.mono, wait=clock.wait)
    return sup, clock, reports


def test_break_drain_alert_resolve_undrain(tmp_path: Path) -> None:
    steering, sink = FakeSteering(), Sink()
    sup, clock, reports = make(tmp_path, broken={"site3": range(3, 8)}, steering=steering, sink=sink)
    summary = sup.run(rounds=14)
    assert summary.rounds == 14 and summary.stopped_by == "rounds" and summary.exit_code == 0
    assert steering.calls == ["drain site3", "undrain site3"]
    assert not any(steering.drained.values())
    # opened at the 2nd bad round (round 4) already drained; resolved 3 good rounds after the fix
    assert [(a.kind.value, [x.value for x in a.actions]) for a in sink.alerts] == [
        ("incident_opened", ["drained"]), ("incident_resolved", ["drained", "undrained"])]
    assert sink.alerts[0].incident_id == sink.alerts[1].incident_id
    assert sink.alerts[0].failing.sites == ("site3",) and sink.alerts[0].severity.value == "critical"
    opened_round = next(r for r in reports if r.events)
    assert opened_round.round == 4 and opened_round.sites["site3"].drained is True
    assert opened_round.sites["site3"].status == "fail" and opened_round.sites["site1"].status == "ok"
    resolved_round = next(r for r in reports if r.events and r.events[0]["kind"] == "incident_resolved")
    assert resolved_round.round == 10 and resolved_round.sites["site3"].drained is False
    # rounds every interval_s, probe time included: 14 rounds start 10 s apart
    assert clock.t == pytest.approx(13 * 10 + 2)
    kinds = [e.kind for e in sup._journal.events()]
    for k in ("started", "incident_opened", "drain_before", "drain_after", "alert_submitted", "incident_resolved",
              "undrain_before", "undrain_after", "stopped"):
        assert k in kinds
    assert kinds.index("drain_before") < kinds.index("drain_after") < kinds.index("undrain_before")


def test_open_incident_at_the_end_exits_5(tmp_path: Path) -> None:
    sup, _, _ = make(tmp_path, broken={"site2": range(1, 100)}, steering=FakeSteering())
    summary = sup.run(rounds=3)
    assert summary.exit_code == 5
    assert [i["site"] for i in summary.open_incidents] == ["site2"]


def test_metrics_outage_is_a_blind_incident_and_exit_4(tmp_path: Path) -> None:
    sink = Sink()
    sup, _, reports = make(tmp_path, live_reader=FakeLive(fail_rounds=range(1, 100)), sink=sink,
                           steering=FakeSteering())
    summary = sup.run(rounds=3)
    assert summary.exit_code == 4
    assert [(a.kind.value, a.severity.value, a.incident_id.split("/")[1:3]) for a in sink.alerts] == [
        ("incident_opened", "warning", ["blind", "metrics"])]
    assert reports[0].blind and reports[0].sites["site1"].status == "ok"  # probes still judge the sites


def test_failed_drain_is_journalled_and_retried(tmp_path: Path) -> None:
    steering = FakeSteering(fail_drain=True)
    sup, _, reports = make(tmp_path, broken={"site3": range(1, 100)}, steering=steering)
    sup.run(rounds=4)
    assert steering.calls == ["drain site3"] * 3  # rounds 2, 3, 4
    failed = sup._journal.events(kind="drain_failed")
    assert len(failed) == 3 and "refused" in failed[0].data["error"]
    assert reports[1].actions[0]["ok"] is False
    assert sup._journal.load_state().drained_by_watch == {}  # type: ignore[union-attr]


def test_hold_is_journalled_once_and_alerted(tmp_path: Path) -> None:
    steering, sink = FakeSteering(), Sink()
    steering.drained.update(site5=True, site6=True)  # a rollout and an operator: max_drained reached
    sup, _, _ = make(tmp_path, broken={"site3": range(1, 100)}, steering=steering, sink=sink)
    sup.run(rounds=5)
    assert steering.calls == []
    assert len(sup._journal.events(kind="drain_held")) == 1
    assert len(sink.alerts) == 1 and "max_drained reached" in sink.alerts[0].note


def test_without_steering_incidents_are_raised_and_held(tmp_path: Path) -> None:
    sink = Sink()
    sup, _, _ = make(tmp_path, broken={"site3": range(1, 100)}, sink=sink)
    sup.run(rounds=3)
    assert "no traffic steering" in sink.alerts[0].note


def test_without_alert_config_alerts_are_journalled_as_not_sent(tmp_path: Path) -> None:
    sup, _, _ = make(tmp_path, broken={"site3": range(1, 100)}, steering=FakeSteering())
    sup.run(rounds=2)
    (ev,) = sup._journal.events(kind="alert_not_sent")
    assert ev.data["alert"] == "incident_opened" and ev.site == "site3"


def test_duration_bounds_the_run_and_stop_request_ends_it(tmp_path: Path) -> None:
    sup, clock, _ = make(tmp_path)
    summary = sup.run(duration_s=35)
    assert summary.stopped_by == "duration" and summary.rounds == 4 and clock.t == pytest.approx(35)
    sup2, _, _ = make(tmp_path / "b")
    sup2.request_stop()
    assert sup2.run(rounds=5).rounds == 0


def test_resume_keeps_incidents_and_own_drains(tmp_path: Path) -> None:
    steering, sink = FakeSteering(), Sink()
    journal = WatchJournal(tmp_path / "watch.sqlite")
    sup, _, _ = make(tmp_path, broken={"site3": range(1, 100)}, steering=steering, sink=sink, journal=journal)
    sup.run(rounds=3)
    assert steering.drained["site3"]
    # a new process, the site healthy again: it resolves the old incident and undoes its own drain
    sup2, _, _ = make(tmp_path, steering=steering, sink=sink, journal=journal)
    sup2.run(rounds=3)
    assert steering.calls == ["drain site3", "undrain site3"]
    assert [a.kind.value for a in sink.alerts] == ["incident_opened", "incident_resolved"]


def test_two_watchers_one_leads_the_other_takes_over_and_nothing_is_done_twice(tmp_path: Path) -> None:
    """Two supervisors on one store (as two hosts would): the first leads and drains the
    failing site; the second stands by, observing nothing. The leader dies without a word (it
    simply stops); once its lease lapses (the store's clock) the standby leads, reloads the
    state, and neither drains again nor repeats the opening alert."""
    # The lease is shortened below the policy's own bound (2 x interval) so the test waits 1 s,
    # not 20: the fake clock drives the rounds, the store's real clock the lease.
    policy = FAST.model_copy(update={"leader_lease_s": 1.0})
    steering, sink = FakeSteering(), Sink()
    journal_a = WatchJournal(tmp_path / "watch.sqlite")
    a, _, reports_a = make(tmp_path, broken={"site3": range(3, 40)}, steering=steering, sink=sink,
                           policy=policy, journal=journal_a)
    b, _, reports_b = make(tmp_path, broken={"site3": range(1, 40)}, steering=steering, sink=sink,
                           policy=policy, journal=WatchJournal(tmp_path / "watch.sqlite"))
    a._me = Holder(host="runner-a", pid=1001, start=1)
    b._me = Holder(host="runner-b", pid=2002, start=2)
    state_a = state_b = WatchState()
    for _ in range(5):
        state_a = a.round(state_a)
        state_b = b.round(state_b)
    assert steering.calls == ["drain site3"]
    assert [r.role for r in reports_b] == [Role.STANDBY] * 5 and "runner-a" in reports_b[-1].notes[0]
    assert b._ports.prober.rounds == 0  # type: ignore[attr-defined]  # a standby places no calls
    opened = [x for x in sink.alerts if x.kind.value == "incident_opened"]
    assert len(opened) == 1

    # a dies: no more rounds, no resignation. b keeps standing by until the lease lapses.
    state_b = b.round(state_b)
    assert reports_b[-1].role is Role.STANDBY
    time.sleep(1.2)
    for _ in range(3):
        state_b = b.round(state_b)
    assert reports_b[-1].role is Role.LEADER
    assert "site3" in state_b.drained_by_watch  # reloaded from the store, not rediscovered
    assert steering.calls == ["drain site3"]  # never twice
    assert len([x for x in sink.alerts if x.kind.value == "incident_opened"]) == 1
    kinds = [e.kind for e in WatchJournal(tmp_path / "watch.sqlite").events()]
    assert kinds.count("leading") == 2 and kinds.count("drain_after") == 1

    # the old leader wakes up: it is fenced off and stands by, acting on nothing
    state_a = a.round(state_a)
    assert reports_a[-1].role is Role.STANDBY and "runner-b" in reports_a[-1].notes[0]
    assert steering.calls == ["drain site3"]
