"""The fleet guard's loop on a real journal with fake eyes and a fake edge: one round at a time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.guard.judge import LIVE, Tally
from orchestrator.policy.guard import GuardPolicy
from orchestrator.rollout.guard_loop import FleetGuard
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.traffic.steering import SiteTraffic
from tests.unit.rollout.plans import plan as make_plan

SITES = ("site1", "site2", "site3")


class Eyes:
    """Every site answers its 16 live calls a round; `failing` fails them all."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.asked: list[tuple[str, ...]] = []

    def round(self, *, sites: Sequence[str], number: int, since: float, until: float, probe: bool) -> list[Tally]:
        self.asked.append(tuple(sites))
        return [Tally(site=s, scope=LIVE, round=number, calls=16, failed=16 if s in self.failing else 0)
                for s in sites]


class Edge:
    def __init__(self) -> None:
        self.drained: set[str] = set()

    def state(self) -> dict[str, SiteTraffic]:
        return {s: SiteTraffic(site=s, weight=100, drained=s in self.drained, share=0.3) for s in SITES}

    def drain(self, site: str) -> None:
        self.drained.add(site)

    def undrain(self, site: str) -> None:
        self.drained.discard(site)

    def set_weight(self, site: str, weight: int) -> None:
        raise AssertionError("the guard never changes weights")

    def in_flight(self, site: str) -> int:
        return 0


def test_the_guard_drains_the_culprit_records_it_and_alerts(tmp_path: Path) -> None:
    plan = make_plan(f"guard-{tmp_path.name}", SITES)
    j = Journal(tmp_path / "journal.sqlite", create=True)
    run = j.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target="5.6.0", inventory="i",
                       policy="p")
    j.take_lease(run.id)
    eyes, edge, alerts, said = Eyes(), Edge(), [], []
    guard = FleetGuard(journal=j, run_id=run.id, plan=plan, policy=GuardPolicy(), observer=eyes, steering=edge,
                       numbers=("112",), clock=lambda: 1000.0, lag_s=2.0, say=said.append,
                       alert=lambda kind, site, detail: alerts.append((kind, site, detail)))
    # before any site takes live calls on the new release: nothing to watch, nobody probed
    j.transition(run.id, Phase.PREFLIGHT)
    assert guard.round() is False and eyes.asked == []
    # the canary done, wave 2 in its live steps: both watched against site3
    for phase, wave in ((Phase.PREPARING, 1), (Phase.DRAINING, None), (Phase.SWITCHING, None),
                        (Phase.POSTCHECKING, None), (Phase.GATING, None), (Phase.STEPPING, None),
                        (Phase.BAKING, None), (Phase.WAVE_DONE, None), (Phase.PREPARING, 2), (Phase.DRAINING, None),
                        (Phase.SWITCHING, None), (Phase.POSTCHECKING, None), (Phase.GATING, None),
                        (Phase.STEPPING, None)):
        j.transition(run.id, phase, wave=wave, progress={"done_waves": [1]} if phase == Phase.PREPARING and wave == 2
                     else None)
    for _ in range(5):
        assert guard.round() is False  # a good release: quiet
    assert eyes.asked[-1] == ("site1", "site2", "site3")
    eyes.failing.add("site1")  # the canary's latent bug wakes
    assert guard.round() is True
    fired = j.run(run.id).progress.guard
    assert fired is not None and fired.culprits == ("site1",) and fired.drained == ("site1",)
    assert edge.drained == {"site1"}
    assert [e.site for e in j.events(run.id, kind="guard")] == ["site1"]
    assert alerts and alerts[0][:2] == ("fleet_guard", "site1") and "site1 first" in alerts[0][2]
    assert any("fleet rollback next" in s for s in said)
    assert guard.round() is True  # fired once: it stops watching
    assert len(j.events(run.id, kind="guard")) == 1
