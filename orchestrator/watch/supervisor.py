"""The supervisor loop (impure): every `interval_s`, observe, feed the core, act, alert, journal.

Order within a round: probes and live metrics -> `incidents.step` (pure) -> journal the
incident changes -> `actions.plan_actions` (pure) -> each steering action journalled before
and after it runs -> alerts built from the incidents as they now stand (so an opening alert
already says "drained") -> state saved. Bounded by `rounds` and/or `duration_s`; `request_stop`
(the CLI's SIGTERM/SIGINT handler) ends it after the current round.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from orchestrator.errors import CallfleetError
from orchestrator.policy.watch import WatchPolicy
from orchestrator.store import lease
from orchestrator.store.lease import Holder
from orchestrator.watch import leader
from orchestrator.watch.actions import plan_actions
from orchestrator.watch.alerts import build_alert
from orchestrator.watch.incidents import record_action, record_hold, site_key, step
from orchestrator.watch.journal import NotLeader, WatchJournal
from orchestrator.watch.leader import Change, Leadership, Role
from orchestrator.watch.model import (
    Act,
    Blind,
    IncidentEvent,
    IncidentKind,
    LiveSample,
    ProbeSample,
    RoundFacts,
    SiteAssessment,
    Track,
    WatchState,
)
from orchestrator.watch.ports import Handle, Ports
from orchestrator.watch.psap_notices import PsapNotices
from orchestrator.watch.report import RoundReport, Summary, build_report, incident_view
from orchestrator.watch.stats import LiveCount, ProbeCall, live_spans, tally_round

ALERT_DRAIN_S = 30.0  # at exit, how long pending alert deliveries may still take
STATS_BACKFILL_S = 3600.0  # after a gap (watch stopped, metrics down), live calls counted this far back at most


class Supervisor:
    """The impure loop around the pure core."""

    def __init__(self, *, sites: Sequence[str], numbers: Sequence[str], policy: WatchPolicy, ports: Ports,
                 journal: WatchJournal, emit: Callable[[RoundReport], None] = lambda r: None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], object] | None = None, holder: Holder | None = None) -> None:
        self._sites = tuple(sites)
        self._numbers = tuple(numbers)
        self._policy = policy
        self._ports = ports
        self._journal = journal
        self._emit = emit
        self._clock = clock
        self._monotonic = monotonic
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._handles: list[Handle] = []
        self._last_told: dict[str, str | None] = {}  # incident id -> the hold reason its last alert carried
        # Several watchers may share one store: only the holder of the leader lease acts.
        self._me = holder or lease.me()
        self._role = Role.STANDBY
        self._token: int | None = None
        self._psap = PsapNotices(deadlines=policy.psap_notice, substitute_numbers=policy.substitute_numbers,
                                 ports=ports, journal=journal, clock=clock)

    def request_stop(self) -> None:
        """End after the current round (signal handlers call this)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------
    def run(self, *, rounds: int | None = None, duration_s: float | None = None) -> Summary:
        """Supervise until `rounds` rounds or `duration_s` seconds have passed, or a stop request."""
        state = self._resume()
        self._journal.record("started", round_no=state.round, data={
            "holder": str(self._me), "lease_s": self._policy.lease_s,
            "policy": self._policy.model_dump(mode="json"), "rounds": rounds, "duration_s": duration_s,
            "resumed_incidents": sorted(state.incidents), "drained_by_watch": state.drained_by_watch})
        start = self._monotonic()
        done = 0
        stopped_by: Literal["rounds", "duration", "signal"] = "signal"
        interrupted = False
        try:
            while True:
                if self._stop.is_set():
                    stopped_by = "signal"
                    break
                if duration_s is not None and self._monotonic() - start >= duration_s:
                    stopped_by = "duration"
                    break
                began = self._monotonic()
                state = self.round(state)
                done += 1
                if rounds is not None and done >= rounds:
                    stopped_by = "rounds"
                    break
                pause = self._policy.interval_s - (self._monotonic() - began)
                if duration_s is not None:
                    pause = min(pause, duration_s - (self._monotonic() - start))
                if pause > 0:
                    self._wait(pause)
        except BaseException:
            interrupted = True  # a second signal, or a bug: leave at once, pending alerts included
            raise
        finally:
            self._journal.record("stopped", round_no=state.round, data={
                "rounds": done, "stopped_by": "interrupted" if interrupted else stopped_by,
                "open_incidents": sorted(state.incidents)})
            if not interrupted:
                self._flush_alerts()
            if self._role is Role.LEADER and self._token is not None:
                self._journal.resign(me=self._me, token=self._token)  # a standby leads at once
        return Summary(rounds=done, stopped_by=stopped_by,
                       open_incidents=[incident_view(i) for i in state.incidents.values()])

    def _resume(self) -> WatchState:
        saved = self._journal.load_state()
        if saved is None:
            return WatchState()
        # Streaks start afresh (time passed); open incidents and the watch's own drains carry on.
        return saved.model_copy(update={"tracks": {k: Track() for k in saved.tracks}})

    def _flush_alerts(self) -> None:
        deadline = self._monotonic() + ALERT_DRAIN_S
        for handle in self._handles:
            left = deadline - self._monotonic()
            if left <= 0 or not handle.wait(left):
                break
        self._handles.clear()

    # -- leadership ----------------------------------------------------------------
    def _lead(self) -> Leadership:
        """Take or renew the leader lease (the database's clock decides), or learn who holds it."""
        decision = self._journal.lead(me=self._me, ttl_s=self._policy.lease_s)
        lead = leader.step(self._role, decision)
        self._role, self._token = lead.role, lead.token
        return lead

    def _renew(self) -> None:
        """Renew the lease mid-round; NotLeader unless it is still ours under the same token
        (a new token means another watcher may have led meanwhile: reload before acting)."""
        token = self._token
        lead = self._lead()
        if lead.role is not Role.LEADER or lead.token != token:
            self._role, self._token = Role.STANDBY, None
            raise NotLeader(f"the leader lease lapsed during the round (token {token}); standing by")

    def _stand_by(self, state: WatchState, *, who: str | None, note: str) -> WatchState:
        """A standby round: nothing observed (the leader's probes suffice), nothing done."""
        self._emit(RoundReport(round=state.round, at=_iso(self._clock()), elapsed_s=0.0, sites={}, incidents=[],
                               role=Role.STANDBY, leader=who, notes=[note]))
        return state

    # -- one round -----------------------------------------------------------------
    def round(self, state: WatchState) -> WatchState:
        """As the leader: observe, decide, act, alert, journal and return the new state (saved).
        As a standby: wait for the lease (the state is reloaded from the store on taking over)."""
        lead = self._lead()
        if lead.change is Change.LOST_LEADERSHIP:
            self._journal.record("leadership_lost", round_no=state.round, data={"holder": str(self._me),
                                                                                "leader": str(lead.leader)})
        if lead.role is Role.STANDBY:
            return self._stand_by(state, who=str(lead.leader) if lead.leader else None,
                                  note=f"standing by: {lead.leader or 'nobody'} leads")
        if lead.change is Change.BECAME_LEADER:
            # Another watcher may have led since this one last saved: act on what the store says.
            state = self._resume()
            self._journal.record("leading", round_no=state.round, data={"holder": str(self._me),
                                                                        "token": lead.token})
        try:
            return self._lead_round(state)
        except NotLeader as exc:
            # Fenced: the lease lapsed mid-round (a pause, a cut-off store). Stop acting at once.
            self._role, self._token = Role.STANDBY, None
            return self._stand_by(state, who=None, note=exc.message)

    def _record(self, kind: str, **kw: Any) -> None:
        """A leader's journal line: written only while its lease holds (NotLeader otherwise)."""
        self._journal.record(kind, leader_token=self._token, **kw)

    def _lead_round(self, state: WatchState) -> WatchState:
        began = self._monotonic()
        now = self._clock()
        samples, blind = self._ports.prober.probe(at=now)
        live: list[LiveSample] = []
        if self._ports.live is not None:
            live, live_blind = self._ports.live.read(at=now)
            blind += live_blind
        traffic, steering_blind = self._traffic()
        blind += steering_blind
        facts = RoundFacts(at=now, probes=tuple(samples), live=tuple(live), blind=tuple(blind))
        self._renew()  # the probes are a round's slow part: hold the lease again before acting on them
        self._record_stats(state.round + 1, samples=samples, blind=blind, now=now)
        self._keep_failed_calls(state.round + 1)
        state, assessments, events = step(state, facts, sites=self._sites, numbers=self._numbers,
                                          policy=self._policy)
        n = state.round
        for ev in events:
            self._record(ev.kind, round_no=n, site=ev.incident.site, incident=ev.incident.id,
                                 data={"key": ev.incident.key, "changes": list(ev.changes),
                                       "reasons": list(ev.incident.reasons), "evidence": ev.incident.evidence})
        releases, note = self._ports.releases()
        notes = [note] if note else []
        if note:
            self._record("releases_unknown", round_no=n, data={"note": note})
        state, done, extra = self._act(state, assessments=assessments, traffic=traffic, releases=releases)
        self._alert(state, events=events, done=done, extra=extra, traffic=traffic, releases=releases)
        self._handles += self._psap.round(state, events=events, traffic=traffic,  # the PSAP notification clock
                                          leader_token=self._token)
        self._journal.save_state(state, leader_token=self._token)
        self._emit(build_report(state, assessments=assessments, events=events, done=done, blind=blind,
                                traffic=traffic, releases=releases, notes=notes, now=now,
                                elapsed=self._monotonic() - began))
        return state

    def _keep_failed_calls(self, round_no: int) -> None:
        """Move the failed calls the edge kept into the store (personal data: never journalled
        as events; an edge that cannot be read is noted, without the callers, and tried again)."""
        source = self._ports.failed_calls
        if source is None:
            return
        try:
            collected = source.collect()
            if collected.calls:
                stored = self._journal.keep_failed_calls(
                    collected.calls, retention_s=self._policy.failed_callers_retention_days * 86400,
                    leader_token=self._token)
                source.forget(stored)
            if collected.unread:  # what was read is kept; the rest is read again next round
                self._record("failed_calls_blind", round_no=round_no,
                             data={"error": collected.unread[0][:200], "unread": len(collected.unread)})
        except NotLeader:
            raise
        except CallfleetError as exc:
            # the first line only: an RPC error never carries the table's rows, but be sure
            self._record("failed_calls_blind", round_no=round_no, data={"error": exc.message.splitlines()[0][:200]})

    def _record_stats(self, round_no: int, *, samples: Sequence[ProbeSample], blind: Sequence[Blind],
                      now: float) -> None:
        """Add this round's probe calls, and the live calls since the last count, to the statistics."""
        interval = self._policy.stats_interval_s
        probes = [ProbeCall(site=p.site, number=p.number, at=p.at, attempted=p.attempted, answered=p.answered,
                            causes=dict(p.causes)) for p in samples]
        counted: list[LiveCount] = []
        until: dict[str, float] = {}
        metrics_blind = {b.site for b in blind if b.source == "metrics"}
        if self._ports.counter is not None and None not in metrics_blind:
            cursor = self._journal.live_cursor()
            for site in self._sites:
                if site in metrics_blind:
                    continue  # its window could not be read this round: counted later, from its cursor
                spans = live_spans(since=cursor.get(site), now=now, interval_s=interval,
                                   first_s=self._policy.interval_s, max_s=STATS_BACKFILL_S)
                for start, end in spans:
                    try:
                        counted.append(self._ports.counter.count(site=site, start=start, end=end))
                    except CallfleetError as exc:
                        self._record("stats_blind", round_no=round_no, site=site,
                                     data={"start": start, "end": end, "error": exc.message})
                        if site not in cursor and site not in until:
                            until[site] = start  # a first count that failed: the next round starts here
                        break
                    until[site] = end
        self._journal.add_tallies(tally_round(probes=probes, live=counted, interval_s=interval), live_until=until,
                                  leader_token=self._token)

    def _traffic(self) -> tuple[dict[str, bool] | None, list[Blind]]:
        if self._ports.steering is None:
            return None, []
        try:
            return {s: t.drained for s, t in self._ports.steering.state().items()}, []
        except CallfleetError as exc:
            return None, [Blind(source="steering", message=exc.message)]

    def _act(self, state: WatchState, *, assessments: Sequence[SiteAssessment], traffic: dict[str, bool] | None,
             releases: dict[str, str | None]) -> tuple[WatchState, list[dict[str, Any]], dict[str, list[str]]]:
        """Take the planned steering actions; returns the state, what was done, and actions
        taken for incidents that just resolved (by incident id)."""
        n = state.round
        done: list[dict[str, Any]] = []
        extra: dict[str, list[str]] = {}
        if traffic is None:
            reason = "no traffic steering (the inventory has no edge)" if self._ports.steering is None \
                else "the edge's steering state cannot be read"
            for key, inc in state.incidents.items():
                if inc.kind == IncidentKind.SITE_FAILING and inc.held != reason:
                    state = record_hold(state, key=key, reason=reason)
                    self._record("drain_held", round_no=n, site=inc.site, incident=inc.id,
                                         data={"reason": reason})
            return state, done, extra
        acts, holds = plan_actions(state, assessments=assessments, drained=traffic, releases=releases,
                                   policy=self._policy)
        for hold in holds:
            key = site_key(hold.site)
            if state.incidents[key].held != hold.reason:
                state = record_hold(state, key=key, reason=hold.reason)
                self._record("drain_held", round_no=n, site=hold.site, incident=hold.incident,
                                     data={"reason": hold.reason})
        for act in acts:
            ok, error = self._apply(act, round_no=n, releases=releases, traffic=traffic)
            done.append({"action": act.kind, "site": act.site, "incident": act.incident, "failover": act.failover,
                         "reason": act.reason, "ok": ok, "error": error})
            if not ok:
                continue
            key = site_key(act.site)
            if act.kind == "drain":
                state = state.model_copy(update={"drained_by_watch": {**state.drained_by_watch,
                                                                      act.site: act.incident}})
                state = record_hold(state, key=key, reason=None)
                state = record_action(state, key=key, action="drained", now=self._clock())
                if act.failover:
                    state = record_action(state, key=key, action="failed_over", now=self._clock())
            else:
                mine = {s: i for s, i in state.drained_by_watch.items() if s != act.site}
                state = state.model_copy(update={"drained_by_watch": mine})
                if act.kind == "undrain":
                    extra.setdefault(act.incident, []).append("undrained")
            # At once, not at the end of the round: a killed watch must still know its own drains.
            self._journal.save_state(state, leader_token=self._token)
        return state, done, extra

    def _apply(self, act: Act, *, round_no: int, releases: dict[str, str | None],
               traffic: dict[str, bool]) -> tuple[bool, str | None]:
        """Run one action between its journal lines, once per incident and site across leaders."""
        data = {"reason": act.reason, "failover": act.failover, "release": releases.get(act.site)}
        if act.kind == "forget":
            self._record("drain_forgotten", round_no=round_no, site=act.site, incident=act.incident, data=data)
            return True, None
        assert self._ports.steering is not None  # no plan without steering
        assert self._token is not None  # only a leader acts
        key = leader.action_key(incident=act.incident, kind=act.kind, site=act.site)
        # Claimed by an earlier leader: its effect on the edge says whether it got that far; if
        # so it is not done again, if it died between claim and act this leader acts.
        if not self._journal.act_once(key, me=self._me, token=self._token, data=data) \
                and traffic.get(act.site) == (act.kind == "drain"):
            self._record(f"{act.kind}_already_taken", round_no=round_no, site=act.site,
                         incident=act.incident, data=data)
            return True, None
        self._record(f"{act.kind}_before", round_no=round_no, site=act.site, incident=act.incident, data=data)
        try:
            (self._ports.steering.drain if act.kind == "drain" else self._ports.steering.undrain)(act.site)
        except CallfleetError as exc:
            self._record(f"{act.kind}_failed", round_no=round_no, site=act.site, incident=act.incident,
                                 data={**data, "error": exc.message})
            return False, exc.message
        self._record(f"{act.kind}_after", round_no=round_no, site=act.site, incident=act.incident, data=data)
        return True, None

    # -- alerts --------------------------------------------------------------------
    def _alert(self, state: WatchState, *, events: Sequence[IncidentEvent], done: Sequence[dict[str, Any]],
               extra: dict[str, list[str]], traffic: dict[str, bool] | None,
               releases: dict[str, str | None]) -> None:
        to_send: list[IncidentEvent] = []
        told: set[str] = set()
        for event in events:
            current = state.incidents.get(event.incident.key)
            fresh = event.model_copy(update={"incident": current}) \
                if event.kind != "incident_resolved" and current is not None else event  # with this round's actions
            to_send.append(fresh)
            told.add(fresh.incident.id)
        # An action or a hold on an incident that did not change otherwise is news too.
        acted = {d["incident"] for d in done if d["ok"] and d["action"] == "drain"}
        for inc in state.incidents.values():
            if inc.id in told:
                continue
            held_news = inc.id in self._last_told and self._last_told[inc.id] != inc.held
            if inc.id in acted or held_news:
                to_send.append(IncidentEvent(kind="incident_updated", incident=inc,
                                             changes=("drained",) if inc.id in acted else ()))
        healthy_release = self._healthy_release(state, traffic=traffic, releases=releases)
        for ev in to_send:
            inc = ev.incident
            self._last_told[inc.id] = inc.held
            if ev.kind == "incident_resolved":
                self._last_told.pop(inc.id, None)
            by_other = bool(inc.site and traffic and traffic.get(inc.site) and inc.site not in state.drained_by_watch)
            failover = "failed_over" in inc.actions
            alert = build_alert(ev, release=releases.get(inc.site) if inc.site else None,
                                failover_to=healthy_release if failover else None, site_drained_by_other=by_other,
                                substitute_numbers=self._policy.substitute_numbers,
                                extra_actions=extra.get(inc.id, ()))
            data = {"alert": alert.kind.value, "severity": alert.severity.value, "dedupe_key": alert.dedupe_key,
                    "actions": [a.value for a in alert.actions]}
            if self._ports.alerts is None:
                self._record("alert_not_sent", round_no=state.round, site=inc.site, incident=inc.id,
                                     data={**data, "reason": "no alert config"})
                continue
            assert self._token is not None  # only a leader alerts
            # One alert per incident change across leaders: a new leader that replays the round
            # its predecessor died in (same round number, same events) does not send it again.
            if not self._journal.act_once(f"alert/{inc.id}/{ev.kind}/{state.round}", me=self._me,
                                          token=self._token, data=data):
                continue
            self._handles = [h for h in self._handles if not _done(h)]
            self._handles.append(self._ports.alerts.submit(alert))
            self._record("alert_submitted", round_no=state.round, site=inc.site, incident=inc.id, data=data)

    def _healthy_release(self, state: WatchState, *, traffic: dict[str, bool] | None,
                         releases: dict[str, str | None]) -> str | None:
        failing = {i.site for i in state.incidents.values() if i.site}
        active = [s for s in self._sites if s not in failing and not (traffic or {}).get(s, False)]
        counts = Counter(r for s in active if (r := releases.get(s)) is not None)
        return counts.most_common(1)[0][0] if counts else None

    # -- report --------------------------------------------------------------------
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _done(handle: Handle) -> bool:
    return handle.wait(0)
