"""The PSAP notification clock in the supervisor loop: each round, the clock of every incident
that affects emergency routing is asked (`alerting.psap.decide`, pure) which notices are due;
each is claimed in the alert store (once, across restarts and watchers), built as an alert for
the `psaps` audience and handed to the notifier; every step is journalled.

Routing is affected when a site fails emergency calls the public sends it: a site-failing
incident with failing numbers, unless someone else had drained the site (no live traffic).
A supervision-blind incident says nothing of routing and owes the answering points nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from orchestrator.alerting import Alert
from orchestrator.alerting.psap import DueNotice, IncidentFacts, NoticeKind, PsapClock, PsapDeadlines, decide
from orchestrator.errors import CallfleetError
from orchestrator.watch.journal import WatchJournal
from orchestrator.watch.model import Incident, IncidentEvent, IncidentKind, WatchState
from orchestrator.watch.ports import Handle, Ports

_SEVERITY = {NoticeKind.INITIAL: "critical", NoticeKind.FOLLOW_UP: "critical", NoticeKind.CLOSING: "info"}


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def incident_facts(incident: Incident, *, closed: bool, drained_by_other: bool) -> IncidentFacts:
    """The clock's view of a watch incident."""
    affects = (incident.kind == IncidentKind.SITE_FAILING and bool(incident.failing_numbers)
               and not drained_by_other)
    return IncidentFacts(incident_id=incident.id, site=incident.site, numbers=incident.failing_numbers,
                         started_at=_utc(incident.since), discovered_at=_utc(incident.opened_at),
                         closed_at=_utc(incident.updated_at) if closed else None, affects_routing=affects)


def build_psap_alert(notice: DueNotice, clock: PsapClock, incident: Incident, *, now: datetime,
                     substitute_numbers: Sequence[str]) -> Alert:
    """The alert of one notice: the clock's facts; provider, contact and area are the
    alerting config's (added when it is rendered). Only the initial notice of an open
    incident promises a time for the next one (the follow-up's deadline)."""
    next_update = clock.follow_up_due_at if notice.kind is NoticeKind.INITIAL and clock.closed_at is None else None
    return Alert.model_validate({
        "kind": "psap_notice",
        "severity": _SEVERITY[notice.kind],
        "failing": {"sites": [clock.site] if clock.site else [], "numbers": list(clock.numbers)},
        "since": clock.started_at,
        "actions": [a for a in incident.actions if a in ("drained", "failed_over", "undrained")],
        "substitute_numbers": list(substitute_numbers),
        "incident_id": clock.incident_id,
        "dedupe_key": f"{clock.incident_id}:psap:{notice.kind.value}",
        "raised_at": now,
        "psap": {"notice": notice.kind.value, "discovered_at": clock.discovered_at, "ended_at": clock.closed_at,
                 "due_by": notice.due_by, "next_update_by": next_update, "late": notice.late},
    })


class PsapNotices:
    """The impure half: ledger, notifier and journal around `decide`."""

    def __init__(self, *, deadlines: PsapDeadlines, substitute_numbers: Sequence[str], ports: Ports,
                 journal: WatchJournal, clock: Callable[[], float]) -> None:
        self._deadlines = deadlines
        self._substitutes = tuple(substitute_numbers)
        self._ports = ports
        self._journal = journal
        self._clock = clock
        self._told_missing = False
        self._token: int | None = None

    def _record(self, kind: str, **kw: Any) -> None:
        # Fenced like every line of a leader's round (NotLeader once the lease is lost).
        self._journal.record(kind, leader_token=self._token, **kw)

    def round(self, state: WatchState, *, events: Sequence[IncidentEvent],
              traffic: dict[str, bool] | None, leader_token: int | None = None) -> list[Handle]:
        """Send every notice due this round (as the leader holding `leader_token`); returns the
        notifier's handles."""
        self._token = leader_token
        handles: list[Handle] = []
        if not self._deadlines.enabled:
            return handles
        subjects = [(inc, False) for inc in state.incidents.values()]
        subjects += [(ev.incident, True) for ev in events if ev.kind == "incident_resolved"]
        for inc, closed in subjects:
            if inc.kind != IncidentKind.SITE_FAILING:
                continue
            other = bool(inc.site and traffic and traffic.get(inc.site) and inc.site not in state.drained_by_watch)
            handles += self._incident(incident_facts(inc, closed=closed, drained_by_other=other), inc,
                                      round_no=state.round)
        return handles

    def _incident(self, facts: IncidentFacts, inc: Incident, *, round_no: int) -> list[Handle]:
        ledger, sink = self._ports.psap, self._ports.alerts
        if ledger is None or sink is None:
            if facts.affects_routing and not self._told_missing:
                self._told_missing = True
                self._record("psap_notice_not_sent", round_no=round_no, site=inc.site, incident=inc.id,
                                     data={"reason": "no alert config" if sink is None
                                           else "no `psaps` audience in the alert config"})
            return []
        now = _utc(self._clock())
        handles: list[Handle] = []
        try:
            stored = ledger.psap_clock(facts.incident_id)
            clock, due = decide(facts, stored, self._deadlines, now)
            if clock is None:
                return []
            if clock != stored:
                clock = ledger.save_psap_clock(clock)
                if stored is None:
                    self._record("psap_clock_started", round_no=round_no, site=inc.site, incident=inc.id,
                                         data={"initial_due_at": clock.initial_due_at.isoformat(),
                                               "follow_up_due_at": clock.follow_up_due_at.isoformat()})
            for notice in due:
                claimed, clock = ledger.claim_psap(clock, notice.kind, at=now)
                if not claimed:
                    continue  # sent before (an earlier process, another watcher)
                alert = build_psap_alert(notice, clock, inc, now=now, substitute_numbers=self._substitutes)
                handles.append(sink.submit(alert))
                self._record("psap_notice_submitted", round_no=round_no, site=inc.site, incident=inc.id,
                                     data={"notice": notice.kind.value, "due_by": notice.due_by.isoformat(),
                                           "late": notice.late, "dedupe_key": alert.dedupe_key,
                                           "early_s": round((notice.due_by - now) / timedelta(seconds=1), 3)})
        except (CallfleetError, sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
            # The clock is retried next round; the watch goes on.
            self._record("psap_clock_failed", round_no=round_no, site=inc.site, incident=inc.id,
                                 data={"error": str(getattr(exc, "message", exc))[:300]})
        return handles
