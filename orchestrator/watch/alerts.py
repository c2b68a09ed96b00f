"""Turn the supervisor's incident events into alerting `Alert`s. Pure: no I/O.

One incident keeps one `incident_id` from opened to resolved. The dedupe key of an update
carries a digest of what it says (failing numbers, actions), so a new fact always goes
out and the same fact twice never does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.alerting import Alert
from orchestrator.watch.model import Figure, Incident, IncidentEvent, IncidentKind

MAX_EVIDENCE = 24


def severity(incident: Incident, *, site_drained_by_other: bool) -> str:
    """critical: live emergency calls fail; warning: a site without live traffic fails, or the
    supervisor is blind (it must never pass for silence)."""
    if incident.kind == IncidentKind.SUPERVISION_BLIND or site_drained_by_other:
        return "warning"
    return "critical"


def _digest(*parts: Sequence[str]) -> str:
    text = "|".join(",".join(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def build_alert(event: IncidentEvent, *, release: str | None = None, failover_to: str | None = None,
                site_drained_by_other: bool = False, substitute_numbers: Sequence[str] = (),
                extra_actions: Sequence[str] = ()) -> Alert:
    """The alert for one event. `extra_actions` are actions taken this round that the
    incident does not hold any more (an undrain on resolution)."""
    inc = event.incident
    actions = tuple(dict.fromkeys((*inc.actions, *extra_actions)))
    evidence: dict[str, Figure] = dict(list(inc.evidence.items())[:MAX_EVIDENCE])
    if release:
        evidence["release"] = release
    notes = list(event.changes) + list(inc.reasons)
    if inc.held and event.kind != "incident_resolved":
        notes.append(f"not drained: {inc.held}")
    note = "; ".join(notes)
    if len(note) > 500:
        note = note[:497] + "..."
    dedupe = f"{inc.id}:{event.kind}"
    if event.kind == "incident_updated":
        dedupe += ":" + _digest(inc.failing_numbers, inc.codes, actions)
    return Alert.model_validate({
        "kind": event.kind,
        "severity": severity(inc, site_drained_by_other=site_drained_by_other),
        "failing": {"sites": [inc.site] if inc.site else [], "numbers": list(inc.failing_numbers)},
        "since": datetime.fromtimestamp(inc.since, UTC),
        "release": {"from": release, "to": failover_to} if failover_to else {},
        "actions": list(actions),
        "evidence": evidence,
        "substitute_numbers": list(substitute_numbers) if inc.kind == IncidentKind.SITE_FAILING else [],
        "note": note,
        "incident_id": inc.id,
        "dedupe_key": dedupe,
        "raised_at": datetime.fromtimestamp(inc.updated_at, UTC),
    })
