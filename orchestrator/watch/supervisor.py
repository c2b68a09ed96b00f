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
from typing import Any, Literal

from orchestrator.errors import CallfleetError
from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.actions import plan_actions
from orchestrator.watch.alerts import build_alert
from orchestrator.watch.incidents import record_action, record_hold, site_key, step
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.model import (
    Act,
    Blind,
    IncidentEvent,
    IncidentKind,
    LiveSample,
    RoundFacts,
    SiteAssessment,
    Track,
    WatchState,
)
from orchestrator.watch.ports import Handle, Ports
from orchestrator.watch.report import RoundReport, Summary, build_report, incident_view

ALERT_DRAIN_S = 30.0  # at exit, how long pending alert deliveries may still take


class Supervisor:
    """The impure loop around the pure core."""

    def __init__(self, *, sites: Sequence[str], numbers: Sequence[str], policy: WatchPolicy, ports: Ports,
                 journal: WatchJournal, emit: Callable[[RoundReport], None] = lambda r: None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], object] | None = None) -> None:
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
        self._journal.acquire()
        state = self._resume()
        self._journal.record("started", round_no=state.round, data={
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
            self._journal.release()
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

    # -- one round -----------------------------------------------------------------
    def round(self, state: WatchState) -> WatchState:
        """Observe, decide, act, alert, journal; returns the new state (saved)."""
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
        state, assessments, events = step(state, facts, sites=self._sites, numbers=self._numbers,
                                          policy=self._policy)
        n = state.round
        for ev in events:
            self._journal.record(ev.kind, round_no=n, site=ev.incident.site, incident=ev.incident.id,
                                 data={"key": ev.incident.key, "changes": list(ev.changes),
                                       "reasons": list(ev.incident.reasons), "evidence": ev.incident.evidence})
        releases, note = self._ports.releases()
        notes = [note] if note else []
        if note:
            self._journal.record("releases_unknown", round_no=n, data={"note": note})
        state, done, extra = self._act(state, assessments=assessments, traffic=traffic, releases=releases)
        self._alert(state, events=events, done=done, extra=extra, traffic=traffic, releases=releases)
        self._journal.save_state(state)
        self._emit(build_report(state, assessments=assessments, events=events, done=done, blind=blind,
                                traffic=traffic, releases=releases, notes=notes, now=now,
                                elapsed=self._monotonic() - began))
        return state

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
                    self._journal.record("drain_held", round_no=n, site=inc.site, incident=inc.id,
                                         data={"reason": reason})
            return state, done, extra
        acts, holds = plan_actions(state, assessments=assessments, drained=traffic, releases=releases,
                                   policy=self._policy)
        for hold in holds:
            key = site_key(hold.site)
            if state.incidents[key].held != hold.reason:
                state = record_hold(state, key=key, reason=hold.reason)
                self._journal.record("drain_held", round_no=n, site=hold.site, incident=hold.incident,
                                     data={"reason": hold.reason})
        for act in acts:
            ok, error = self._apply(act, round_no=n, releases=releases)
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
            self._journal.save_state(state)
        return state, done, extra

    def _apply(self, act: Act, *, round_no: int, releases: dict[str, str | None]) -> tuple[bool, str | None]:
        """Run one action between its journal lines."""
        data = {"reason": act.reason, "failover": act.failover, "release": releases.get(act.site)}
        if act.kind == "forget":
            self._journal.record("drain_forgotten", round_no=round_no, site=act.site, incident=act.incident, data=data)
            return True, None
        assert self._ports.steering is not None  # no plan without steering
        self._journal.record(f"{act.kind}_before", round_no=round_no, site=act.site, incident=act.incident, data=data)
        try:
            (self._ports.steering.drain if act.kind == "drain" else self._ports.steering.undrain)(act.site)
        except CallfleetError as exc:
            self._journal.record(f"{act.kind}_failed", round_no=round_no, site=act.site, incident=act.incident,
                                 data={**data, "error": exc.message})
            return False, exc.message
        self._journal.record(f"{act.kind}_after", round_no=round_no, site=act.site, incident=act.incident, data=data)
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
                self._journal.record("alert_not_sent", round_no=state.round, site=inc.site, incident=inc.id,
                                     data={**data, "reason": "no alert config"})
                continue
            self._handles = [h for h in self._handles if not _done(h)]
            self._handles.append(self._ports.alerts.submit(alert))
            self._journal.record("alert_submitted", round_no=state.round, site=inc.site, incident=inc.id, data=data)

    def _healthy_release(self, state: WatchState, *, traffic: dict[str, bool] | None,
                         releases: dict[str, str | None]) -> str | None:
        failing = {i.site for i in state.incidents.values() if i.site}
        active = [s for s in self._sites if s not in failing and not (traffic or {}).get(s, False)]
        counts = Counter(r for s in active if (r := releases.get(s)) is not None)
        return counts.most_common(1)[0][0] if counts else None

    # -- report --------------------------------------------------------------------
def _done(handle: Handle) -> bool:
    return handle.wait(0)
