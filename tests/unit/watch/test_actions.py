"""Drain, release failover and undrain decisions, table-driven: open incidents, the edge's
drained flags and each site's release in; actions and holds out."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.actions import failing_release, plan_actions
from orchestrator.watch.incidents import site_key
from orchestrator.watch.model import Incident, IncidentKind, SiteAssessment, WatchState
from tests.unit.watch.helpers import POLICY, SITES, T0

STOCK = dict.fromkeys(SITES, "5.8.1")


def incident(site: str, *, numbers: Sequence[str] = ("112",), since: float = T0) -> Incident:
    return Incident(id=f"watch/site/{site}/x", key=site_key(site), kind=IncidentKind.SITE_FAILING, site=site,
                    opened_at=since, since=since, updated_at=since, failing_numbers=tuple(numbers))


def plan(failing: Sequence[str], *, drained: Sequence[str] = (), by_watch: Sequence[str] = (),
         releases: dict[str, str | None] | None = None, unknown: Sequence[str] = (), policy: WatchPolicy = POLICY,
         numbers: dict[str, Sequence[str]] | None = None) -> tuple[list[str], list[str]]:
    """Actions as 'drain site3' / 'failover site3' / 'undrain site2', holds as 'site3: reason'."""
    state = WatchState(incidents={site_key(s): incident(s, numbers=(numbers or {}).get(s, ("112",)),
                                                        since=T0 + i) for i, s in enumerate(failing)},
                       drained_by_watch={s: f"watch/site/{s}/x" for s in by_watch})
    assessments = [SiteAssessment(site=s, status="fail" if s in failing else "unknown" if s in unknown else "ok")
                   for s in SITES]
    acts, holds = plan_actions(state, assessments=assessments, drained={s: s in drained for s in SITES},
                               releases=STOCK if releases is None else releases, policy=policy)
    return ([f"{'failover' if a.failover else a.kind} {a.site}" for a in acts],
            [f"{h.site}: {h.reason}" for h in holds])


NO_DRAIN = POLICY.model_copy(update={"auto_drain": False})
NEW = {**STOCK, "site1": "5.8.2", "site2": "5.8.2", "site3": "5.8.2"}  # three sites on the new release

TABLE: list[tuple[str, dict[str, object], list[str], list[str]]] = [
    ("nothing failing", {"failing": []}, [], []),
    ("one failing site is drained", {"failing": ["site3"]}, ["drain site3"], []),
    ("already drained by the watch: nothing", {"failing": ["site3"], "drained": ["site3"], "by_watch": ["site3"]},
     [], []),
    ("drained by someone else: left alone", {"failing": ["site3"], "drained": ["site3"]}, [], []),
    ("auto_drain off: held", {"failing": ["site3"], "policy": NO_DRAIN}, [],
     ["site3: auto_drain is off in the policy"]),
    ("max_drained caps the drains, worst first",
     {"failing": ["site1", "site2", "site3"], "numbers": {"site2": ["112", "18"]}},
     ["drain site2", "drain site1"], ["site3: max_drained reached (2 of 2 drained)"]),
    ("sites drained by others count against max_drained", {"failing": ["site3"], "drained": ["site5", "site6"]},
     [], ["site3: max_drained reached (2 of 2 drained)"]),
    ("every site failing: no healthy site to move to",
     {"failing": list(SITES), "policy": POLICY.model_copy(update={"max_drained": 6})}, [],
     [f"{s}: no healthy site would stay active" for s in SITES]),
    ("the only healthy site is drained: nowhere to go",
     {"failing": ["site1", "site2", "site3", "site4", "site5"], "drained": ["site6"],
      "policy": POLICY.model_copy(update={"max_drained": 6})}, [],
     [f"site{i}: no healthy site would stay active" for i in range(1, 6)]),
    ("healthy sites of unknown status do not count as healthy",
     {"failing": ["site1"], "unknown": ["site2", "site3", "site4", "site5", "site6"]}, [],
     ["site1: no healthy site would stay active"]),
    ("min_active_sites", {"failing": ["site1", "site2"], "drained": ["site3", "site4", "site5"],
                          "policy": POLICY.model_copy(update={"max_drained": 6, "min_active_sites": 2})},
     ["drain site1"], ["site2: min_active_sites: only 2 site(s) active"]),
    ("release failover even with auto_drain off",
     {"failing": ["site1", "site2", "site3"], "releases": NEW,
      "policy": NO_DRAIN.model_copy(update={"max_drained": 5})},
     ["failover site1", "failover site2", "failover site3"], []),
    ("a release failover takes the whole failing release out, beyond max_drained",
     {"failing": ["site1", "site2", "site3"], "releases": NEW},
     ["failover site1", "failover site2", "failover site3"], []),
    ("five sites on a failing release, the standing reserve healthy: all five leave",
     {"failing": ["site1", "site2", "site3", "site4", "site5"],
      "releases": {**dict.fromkeys(SITES, "5.8.2"), "site6": "5.8.1"}},
     [f"failover site{i}" for i in range(1, 6)], []),
    ("a release failover keeps min_active_sites",
     {"failing": ["site1", "site2", "site3"], "releases": NEW,
      "policy": POLICY.model_copy(update={"min_active_sites": 4})},
     ["failover site1", "failover site2"], ["site3: min_active_sites: only 4 site(s) active"]),
    ("part of a release failing is no failover",
     {"failing": ["site1", "site2"], "releases": NEW, "policy": NO_DRAIN},
     [], ["site1: auto_drain is off in the policy", "site2: auto_drain is off in the policy"]),
    ("failover off and drain off: held",
     {"failing": ["site1", "site2", "site3"], "releases": NEW,
      "policy": NO_DRAIN.model_copy(update={"auto_failover": False})},
     [], [f"site{i}: auto_drain is off in the policy" for i in (1, 2, 3)]),
    ("undrain what the watch drained once its incident resolved", {"failing": [], "drained": ["site3"],
                                                                    "by_watch": ["site3"]}, ["undrain site3"], []),
    ("never undrain someone else's drain", {"failing": [], "drained": ["site3"]}, [], []),
    ("forget a drain someone else undid", {"failing": ["site3"], "by_watch": ["site3"]},
     ["forget site3", "drain site3"], []),
]


@pytest.mark.parametrize(("name", "args", "acts", "holds"), TABLE, ids=[t[0] for t in TABLE])
def test_plan(name: str, args: dict[str, object], acts: list[str], holds: list[str]) -> None:
    assert plan(**args) == (acts, holds)  # type: ignore[arg-type]


@pytest.mark.parametrize(("failing", "healthy", "releases", "expected"), [
    ({"site1", "site2", "site3"}, {"site4"}, NEW, "5.8.2"),
    ({"site1", "site2"}, {"site4"}, NEW, None),                          # not every site of 5.8.2
    ({"site1", "site2", "site3"}, set(), NEW, None),                     # no healthy site elsewhere
    ({"site1", "site2", "site3"}, {"site4"}, {**NEW, "site4": "5.8.2"}, None),  # site4 on the same release
    (set(SITES), set(), STOCK, None),                                    # 2021: one release, all failing
    ({"site1"}, {"site4"}, {**STOCK, "site1": "5.9.0"}, "5.9.0"),        # a canary alone on its release
    ({"site1", "site4"}, {"site5"}, {**STOCK, "site1": "a", "site4": "b"}, None),  # two failing releases
    ({"site1", "site2", "site3"}, {"site4"}, {**NEW, "site4": None}, None),  # healthy site of mixed hosts
])
def test_failing_release(failing: set[str], healthy: set[str], releases: dict[str, str | None],
                         expected: str | None) -> None:
    assert failing_release(failing=failing, healthy=healthy, releases=releases) == expected
