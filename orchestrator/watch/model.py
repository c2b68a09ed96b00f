"""What the supervisor observes and decides: frozen models shared by the pure core and the loop.

Times are unix seconds (floats) from the loop's clock; the core never reads a clock itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Figure = float | int | str | bool | None


class Frozen(BaseModel):
    """Immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ProbeSample(Frozen):
    """One round's synthetic calls to one number through one host.

    A host that does not answer SIP at all is recorded as `attempted` calls all failed
    with cause `unreachable`: the calls a caller would have lost."""

    site: str
    host: str
    number: str
    at: float
    attempted: int = Field(ge=0)
    answered: int = Field(ge=0)
    failed: int = Field(ge=0)
    redirected: int = Field(default=0, ge=0)  # 3xx: outside SER's denominator (RFC 6076)
    srd_ms: tuple[float, ...] = ()
    causes: dict[str, int] = Field(default_factory=dict)  # failures by SIP code, `timeout`, `unreachable`


class LiveSample(Frozen):
    """A site's live window as the metrics provider reported it."""

    site: str
    at: float
    attempts: float
    answered: float
    failed: float
    srd_p95_ms: float | None = None


BlindSource = Literal["metrics", "probes", "steering"]


class Blind(Frozen):
    """Something the supervisor could not see this round (never taken for good health)."""

    source: BlindSource
    site: str | None = None  # None: the whole estate
    message: str


class RoundFacts(Frozen):
    """Everything one round observed."""

    at: float
    probes: tuple[ProbeSample, ...] = ()
    live: tuple[LiveSample, ...] = ()
    blind: tuple[Blind, ...] = ()


Status = Literal["ok", "fail", "unknown"]


class NumberFigures(Frozen):
    """One number of one site over the window (probes)."""

    number: str
    calls: int
    answered: int
    ser: float | None
    asr: float | None
    srd_p95_ms: float | None
    causes: dict[str, int] = Field(default_factory=dict)
    failing_hosts: tuple[str, ...] = ()


class SiteAssessment(Frozen):
    """A site judged over the window: `fail` names the numbers and the reasons."""

    site: str
    status: Status
    failing_numbers: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()  # stable reason codes (e.g. `ser:112`, `live_asr`): what changed or not
    reasons: tuple[str, ...] = ()  # the same, for people, with the figures
    numbers: tuple[NumberFigures, ...] = ()
    live_calls: float | None = None
    live_asr: float | None = None
    live_srd_p95_ms: float | None = None

    def evidence(self) -> dict[str, Figure]:
        """Flat figures for an alert or the journal."""
        out: dict[str, Figure] = {}
        for n in self.numbers:
            if n.ser is not None:
                out[f"ser_{n.number}"] = round(n.ser, 4)
            if n.srd_p95_ms is not None:
                out[f"srd_p95_ms_{n.number}"] = round(n.srd_p95_ms, 1)
            out[f"probe_calls_{n.number}"] = n.calls
        if self.live_asr is not None:
            out["live_asr"] = round(self.live_asr, 4)
        if self.live_srd_p95_ms is not None:
            out["live_srd_p95_ms"] = round(self.live_srd_p95_ms, 1)
        if self.live_calls is not None:
            out["live_calls"] = round(self.live_calls, 1)
        return out


class IncidentKind(StrEnum):
    """A site failing its emergency calls, or the supervisor unable to see."""

    SITE_FAILING = "site_failing"
    SUPERVISION_BLIND = "supervision_blind"


class Track(Frozen):
    """Hysteresis counters of one incident key."""

    bad: int = 0
    good: int = 0
    first_bad_at: float | None = None


class Incident(Frozen):
    """An open incident. `key` says what it is about (`site:<name>`, `blind:<source>[:<site>]`)."""

    id: str
    key: str
    kind: IncidentKind
    site: str | None = None
    source: BlindSource | None = None
    opened_at: float
    since: float  # the first bad round of the streak that opened it
    updated_at: float
    failing_numbers: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    evidence: dict[str, Figure] = Field(default_factory=dict)
    actions: tuple[str, ...] = ()  # alerting Action values, in the order they were taken
    held: str | None = None  # why the policy's action was not taken (the last reason journalled)


class WatchState(Frozen):
    """The core's whole memory between rounds. Everything but `probes` is persisted for resume."""

    round: int = 0
    probes: tuple[ProbeSample, ...] = ()
    tracks: dict[str, Track] = Field(default_factory=dict)
    incidents: dict[str, Incident] = Field(default_factory=dict)
    drained_by_watch: dict[str, str] = Field(default_factory=dict)  # site -> incident id that drained it


EventKind = Literal["incident_opened", "incident_updated", "incident_resolved"]


class IncidentEvent(Frozen):
    """A change the people must hear about (the alerting kinds of the same names)."""

    kind: EventKind
    incident: Incident
    changes: tuple[str, ...] = ()


ActKind = Literal["drain", "undrain", "forget"]


class Act(Frozen):
    """A steering action the core asks for. `forget`: the watch no longer owns a drain
    (someone else undrained the site); nothing to do on the edge, only the journal."""

    kind: ActKind
    site: str
    incident: str
    failover: bool = False  # a drain that moves traffic off a whole failing release
    reason: str = ""


class Hold(Frozen):
    """A failing site the policy would drain but may not now, and why."""

    site: str
    incident: str
    reason: str
