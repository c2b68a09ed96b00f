"""What a round and a run report: the status line's and the JSON Lines' data. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.watch.leader import Role
from orchestrator.watch.model import Blind, Incident, IncidentEvent, IncidentKind, SiteAssessment, WatchState


class SiteLine(BaseModel):
    """One site in a round's report."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    status: str
    drained: bool | None
    drained_by_watch: bool
    release: str | None
    failing_numbers: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    incident: str | None = None


class RoundReport(BaseModel):
    """What one round saw and did (the status line, and one JSON Lines object)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    round: int
    at: str
    elapsed_s: float
    sites: dict[str, SiteLine]
    incidents: list[dict[str, Any]]
    events: list[dict[str, Any]] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    blind: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    role: Role = Role.LEADER  # a standby observes nothing and acts on nothing; it waits to lead
    leader: str | None = None  # who leads (a standby's round names it)


class Summary(BaseModel):
    """How the run ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rounds: int
    stopped_by: Literal["rounds", "duration", "signal"]
    open_incidents: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        """0 healthy or stopped by a signal; 5 a site incident open; 4 only blind incidents open."""
        if self.stopped_by == "signal":
            return 0
        kinds = {i["kind"] for i in self.open_incidents}
        if IncidentKind.SITE_FAILING.value in kinds:
            return 5
        return 4 if kinds else 0


def incident_view(i: Incident) -> dict[str, Any]:
    """An open incident as reported (JSON-ready)."""
    return {"id": i.id, "kind": i.kind.value, "site": i.site, "source": i.source,
            "since": datetime.fromtimestamp(i.since, UTC).isoformat(), "failing_numbers": list(i.failing_numbers),
            "reasons": list(i.reasons), "actions": list(i.actions), "held": i.held}


def build_report(state: WatchState, *, assessments: Sequence[SiteAssessment], events: Sequence[IncidentEvent],
                 done: list[dict[str, Any]], blind: Sequence[Blind], traffic: dict[str, bool] | None,
                 releases: dict[str, str | None], notes: list[str], now: float, elapsed: float) -> RoundReport:
    """What one round saw and did, for the status line and the JSON Lines."""
    by_site = {i.site: i for i in state.incidents.values() if i.kind == IncidentKind.SITE_FAILING and i.site}
    sites = {a.site: SiteLine(status=a.status, drained=None if traffic is None else traffic.get(a.site),
                              drained_by_watch=a.site in state.drained_by_watch, release=releases.get(a.site),
                              failing_numbers=a.failing_numbers, reasons=a.reasons,
                              incident=by_site[a.site].id if a.site in by_site else None)
             for a in assessments}
    # The steering state was read before acting: show the drains as they now stand.
    for d in done:
        if d["ok"] and d["action"] in ("drain", "undrain") and d["site"] in sites:
            line = sites[d["site"]]
            sites[d["site"]] = line.model_copy(update={"drained": d["action"] == "drain"})
    return RoundReport(
        round=state.round, at=datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        elapsed_s=round(elapsed, 3), sites=sites,
        incidents=[incident_view(i) for i in state.incidents.values()],
        events=[{"kind": e.kind, "incident": e.incident.id, "site": e.incident.site,
                 "incident_kind": e.incident.kind.value, "changes": list(e.changes)} for e in events],
        actions=done, blind=[b.model_dump() for b in blind], notes=notes)
