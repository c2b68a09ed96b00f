"""The report model from a journal the real executor wrote (tests/unit/report/journals.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.gate.sequential import ArmSecond, Decision, NumberSecond, Second, SequentialJudge
from orchestrator.gate.verdict import Verdict, judge_probe
from orchestrator.policy.load import load_policy
from orchestrator.report.html import render
from orchestrator.report.model import DecisionKind, RolloutReport, RunVerdict, StatKind, WaveState
from orchestrator.report.sources import load_report
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.plan import build_plan
from orchestrator.rollout.state import FleetRollback, GuardFired
from orchestrator.sipp.scenarios import CallStats
from tests.conftest import REPO
from tests.unit.report.journals import FAILING_NUMBER, INVENTORY, TARGET, drive_halted_run
from tests.unit.rollout.plans import plan_doc


@pytest.fixture
def halted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RolloutReport, Path]:
    journal, run_id, alerts = drive_halted_run(tmp_path, monkeypatch)
    return load_report(journal, run_id, alerts=alerts), journal


def test_a_run_halted_by_a_failed_gate(halted: tuple[RolloutReport, Path]) -> None:
    report, _ = halted
    assert report.verdict == RunVerdict.HALTED and report.exit_code == 6
    states = [w.state for w in report.waves]
    assert states == [WaveState.DONE, WaveState.ROLLED_BACK] + [WaveState.NOT_REACHED] * 4
    failed = report.gates[-1]
    assert failed.wave == 2 and failed.verdict == Verdict.FAIL
    stage = failed.stages[-1]
    assert stage.stage == "synthetic+canary" and stage.failing
    number = next(n for n in stage.numbers if n.number == FAILING_NUMBER)
    assert number.verdict == Verdict.FAIL and number.canary.failures == {"503": number.canary.failed}
    fisher = next(s for s in number.statistics if s.kind == StatKind.FISHER)
    assert fisher.value is not None and fisher.boundary == 0.01 and fisher.crossed
    assert [r.site for r in report.rollbacks] == [report.waves[1].site]
    assert report.rollbacks[0].succeeded and report.rollbacks[0].traffic_restored


def test_waves_gates_traffic_alerts_and_approvals(halted: tuple[RolloutReport, Path]) -> None:
    report, _ = halted
    canary = report.waves[0].site
    assert [(g.wave, g.stages[0].stage, g.verdict) for g in report.gates] == [
        (1, "synthetic+canary", Verdict.PASS), (1, "live-steps", Verdict.PASS), (2, "synthetic+canary", Verdict.FAIL)]
    assert [t.percent for t in report.traffic if t.site == canary] == [1, 10, 100]
    assert report.public[0].site == canary and report.public[0].attempts == 180 and report.public[0].failed == 0
    assert [(d.kind, d.by, d.wave) for d in report.decisions] == [(DecisionKind.APPROVAL, "alice@noc", 2)]
    kinds = {a.kind for a in report.alerts}
    assert kinds == {"gate_failed", "rolled_back"}
    assert {a.state for a in report.alerts if a.channel == "chat"} == {"failed"}
    assert {a.state for a in report.alerts if a.channel == "mail"} == {"sent"}
    # the timeline: every phase span starts where the previous ended
    spans = report.phases
    assert all(a.end == b.start for a, b in itertools.pairwise(spans) if a.phase != "halted")


def test_without_an_alert_store_deliveries_are_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, run_id, _ = drive_halted_run(tmp_path, monkeypatch)
    report = load_report(journal, run_id, use_default_alerts=False)
    assert report.alerts_source is None and report.alerts == ()


def test_an_aborted_run_names_who_aborted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, run_id, _ = drive_halted_run(tmp_path, monkeypatch, abort_by="bob@noc")
    report = load_report(journal, run_id, use_default_alerts=False)
    assert report.verdict == RunVerdict.ABORTED and report.exit_code == 0
    assert [w.state for w in report.waves[:3]] == [WaveState.DONE, WaveState.ABORTED, WaveState.NOT_REACHED]
    assert [(d.kind, d.by) for d in report.decisions] == [(DecisionKind.ABORT, "bob@noc")]
    assert report.rollbacks == () and report.findings[-1].why == ("aborted by bob@noc",)
    assert "bob@noc</b> aborted" in render(report)


def test_an_in_progress_run_and_sequential_looks(tmp_path: Path) -> None:
    """A gate stage that journals the sequential judge's looks shows each test at the look that
    crossed its FAIL boundary (the judge is not wired into the stages yet: the looks here are
    the real judge's on a dead number)."""
    judge = SequentialJudge(numbers=("112", "15"), alpha=0.001)
    state, looks = judge.start(), []
    ok = ArmSecond(attempted=10, answered=10, srd_ms=(40.0,) * 10)
    worse = NumberSecond(canary=ArmSecond(attempted=10, answered=8, failed=2, srd_ms=(40.0,) * 8), baseline=ok)
    while state.decision == Decision.CONTINUE and len(looks) < 120:
        state, look = judge.look(state, Second(numbers={"112": worse, "15": NumberSecond(canary=ok, baseline=ok)}))
        looks.append(look.model_dump(mode="json"))
    assert state.decision == Decision.FAIL
    policy = load_policy(REPO / "policies" / "default.yml")
    calls = len(looks) * 10
    fixed = judge_probe({"112": CallStats(attempted=calls, answered=calls * 8 // 10, failed=calls // 5,
                                          failures={"503": calls // 5}),
                         "15": CallStats(attempted=calls, answered=calls, failed=0)},
                        {n: CallStats(attempted=calls, answered=calls, failed=0) for n in ("112", "15")},
                        synthetic=policy.gate.synthetic, canary_policy=policy.gate.canary)
    j = Journal(tmp_path / "j.sqlite", create=True)
    plan = build_plan(estate=load_inventory(INVENTORY), policy=load_policy(REPO / "policies" / "default.yml"),
                      target=TARGET)
    run = j.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target=TARGET, inventory="i",
                       policy="/nonexistent/policy.yml")
    j.transition(run.id, Phase.PREFLIGHT)
    stage = {"stage": "synthetic+canary", "verdict": "FAIL", "reasons": ["112: dead"], "calls": 40, "seconds": 2.0,
             "evidence": {"numbers": [n.model_dump(mode="json") for n in fixed.numbers], "looks": looks}}
    j.record(run.id, "gate", site="s1", data={"site": "s1", "releases": ["9"], "baseline_sites": ["s2"],
                                              "verdict": "FAIL", "reasons": ["x"], "stages": [stage], "calls": 40,
                                              "seconds": 2.0})
    report = load_report(j.path, run.id, use_default_alerts=False)
    assert report.verdict == RunVerdict.IN_PROGRESS and report.exit_code is None
    assert report.phases[-1].end is None  # still in preflight
    assert {w.state for w in report.waves} == {WaveState.NOT_REACHED}
    number = next(n for n in report.gates[0].stages[0].numbers if n.number == "112")
    crossed = [s for s in number.statistics if s.kind == StatKind.SEQUENTIAL and s.crossed]
    assert crossed and all(s.value is not None and s.boundary is not None and s.value >= s.boundary
                           for s in crossed)
    first = next(lk["second"] for lk in looks if any(t["crossed_fail"] and t["scope"] == "112" for t in lk["tests"]))
    assert first > 1 and min(s.second or 0 for s in crossed) == first  # where it crossed, not the last look
    assert f"crossed at second {first}" in render(report)


def test_a_fleet_rollback_shows_every_site_taken_back_and_the_guards_verdict(tmp_path: Path) -> None:
    """The journal as the executor writes it when the fleet guard names the canary during wave 3:
    sites 1 and 2 taken back, the third's rollback failed (left drained), exit 7."""
    j = Journal(tmp_path / "j.sqlite", create=True)
    doc = plan_doc(f"report-fleet-{tmp_path.name}", ("site1", "site2", "site3"))
    run = j.create_run(plan=doc, digest=doc["digest"], target="5.6.0", inventory="i", policy="/nonexistent/p.yml")
    j.take_lease(run.id)
    j.transition(run.id, Phase.PREFLIGHT)
    for wave in (1, 2, 3):
        for phase in (Phase.PREPARING, Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING,
                      Phase.STEPPING, Phase.BAKING, Phase.WAVE_DONE):
            if wave == 3 and phase == Phase.BAKING:
                break
            j.transition(run.id, phase, wave=wave if phase == Phase.PREPARING else None,
                         progress={"done_waves": list(range(1, wave))} if phase == Phase.PREPARING else None)
    j.update_progress(run.id, {"guard": GuardFired(at=1.0, culprits=("site1",), drained=("site1",),
                                                   reasons=("site1: live calls: 19/19 failed",))})
    fleet = FleetRollback(reason="fleet guard: site1 failing", queue=("site1", "site3", "site2"), culprits=("site1",))
    j.transition(run.id, Phase.FLEET_ROLLING_BACK, progress={"fleet": fleet})
    for site, ok in (("site1", True), ("site3", False), ("site2", True)):
        for effect in ("fleet drain", "fleet rollback") + (("restore traffic",) if ok else ()):
            j.record(run.id, "before", site=site, data={"effect": effect})
            j.record(run.id, "after", site=site, data={"effect": effect})
        fleet = fleet.model_copy(update={"queue": fleet.queue[1:], **(
            {"done": (*fleet.done, site)} if ok else {"failed": (*fleet.failed, site)})})
        j.update_progress(run.id, {"fleet": fleet})
    j.transition(run.id, Phase.HALTED, progress={"exit_code": 7}, outcome="fleet guard: site1 failing: ...")
    report = load_report(j.path, run.id, use_default_alerts=False)
    assert report.verdict == RunVerdict.HALTED and report.exit_code == 7
    assert {w.site: w.state for w in report.waves} == {
        "site1": WaveState.ROLLED_BACK, "site2": WaveState.ROLLED_BACK, "site3": WaveState.HALTED}
    assert [(r.site, r.wave, r.succeeded, r.traffic_restored, r.fleet) for r in report.rollbacks] == [
        ("site1", 1, True, True, True), ("site3", 3, False, False, True), ("site2", 2, True, True, True)]
    guard = next(f for f in report.findings if f.what == "fleet guard")
    assert guard.site == "site1" and "named site1" in guard.verdict and "19/19" in guard.why[0]
    html = render(report)
    assert html.count("(fleet rollback)") == 3 and "FAILED: site left drained" in html


def test_a_journal_the_report_cannot_read_is_invalid_input(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", create=True)
    run = j.create_run(plan={"waves": "not a plan"}, digest="d", target="9", inventory="i", policy="p")
    with pytest.raises(InvalidInput, match="the journal holds what a report cannot read"):
        load_report(j.path, run.id, use_default_alerts=False)
