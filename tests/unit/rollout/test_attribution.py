"""Issue #14, item 3: a gate that cannot tell its candidate from the baseline asks the fleet guard
whether a site the run upgraded earlier explains it, before anything is blamed.

The executor runs for real on a real journal, with `decide` and the guard's judge; its ports are
fakes: the gate (a verdict on demand), the guard's eyes (live tallies per site), the edge and
the site changer (recording what was drained, switched and restored)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from orchestrator.ansible.runner import RunResult
from orchestrator.errors import ExitCode
from orchestrator.estate.model import EmergencyNumber, Estate, Host, Site
from orchestrator.gate.runner import GateResult
from orchestrator.gate.stages import StageResult
from orchestrator.gate.verdict import Verdict
from orchestrator.guard.judge import LIVE, Tally
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.rollout.executor import Executor, Ports
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.traffic.steering import SiteTraffic
from tests.unit.rollout.plans import journal_run, wave_moves
from tests.unit.rollout.plans import plan as make_plan

SITES = ("site1", "site2", "site3")


def _estate() -> Estate:
    sites = tuple(Site(name=s, capacity_cps=100, weight=100, hosts=(
        Host(name=f"{s}-cs1", site=s, address=IPv4Address(f"192.0.2.{i}"), release="5.5.0"),))
        for i, s in enumerate(SITES, 1))
    return Estate(name="attr", sites=sites, numbers=(EmergencyNumber(number="112", label="EU", probe_route="9112",
                                                                     psap_uri="sip:192.0.2.250"),))


class Eyes:
    """16 live calls a site a round; every one fails on a site in `failing`."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.probed: list[bool] = []

    def round(self, *, sites: Sequence[str], number: int, since: float, until: float, probe: bool) -> list[Tally]:
        self.probed.append(probe)
        return [Tally(site=s, scope=LIVE, round=number, calls=16, failed=16 if s in self.failing else 0)
                for s in sites]


class Edge:
    def __init__(self) -> None:
        self.drained: set[str] = set()
        self.log: list[str] = []

    def state(self) -> dict[str, SiteTraffic]:
        return {s: SiteTraffic(site=s, weight=100, drained=s in self.drained, share=0.3) for s in SITES}

    def drain(self, site: str) -> None:
        self.drained.add(site)
        self.log.append(f"drain {site}")

    def undrain(self, site: str) -> None:
        self.drained.discard(site)
        self.log.append(f"undrain {site}")

    def set_weight(self, site: str, weight: int) -> None:
        self.log.append(f"weight {site} {weight}")

    def in_flight(self, site: str) -> int:
        return 0


class Changer:
    """The site changer: switches always succeed and are recorded."""

    def __init__(self, edge: Edge) -> None:
        self.steering = edge
        self.switched: list[tuple[str, str]] = []

    def drain(self, site: str) -> float:
        self.steering.drain(site)
        return 0.0

    def undrain(self, site: str) -> None:
        self.steering.undrain(site)

    def switch(self, site: str, version: str, *, digest: str | None = None, check: bool = False) -> RunResult:
        self.switched.append((site, version))
        return RunResult(status="successful", rc=0, hosts={})


class Gate:
    """A gate whose verdict the test sets."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict

    def judge(self, *, site: str, upgraded: Sequence[str], from_release: str, to_release: str,
              on_stage: Callable[[StageResult], None]) -> GateResult:
        reasons = ("baseline failing too: the estate, not the release, is the suspect",)
        return GateResult(site=site, releases=(to_release,), baseline_sites=("site3",), verdict=self.verdict,
                          reasons=reasons, stages=(), calls=200, seconds=1.0)


def _drive(tmp_path: Path, failing: set[str]) -> tuple[Any, Journal, str, Edge, Changer, list[tuple[str, Any]], Eyes]:
    """Wave 2's gate is inconclusive, the canary (wave 1) done and live on the new release."""
    moves = [(Phase.PREFLIGHT, None), *wave_moves(1), (Phase.WAVE_DONE, None), *wave_moves(2, upto=Phase.GATING)]
    j, run_id = journal_run(tmp_path / "journal.sqlite", make_plan(f"attr-{tmp_path.name}", SITES), moves)
    j.update_progress(run_id, {"done_waves": [1]})
    edge = Edge()
    edge.drained.add("site2")  # wave 2's site is drained for its gate
    changer, alerts, eyes = Changer(edge), [], Eyes(failing)
    # rounds only when asked: the guard's own thread would look again in an hour
    policy = RolloutPolicy.model_validate({"rollout": {"guard": {"interval_s": 3600}}})
    ports = Ports(estate=_estate(), site_ops=changer, bundle=tmp_path, metrics=None,  # type: ignore[arg-type]
                  alert=lambda kind, body: alerts.append((kind, body)), guard_observer=eyes,
                  gate=Gate(Verdict.INCONCLUSIVE), clock=lambda: 1000.0, sleep=lambda s: None)
    outcome = Executor(journal=j, run_id=run_id, policy=policy, ports=ports).drive()
    return outcome, j, run_id, edge, changer, alerts, eyes


def test_an_upgraded_site_that_explains_the_inconclusive_gate_is_named_and_the_fleet_rolled_back(
        tmp_path: Path) -> None:
    outcome, j, run_id, edge, changer, alerts, eyes = _drive(tmp_path, failing={"site1"})
    assert outcome.exit_code == ExitCode.FLEET_ROLLED_BACK, outcome
    run = j.run(run_id)
    assert run.phase == Phase.HALTED and "fleet guard: site1 failing" in run.outcome
    fired = run.progress.guard
    assert fired is not None and fired.culprits == ("site1",) and fired.drained == ("site1",)
    assert eyes.probed and all(eyes.probed)  # every attribution round probed
    # the culprit first, then the candidate; each back on 5.5.0 and its traffic restored
    assert changer.switched == [("site1", "5.5.0"), ("site2", "5.5.0")]
    assert edge.drained == set()
    assert alerts[0][0] == "fleet_guard" and "site1" in alerts[0][1]["detail"]
    assert "inconclusive_pause" not in [k for k, _ in alerts]
    (event,) = j.events(run_id, kind="guard")
    assert event.site == "site1"


def test_with_nothing_to_blame_the_candidate_rolls_back_and_the_run_pauses_exit_8(tmp_path: Path) -> None:
    outcome, j, run_id, edge, changer, alerts, eyes = _drive(tmp_path, failing=set())
    assert outcome.exit_code == ExitCode.INCONCLUSIVE, outcome
    run = j.run(run_id)
    assert run.phase == Phase.HALTED and run.progress.guard is None
    assert "the fleet guard found no fault on site1, upgraded before it" in (run.outcome or "")
    assert len(eyes.probed) == RolloutPolicy().rollout.guard.attribute_rounds
    assert changer.switched == [("site2", "5.5.0")]  # only the candidate; the canary keeps the release
    assert edge.drained == set()
    kinds = [k for k, _ in alerts]
    assert kinds == ["inconclusive_pause", "rolled_back"], kinds
    assert run.progress.inconclusive is not None and run.progress.inconclusive.checked


def test_a_failed_gate_is_the_candidates_fault_without_asking_the_guard(tmp_path: Path) -> None:
    plan = make_plan(f"attr-fail-{tmp_path.name}", ("site1", "site2"))
    j = Journal(tmp_path / "journal.sqlite", create=True)
    run = j.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target="5.6.0", inventory="i",
                       policy="p")
    j.take_lease(run.id)
    for phase, wave in ((Phase.PREFLIGHT, None), (Phase.PREPARING, 1), (Phase.DRAINING, None),
                        (Phase.SWITCHING, None), (Phase.POSTCHECKING, None), (Phase.GATING, None)):
        j.transition(run.id, phase, wave=wave)
    edge = Edge()
    eyes = Eyes(set())
    ports = Ports(estate=_estate(), site_ops=Changer(edge), bundle=tmp_path, metrics=None,  # type: ignore[arg-type]
                  guard_observer=eyes, gate=Gate(Verdict.FAIL), clock=lambda: 1000.0, sleep=lambda s: None)
    policy = RolloutPolicy.model_validate({"rollout": {"guard": {"interval_s": 3600}}})
    outcome = Executor(journal=j, run_id=run.id, policy=policy, ports=ports).drive()
    assert outcome.exit_code == ExitCode.ROLLED_BACK and eyes.probed == []
    assert j.run(run.id).progress.inconclusive is None
