"""The PSAP notification clock (pure: no I/O, no clock of its own).

When an incident affects emergency routing, the answering points (the `psaps` audience)
must hear of it within a deadline, again before a second deadline while it stays open,
and once more when it ends (FCC 47 CFR 4.9(h): within 30 minutes of discovering the
outage, a follow-up within 2 hours). `decide` says which notices are due now; the caller
claims each one in the alert store (`AlertStore.claim_psap`) before it hands it to the
notifier, so a notice goes out once even across a restart.

Deadlines run from the discovery (the incident's opening), not from the first bad probe.
The initial notice goes out at the first round that knows routing is affected (it is due
at once, the deadline is its latest time); the follow-up goes out `follow_up_lead_s`
before its deadline, so that it is delivered by then; the closing notice at resolution.
An incident that closes before its initial notice went out (alerting down at the time)
still gets the initial notice, then the closing one: the answering points must hear of
an outage that touched them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoticeKind(StrEnum):
    """The three notices an incident that affects routing owes the answering points."""

    INITIAL = "initial"
    FOLLOW_UP = "follow_up"
    CLOSING = "closing"


class PsapDeadlines(_Frozen):
    """Policy values (the `watch.psap_notice` section of a policy file)."""

    enabled: bool = Field(default=True, description="send the PSAP notices at all")
    initial_s: float = Field(default=1800.0, gt=0, le=7 * 86400, allow_inf_nan=False,
                             description="the first notice must be out this long after the incident opened")
    follow_up_s: float = Field(default=7200.0, gt=0, le=7 * 86400, allow_inf_nan=False,
                               description="the follow-up must be out this long after the incident opened")
    follow_up_lead_s: float = Field(default=300.0, ge=0, le=86400, allow_inf_nan=False,
                                    description="send the follow-up this long before its deadline")

    @model_validator(mode="after")
    def _ordered(self) -> PsapDeadlines:
        if self.follow_up_s <= self.initial_s:
            raise ValueError(f"follow_up_s ({self.follow_up_s:g}) must come after initial_s ({self.initial_s:g})")
        if self.follow_up_s - self.follow_up_lead_s <= self.initial_s:
            raise ValueError(f"follow_up_lead_s ({self.follow_up_lead_s:g}) would send the follow-up before the "
                             f"initial deadline ({self.initial_s:g} s): keep follow_up_s - follow_up_lead_s "
                             "after initial_s")
        return self


class IncidentFacts(_Frozen):
    """What the clock needs to know of an incident, this round."""

    incident_id: str = Field(min_length=1)
    site: str | None = None
    numbers: tuple[str, ...] = ()
    started_at: AwareDatetime  # the first bad observation
    discovered_at: AwareDatetime  # the incident opened: the clock starts here
    closed_at: AwareDatetime | None = None
    affects_routing: bool


class PsapClock(_Frozen):
    """One incident's notification clock: what is due when, what went out when.

    Persisted in the alert store (one row per incident) and shown by `incidents show`."""

    incident_id: str
    site: str | None = None
    numbers: tuple[str, ...] = ()
    started_at: AwareDatetime
    discovered_at: AwareDatetime
    closed_at: AwareDatetime | None = None
    initial_due_at: AwareDatetime
    initial_sent_at: AwareDatetime | None = None
    follow_up_due_at: AwareDatetime
    follow_up_sent_at: AwareDatetime | None = None
    closing_sent_at: AwareDatetime | None = None

    def sent_at(self, kind: NoticeKind) -> datetime | None:
        """When a notice of that kind was handed to the notifier (None: not yet)."""
        return {NoticeKind.INITIAL: self.initial_sent_at, NoticeKind.FOLLOW_UP: self.follow_up_sent_at,
                NoticeKind.CLOSING: self.closing_sent_at}[kind]

    def due_at(self, kind: NoticeKind) -> datetime | None:
        """The deadline of a notice (the closing notice is due at resolution)."""
        return {NoticeKind.INITIAL: self.initial_due_at, NoticeKind.FOLLOW_UP: self.follow_up_due_at,
                NoticeKind.CLOSING: self.closed_at}[kind]


class DueNotice(_Frozen):
    """A notice to send now. `late`: its deadline has already passed."""

    kind: NoticeKind
    incident_id: str
    due_by: AwareDatetime
    late: bool


def open_clock(facts: IncidentFacts, deadlines: PsapDeadlines) -> PsapClock:
    """A new clock for an incident that affects routing."""
    return PsapClock(incident_id=facts.incident_id, site=facts.site, numbers=facts.numbers,
                     started_at=facts.started_at, discovered_at=facts.discovered_at, closed_at=facts.closed_at,
                     initial_due_at=facts.discovered_at + timedelta(seconds=deadlines.initial_s),
                     follow_up_due_at=facts.discovered_at + timedelta(seconds=deadlines.follow_up_s))


def decide(facts: IncidentFacts, clock: PsapClock | None, deadlines: PsapDeadlines,
           now: datetime) -> tuple[PsapClock | None, list[DueNotice]]:
    """The clock as it now stands, and the notices due now, in sending order.

    No clock and routing not affected: nothing (an incident that never touched routing
    owes the answering points nothing). Once a clock exists, it runs to its closing
    notice even if the incident no longer affects routing."""
    if not deadlines.enabled:
        return clock, []
    if clock is None:
        if not facts.affects_routing:
            return None, []
        clock = open_clock(facts, deadlines)
    numbers = tuple(dict.fromkeys((*clock.numbers, *facts.numbers)))
    updates: dict[str, object] = {}
    if numbers != clock.numbers:
        updates["numbers"] = numbers
    if facts.closed_at is not None and clock.closed_at is None:
        updates["closed_at"] = facts.closed_at
    if updates:
        clock = clock.model_copy(update=updates)
    due: list[DueNotice] = []
    if clock.initial_sent_at is None:
        due.append(DueNotice(kind=NoticeKind.INITIAL, incident_id=clock.incident_id, due_by=clock.initial_due_at,
                             late=now > clock.initial_due_at))
    elif (clock.closed_at is None and clock.follow_up_sent_at is None
          and now >= clock.follow_up_due_at - timedelta(seconds=deadlines.follow_up_lead_s)):
        due.append(DueNotice(kind=NoticeKind.FOLLOW_UP, incident_id=clock.incident_id,
                             due_by=clock.follow_up_due_at, late=now > clock.follow_up_due_at))
    if clock.closed_at is not None and clock.closing_sent_at is None:
        due.append(DueNotice(kind=NoticeKind.CLOSING, incident_id=clock.incident_id, due_by=clock.closed_at,
                             late=False))
    return clock, due


def mark_sent(clock: PsapClock, kind: NoticeKind, at: datetime) -> PsapClock:
    """The clock once a notice of `kind` was handed over at `at` (an earlier time stays)."""
    field = f"{kind.value}_sent_at"
    if getattr(clock, field) is not None:
        return clock
    return clock.model_copy(update={field: at})


def merge(stored: PsapClock, mine: PsapClock) -> PsapClock:
    """Two views of one clock: every sent time kept (the earliest), the closing kept."""
    updates: dict[str, object] = {}
    for kind in NoticeKind:
        field = f"{kind.value}_sent_at"
        a, b = getattr(stored, field), getattr(mine, field)
        updates[field] = min(x for x in (a, b) if x is not None) if a is not None or b is not None else None
    updates["closed_at"] = stored.closed_at or mine.closed_at
    updates["numbers"] = tuple(dict.fromkeys((*stored.numbers, *mine.numbers)))
    return stored.model_copy(update=updates)
