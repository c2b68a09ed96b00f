"""Open, update and resolve incidents with hysteresis. Pure: state and facts in, new state out.

A key (a site, or a blind source) is `bad`, `good` or `neutral` each round. `open_after` bad
rounds in a row open an incident; `resolve_after` good rounds in a row resolve it; a neutral
round (too little data) changes neither streak, so missing data can never resolve an incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.assess import assess_site, window
from orchestrator.watch.model import (
    Blind,
    Incident,
    IncidentEvent,
    IncidentKind,
    RoundFacts,
    SiteAssessment,
    Track,
    WatchState,
)

Observation = Literal["bad", "good", "neutral"]


def site_key(site: str) -> str:
    """The incident key of a failing site."""
    return f"site:{site}"


def blind_key(blind: Blind) -> str:
    """The incident key of a blind source (estate-wide, or one site)."""
    return f"blind:{blind.source}" + (f":{blind.site}" if blind.site else "")


def incident_id(key: str, since: float) -> str:
    """A stable, readable id: the key and when its first bad round was seen (UTC)."""
    return f"watch/{key.replace(':', '/')}/{datetime.fromtimestamp(since, UTC):%Y%m%dT%H%M%SZ}"


def collapse_blind(blind: Sequence[Blind], *, sites: Sequence[str]) -> tuple[Blind, ...]:
    """One estate-wide entry per source when every site of the estate is blind to it
    (a Prometheus outage is one incident, not one per site); duplicates removed."""
    out: list[Blind] = []
    for source in ("metrics", "probes", "steering"):
        mine = [b for b in blind if b.source == source]
        if not mine:
            continue
        estate_wide = [b for b in mine if b.site is None]
        covered = {b.site for b in mine if b.site is not None}
        if estate_wide or (sites and covered >= set(sites)):
            first = estate_wide[0] if estate_wide else mine[0]
            out.append(Blind(source=first.source, site=None, message=first.message))
            continue
        seen: set[str] = set()
        for b in mine:
            if b.site is not None and b.site not in seen:
                seen.add(b.site)
                out.append(b)
    return tuple(out)


def _blind_observations(state: WatchState, blind: Sequence[Blind]) -> dict[str, tuple[Observation, Blind | None]]:
    now_bad = {blind_key(b): b for b in blind}
    estate_bad = {b.source for b in blind if b.site is None}
    out: dict[str, tuple[Observation, Blind | None]] = {k: ("bad", b) for k, b in now_bad.items()}
    for key in list(state.tracks) + list(state.incidents):
        if not key.startswith("blind:") or key in out:
            continue
        source = key.split(":")[1]
        # A site's own blind key says nothing while its whole source is blind.
        out[key] = ("neutral", None) if source in estate_bad else ("good", None)
    return out


def _track(track: Track, obs: Observation, now: float) -> Track:
    if obs == "bad":
        return Track(bad=track.bad + 1, good=0, first_bad_at=track.first_bad_at if track.bad else now)
    if obs == "good":
        return Track(bad=0, good=track.good + 1, first_bad_at=None)
    return track


def _site_incident(key: str, a: SiteAssessment, track: Track, now: float) -> Incident:
    since = track.first_bad_at if track.first_bad_at is not None else now
    return Incident(id=incident_id(key, since), key=key, kind=IncidentKind.SITE_FAILING, site=a.site, opened_at=now,
                    since=since, updated_at=now, failing_numbers=a.failing_numbers, codes=a.codes, reasons=a.reasons,
                    evidence=a.evidence())


def _blind_incident(key: str, b: Blind, track: Track, now: float) -> Incident:
    since = track.first_bad_at if track.first_bad_at is not None else now
    return Incident(id=incident_id(key, since), key=key, kind=IncidentKind.SUPERVISION_BLIND, site=b.site,
                    source=b.source, opened_at=now, since=since, updated_at=now, codes=(f"blind:{b.source}",),
                    reasons=(f"cannot see {b.source}" + (f" of {b.site}" if b.site else "") + f": {b.message}",))


def _changes(old: Incident, new_numbers: tuple[str, ...], new_codes: tuple[str, ...]) -> tuple[str, ...]:
    changes = []
    added = [n for n in new_numbers if n not in old.failing_numbers]
    gone = [n for n in old.failing_numbers if n not in new_numbers]
    if added:
        changes.append(f"now failing: {', '.join(added)}")
    if gone:
        changes.append(f"no longer failing: {', '.join(gone)}")
    other_added = [c for c in new_codes if c not in old.codes and not c.startswith(("ser:", "srd:"))]
    other_gone = [c for c in old.codes if c not in new_codes and not c.startswith(("ser:", "srd:"))]
    changes += [f"new: {c}" for c in other_added] + [f"cleared: {c}" for c in other_gone]
    return tuple(changes)


def step(state: WatchState, facts: RoundFacts, *, sites: Sequence[str], numbers: Sequence[str],
         policy: WatchPolicy) -> tuple[WatchState, tuple[SiteAssessment, ...], tuple[IncidentEvent, ...]]:
    """Feed one round: new window, per-site verdicts, and the incident changes they cause."""
    now = facts.at
    probes = window((*state.probes, *facts.probes), now=now, window_s=policy.window_s)
    live = {s.site: s for s in facts.live}
    assessments = tuple(assess_site(site=s, numbers=numbers, samples=probes, live=live.get(s), policy=policy)
                        for s in sites)
    tracks = dict(state.tracks)
    incidents = dict(state.incidents)
    events: list[IncidentEvent] = []

    def hysteresis(key: str, obs: Observation, seen: Incident | None) -> None:
        """Apply one observation: open, update or resolve the key's incident. `seen` is the
        incident this round's facts describe (None unless bad)."""
        track = _track(tracks.get(key, Track()), obs, now)
        tracks[key] = track
        current = incidents.get(key)
        if current is None:
            if obs == "bad" and track.bad >= policy.open_after and seen is not None:
                incidents[key] = seen
                events.append(IncidentEvent(kind="incident_opened", incident=seen))
            elif obs == "good" and not key.startswith("site:"):
                tracks.pop(key, None)  # a healthy blind key needs no memory
            return
        if obs == "good" and track.good >= policy.resolve_after:
            closed = current.model_copy(update={"updated_at": now})
            del incidents[key]
            events.append(IncidentEvent(kind="incident_resolved", incident=closed))
            if not key.startswith("site:"):
                tracks.pop(key, None)
            return
        if obs == "bad" and seen is not None:
            changes = _changes(current, seen.failing_numbers, seen.codes)
            updated = current.model_copy(update={"updated_at": now, "failing_numbers": seen.failing_numbers,
                                                 "codes": seen.codes, "reasons": seen.reasons,
                                                 "evidence": seen.evidence})
            incidents[key] = updated
            if changes:
                events.append(IncidentEvent(kind="incident_updated", incident=updated, changes=changes))

    for a in assessments:
        key = site_key(a.site)
        obs: Observation = "bad" if a.status == "fail" else "good" if a.status == "ok" else "neutral"
        track_now = _track(tracks.get(key, Track()), obs, now)
        built = _site_incident(key, a, track_now, now) if obs == "bad" else None
        hysteresis(key, obs, built)
    for key, (obs, b) in sorted(_blind_observations(state, collapse_blind(facts.blind, sites=sites)).items()):
        track_now = _track(tracks.get(key, Track()), obs, now)
        built = _blind_incident(key, b, track_now, now) if b is not None else None
        hysteresis(key, obs, built)
    new_state = state.model_copy(update={"round": state.round + 1, "probes": probes, "tracks": tracks,
                                         "incidents": incidents})
    return new_state, assessments, tuple(events)


def record_action(state: WatchState, *, key: str, action: str, now: float) -> WatchState:
    """The state with `action` (an alerting Action value) added to the open incident `key`."""
    incident = state.incidents.get(key)
    if incident is None or action in incident.actions:
        return state
    incidents = dict(state.incidents)
    incidents[key] = incident.model_copy(update={"actions": (*incident.actions, action), "updated_at": now})
    return state.model_copy(update={"incidents": incidents})


def record_hold(state: WatchState, *, key: str, reason: str | None) -> WatchState:
    """The state with the incident's hold reason set (None: no longer held)."""
    incident = state.incidents.get(key)
    if incident is None or incident.held == reason:
        return state
    incidents = dict(state.incidents)
    incidents[key] = incident.model_copy(update={"held": reason})
    return state.model_copy(update={"incidents": incidents})
