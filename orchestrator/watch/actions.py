"""What to do about open incidents: drain failing sites, fail a whole release over to the
sites of another, undrain what the watch drained once it is healthy. Pure: no I/O.

Safety rules, applied to every drain, in this order:
- a site drained by someone else (a rollout, an operator) is left alone, and so is its drain;
- never more than `max_drained` sites drained at once, whoever drained them; except by a release
  failover: every call a site of a wholly failing release takes fails, and the sites of the
  healthy release are the only place calls succeed (the version-diversity reserve exists for
  this), so the whole failing release leaves, down to the two rules below;
- never fewer than `min_active_sites` active sites;
- never drain when no healthy site would stay active: moving calls from a failing site to
  other failing sites (all six on one faulty release, as in 2021) helps nobody.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.model import Act, Hold, IncidentKind, SiteAssessment, WatchState


def failing_release(*, failing: set[str], healthy: set[str], releases: Mapping[str, str | None]) -> str | None:
    """The release every one of whose sites is failing while a site on another release is
    healthy, or None. A site with no single known release belongs to no release group."""
    groups: dict[str, set[str]] = {}
    for site, release in releases.items():
        if release is not None:
            groups.setdefault(release, set()).add(site)
    candidates = [r for r, sites in sorted(groups.items())
                  if sites <= failing and any(releases.get(h) not in (None, r) for h in healthy)]
    # Two failing releases at once: there is no known-good release to move to.
    return candidates[0] if len(candidates) == 1 else None


def plan_actions(state: WatchState, *, assessments: Sequence[SiteAssessment], drained: Mapping[str, bool],
                 releases: Mapping[str, str | None], policy: WatchPolicy) -> tuple[tuple[Act, ...], tuple[Hold, ...]]:
    """The steering actions to take now, and the failing sites left as they are (with why).

    `drained` is the edge's current view (site -> drained); `releases` each site's release."""
    acts: list[Act] = []
    holds: list[Hold] = []
    open_sites = {i.site: i for i in state.incidents.values() if i.kind == IncidentKind.SITE_FAILING and i.site}
    # Undrain first: a site the watch drained whose incident has resolved is healthy again.
    for site, incident_id in sorted(state.drained_by_watch.items()):
        if not drained.get(site, False):
            acts.append(Act(kind="forget", site=site, incident=incident_id, reason="undrained by someone else"))
        elif site not in open_sites:
            acts.append(Act(kind="undrain", site=site, incident=incident_id, reason="healthy again"))
    status = {a.site: a.status for a in assessments}
    healthy = {s for s, st in status.items() if st == "ok" and s not in open_sites}
    failing = set(open_sites)
    now_drained = {s for s, d in drained.items() if d}
    release = failing_release(failing=failing, healthy=healthy, releases=releases)
    failover_sites = {s for s, r in releases.items() if release is not None and r == release}
    active_healthy = healthy - now_drained
    active = set(drained) - now_drained
    # Worst first: the site failing the most numbers, then the one failing longest.
    order = sorted((s for s in failing if s not in now_drained),
                   key=lambda s: (-len(open_sites[s].failing_numbers), open_sites[s].since, s))
    for site in order:
        incident = open_sites[site]
        failover = site in failover_sites and policy.auto_failover
        if not (policy.auto_drain or failover):
            holds.append(Hold(site=site, incident=incident.id, reason="auto_drain is off in the policy"))
        elif not failover and len(now_drained) + 1 > policy.max_drained:
            holds.append(Hold(site=site, incident=incident.id,
                              reason=f"max_drained reached ({len(now_drained)} of {policy.max_drained} drained)"))
        elif len(active) - 1 < policy.min_active_sites:
            holds.append(Hold(site=site, incident=incident.id,
                              reason=f"min_active_sites: only {len(active)} site(s) active"))
        elif not active_healthy:
            holds.append(Hold(site=site, incident=incident.id, reason="no healthy site would stay active"))
        else:
            why = f"every site on release {release} is failing" if failover else "failing"
            acts.append(Act(kind="drain", site=site, incident=incident.id, failover=failover, reason=why))
            now_drained.add(site)
            active.discard(site)
    return tuple(acts), tuple(holds)
