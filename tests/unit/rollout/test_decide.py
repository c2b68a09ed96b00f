"""The rollout's pure decision core: every phase and guard as a table row, in milliseconds."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import ExitCode
from orchestrator.rollout import decide as decide_module
from orchestrator.rollout.decide import (
    Decision,
    Effect,
    EffectKind,
    Finish,
    OutcomeKind,
    RunView,
    Transition,
    Wait,
    WaitKind,
    decide,
    fleet_rollback,
    guarded_sites,
    stage_next,
    staged_ready,
    unstaged_left,
    upgraded_sites,
    wave_start,
)
from orchestrator.rollout.machine import TERMINAL, IllegalTransition, Phase, check
from orchestrator.rollout.plan import Plan, plan_digest
from orchestrator.rollout.state import FleetRollback, GuardFired, Inconclusive, RunProgress, Staged, WaveProgress

NOW = 1_000.0


def _wave(index: int, site: str, role: str, *, approval: bool = False, fleet_bake: float = 0,
          bake: float = 10) -> dict[str, Any]:
    return {"index": index, "site": site, "role": role, "from_releases": ["5.5.0"], "to_release": "5.6.0",
            "traffic_steps": [{"weight": 10, "bake_s": 1.0}, {"weight": 100, "bake_s": 1.0}],
            "bake_s": float(bake), "approval_required": approval, "not_before_fleet_bake_s": float(fleet_bake)}


def _plan(*waves: dict[str, Any]) -> Plan:
    body: dict[str, Any] = {"target": "5.6.0", "policy": "default", "estate": "lab", "waves": list(waves),
                            "skipped": [], "reserve": [w["site"] for w in waves if w["role"] == "reserve"]}
    return Plan.model_validate({**body, "digest": plan_digest(body)})


# canary (bake 20), a wave that needs an approval, a reserve behind a 30 s fleet bake
PLAN = _plan(_wave(1, "site1", "canary", bake=20), _wave(2, "site2", "wave", approval=True),
             _wave(3, "site3", "reserve", fleet_bake=30))
ONE_WAVE = _plan(_wave(1, "site1", "canary"))


def _p(**fields: Any) -> RunProgress:
    return RunProgress.model_validate(fields)


def _run(phase: Phase, wave: int = 0, progress: RunProgress | None = None, outcome: str | None = None) -> RunView:
    return RunView(id="r1", phase=phase, wave=wave, progress=progress or RunProgress(), outcome=outcome)


BAKED = _p(waves={1: WaveProgress(bake_started=NOW - 20)})
ROWS: list[tuple[str, RunView, Plan, Decision]] = [
    # the run starts
    ("pending -> preflight", _run(Phase.PENDING), PLAN, Transition(to=Phase.PREFLIGHT)),
    ("preflight acts", _run(Phase.PREFLIGHT), PLAN, Effect(kind=EffectKind.PREFLIGHT, wave=0, site=None)),
    # each phase that only acts asks for its effect on the wave's site
    ("preparing", _run(Phase.PREPARING, 2), PLAN, Effect(kind=EffectKind.PREPARE, wave=2, site="site2")),
    ("draining", _run(Phase.DRAINING, 1), PLAN, Effect(kind=EffectKind.DRAIN, wave=1, site="site1")),
    ("switching", _run(Phase.SWITCHING, 1), PLAN, Effect(kind=EffectKind.SWITCH, wave=1, site="site1")),
    ("postchecking", _run(Phase.POSTCHECKING, 1), PLAN, Effect(kind=EffectKind.POSTCHECK, wave=1, site="site1")),
    ("gating", _run(Phase.GATING, 1), PLAN, Effect(kind=EffectKind.GATE, wave=1, site="site1")),
    ("stepping", _run(Phase.STEPPING, 1), PLAN, Effect(kind=EffectKind.LIVE_STEPS, wave=1, site="site1")),
    ("rolling back", _run(Phase.ROLLING_BACK, 2), PLAN, Effect(kind=EffectKind.ROLLBACK, wave=2, site="site2")),
    # the bake: wait it out, then probe
    ("bake under way", _run(Phase.BAKING, 1, _p(waves={1: WaveProgress(bake_started=NOW - 5)})), PLAN,
     Wait(kind=WaitKind.BAKE, seconds=15, message="wave 1 (site1): baking, 15s left")),
    ("bake over", _run(Phase.BAKING, 1, BAKED), PLAN, Effect(kind=EffectKind.HEALTH, wave=1, site="site1")),
    ("bake start unrecorded: it starts now", _run(Phase.BAKING, 1), PLAN,
     Wait(kind=WaitKind.BAKE, seconds=20, message="wave 1 (site1): baking, 20s left")),
    # approvals
    ("approval missing", _run(Phase.AWAITING_APPROVAL, 2, _p(approvals={3: "ann"})), PLAN,
     Wait(kind=WaitKind.APPROVAL, seconds=None,
          message="wave 2 (site2) needs an approval: callfleet rollout approve r1 --wave 2")),
    ("approved", _run(Phase.AWAITING_APPROVAL, 2, _p(approvals={2: "ann"})), PLAN,
     Transition(to=Phase.PREPARING, site="site2")),
    # the fleet bake before the reserve
    ("fleet bake under way", _run(Phase.WAITING_FLEET_BAKE, 3, _p(fleet_done_at=NOW - 10)), PLAN,
     Wait(kind=WaitKind.FLEET_BAKE, seconds=20, message="reserve site3: the new release bakes fleet-wide, 20s left")),
    ("fleet bake over", _run(Phase.WAITING_FLEET_BAKE, 3, _p(fleet_done_at=NOW - 30)), PLAN,
     Transition(to=Phase.PREPARING, site="site3")),
    # a wave ends: the next wave's start, recorded with the wave's end in one move
    ("canary done -> wave 2 needs its approval", _run(Phase.WAVE_DONE, 1), PLAN,
     Transition(to=Phase.AWAITING_APPROVAL, wave=2, site="site2", progress={"done_waves": [1]})),
    ("wave 2 approved in advance -> preparing", _run(Phase.WAVE_DONE, 1, _p(approvals={2: "ann"})), PLAN,
     Transition(to=Phase.PREPARING, wave=2, site="site2", progress={"done_waves": [1]})),
    ("last wave before the reserve: the fleet bake starts", _run(Phase.WAVE_DONE, 2, _p(done_waves=[1])), PLAN,
     Transition(to=Phase.WAITING_FLEET_BAKE, wave=3, site="site3",
                progress={"done_waves": [1, 2], "fleet_done_at": NOW})),
    ("the reserve done: completed", _run(Phase.WAVE_DONE, 3, _p(done_waves=[1, 2], fleet_done_at=5.0)), PLAN,
     Transition(to=Phase.COMPLETED, progress={"done_waves": [1, 2, 3]}, outcome="3 site(s) on 5.6.0")),
    ("one wave, no reserve: completed and fleet-done", _run(Phase.WAVE_DONE, 1), ONE_WAVE,
     Transition(to=Phase.COMPLETED, progress={"done_waves": [1], "fleet_done_at": NOW},
                outcome="1 site(s) on 5.6.0")),
    # aborts: straight out unless a site is in flight, which rolls back first
    ("abort while pending", _run(Phase.PENDING, 0, _p(abort_requested="ann")), PLAN,
     Transition(to=Phase.ABORTED, outcome="aborted by ann")),
    ("abort while awaiting an approval", _run(Phase.AWAITING_APPROVAL, 2, _p(abort_requested="ann")), PLAN,
     Transition(to=Phase.ABORTED, outcome="aborted by ann")),
    ("abort while preparing (nothing live changed)", _run(Phase.PREPARING, 2, _p(abort_requested="ann")), PLAN,
     Transition(to=Phase.ABORTED, outcome="aborted by ann")),
    *[(f"abort while {p}: roll back", _run(p, 1, _p(abort_requested="ann")), PLAN,
       Transition(to=Phase.ROLLING_BACK, progress={"halt_reason": "aborted by ann"}))
      for p in (Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING, Phase.STEPPING, Phase.BAKING)],
    ("abort during the rollback: the rollback goes on", _run(Phase.ROLLING_BACK, 1, _p(abort_requested="ann")),
     PLAN, Effect(kind=EffectKind.ROLLBACK, wave=1, site="site1")),
    # a fleet rollback on demand (`rollout undo`): every upgraded site, the site in flight too
    ("undo while wave 2 bakes: both sites, newest first",
     _run(Phase.BAKING, 2, _p(done_waves=[1], undo_requested="ann")), PLAN,
     Transition(to=Phase.FLEET_ROLLING_BACK,
                progress={"fleet": FleetRollback(reason="undone by ann", queue=("site2", "site1"))})),
    ("undo while wave 2 awaits its approval: only the canary was changed",
     _run(Phase.AWAITING_APPROVAL, 2, _p(done_waves=[1], undo_requested="ann")), PLAN,
     Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": FleetRollback(reason="undone by ann",
                                                                             queue=("site1",))})),
    ("undo during a site's rollback: the fleet rollback takes it over",
     _run(Phase.ROLLING_BACK, 1, _p(undo_requested="ann")), PLAN,
     Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": FleetRollback(reason="undone by ann",
                                                                             queue=("site1",))})),
    # an inconclusive gate or live step: the guard is asked whether an earlier site explains it
    ("inconclusive gate of wave 2: attribute it first", _run(Phase.GATING, 2, _p(done_waves=[1], inconclusive={
        "wave": 2, "phase": "gating", "reason": "gate INCONCLUSIVE on site2"})), PLAN,
     Effect(kind=EffectKind.ATTRIBUTE, wave=2, site="site2")),
    ("inconclusive live steps: attribute them first", _run(Phase.STEPPING, 2, _p(done_waves=[1], inconclusive={
        "wave": 2, "phase": "stepping", "reason": "live steps INCONCLUSIVE on site2"})), PLAN,
     Effect(kind=EffectKind.ATTRIBUTE, wave=2, site="site2")),
    ("nothing explains it: the candidate rolls back, exit 8", _run(Phase.GATING, 2, _p(
        done_waves=[1], inconclusive={"wave": 2, "phase": "gating", "reason": "gate INCONCLUSIVE; nobody",
                                      "checked": True})), PLAN,
     Transition(to=Phase.ROLLING_BACK, outcome="gate INCONCLUSIVE; nobody",
                progress={"halt_reason": "gate INCONCLUSIVE; nobody", "exit_code": ExitCode.INCONCLUSIVE})),
    ("a verdict of another phase is not this one's", _run(Phase.STEPPING, 2, _p(done_waves=[1], inconclusive={
        "wave": 2, "phase": "gating", "reason": "old"})), PLAN,
     Effect(kind=EffectKind.LIVE_STEPS, wave=2, site="site2")),
    ("a verdict of another wave is not this one's", _run(Phase.GATING, 3, _p(done_waves=[1, 2], inconclusive={
        "wave": 2, "phase": "gating", "reason": "old"})), PLAN,
     Effect(kind=EffectKind.GATE, wave=3, site="site3")),
    ("the guard named a culprit while attributing: the fleet rollback, the candidate too",
     _run(Phase.GATING, 2, _p(done_waves=[1], guard={"at": 5.0, "culprits": ["site1"], "drained": ["site1"]},
                              inconclusive={"wave": 2, "phase": "gating", "reason": "r"})), PLAN,
     Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": FleetRollback(
         reason="fleet guard: site1 failing", queue=("site1", "site2"), culprits=("site1",))})),
    ("an abort while attributing rolls the candidate back",
     _run(Phase.GATING, 2, _p(done_waves=[1], abort_requested="ann",
                              inconclusive={"wave": 2, "phase": "gating", "reason": "r"})), PLAN,
     Transition(to=Phase.ROLLING_BACK, progress={"halt_reason": "aborted by ann"})),
    # the fleet guard named a culprit: the run turns to its fleet rollback, culprit first
    ("guard fired while wave 2 steps", _run(Phase.STEPPING, 2, _p(done_waves=[1], guard={
        "at": 5.0, "culprits": ["site1"], "drained": ["site1"]})), PLAN,
     Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": FleetRollback(
         reason="fleet guard: site1 failing", queue=("site1", "site2"), culprits=("site1",))})),
    ("fleet rollback: the head of the queue",
     _run(Phase.FLEET_ROLLING_BACK, 3, _p(fleet=FleetRollback(reason="r", queue=("site2", "site1")))), PLAN,
     Effect(kind=EffectKind.FLEET_ROLLBACK, wave=2, site="site2")),
    ("an abort does not stop a fleet rollback",
     _run(Phase.FLEET_ROLLING_BACK, 3, _p(abort_requested="bob",
                                          fleet=FleetRollback(reason="r", queue=("site1",)))), PLAN,
     Effect(kind=EffectKind.FLEET_ROLLBACK, wave=1, site="site1")),
    ("fleet rollback done: halted, exit 11",
     _run(Phase.FLEET_ROLLING_BACK, 3, _p(fleet=FleetRollback(reason="undone by ann", queue=(),
                                                              done=("site2", "site1")))), PLAN,
     Transition(to=Phase.HALTED, progress={"exit_code": ExitCode.FLEET_ROLLED_BACK, "halt_reason": "undone by ann"},
                outcome="undone by ann: site2, site1 back on the from-release")),
    ("fleet rollback with a failed site: halted, exit 7",
     _run(Phase.FLEET_ROLLING_BACK, 3, _p(fleet=FleetRollback(reason="r", queue=(), done=("site1",),
                                                              failed=("site2",)))), PLAN,
     Transition(to=Phase.HALTED, progress={"exit_code": ExitCode.ROLLBACK_FAILED, "halt_reason": "r"},
                outcome="r: site1 back on the from-release; ROLLBACK FAILED on site2 (left drained)")),
    ("fleet rollback with nothing to take back",
     _run(Phase.FLEET_ROLLING_BACK, 0, _p(fleet=FleetRollback(reason="r", queue=()))), PLAN,
     Transition(to=Phase.HALTED, progress={"exit_code": ExitCode.FLEET_ROLLED_BACK, "halt_reason": "r"},
                outcome="r: no site to take back")),
    ("fleet rollback without its record: a human must look",
     _run(Phase.FLEET_ROLLING_BACK, 1), PLAN,
     Transition(to=Phase.HALTED, progress={"exit_code": ExitCode.ROLLBACK_FAILED},
                outcome="fleet rollback without its record (damaged journal?): check every site")),
    # the end
    ("completed", _run(Phase.COMPLETED, 3, outcome="3 site(s) on 5.6.0"), PLAN,
     Finish(kind=OutcomeKind.COMPLETED, exit_code=ExitCode.OK, message="3 site(s) on 5.6.0")),
    ("aborted", _run(Phase.ABORTED, 1, _p(abort_requested="ann", exit_code=6), outcome="aborted by ann"), PLAN,
     Finish(kind=OutcomeKind.ABORTED, exit_code=ExitCode.OK, message="aborted by ann")),
    ("halted, inconclusive gate", _run(Phase.HALTED, 1, _p(exit_code=8), outcome="gate"), PLAN,
     Finish(kind=OutcomeKind.HALTED, exit_code=ExitCode.INCONCLUSIVE, message="gate")),
    ("halted without a code recorded: rolled back", _run(Phase.HALTED, 1), PLAN,
     Finish(kind=OutcomeKind.HALTED, exit_code=ExitCode.ROLLED_BACK, message="halted")),
    ("an abort request changes nothing once ended", _run(Phase.HALTED, 1, _p(abort_requested="ann"), "x"), PLAN,
     Finish(kind=OutcomeKind.HALTED, exit_code=ExitCode.ROLLED_BACK, message="x")),
]


@pytest.mark.parametrize(("run", "plan", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decide(run: RunView, plan: Plan, expected: Decision) -> None:
    got = decide(run, plan, NOW)
    assert got == expected
    if isinstance(got, Transition):
        check(run.phase, got.to)  # never an illegal move


def test_every_phase_has_a_row() -> None:
    assert {r[1].phase for r in ROWS} == set(Phase)


def test_the_same_inputs_give_the_same_decision() -> None:
    run = _run(Phase.WAVE_DONE, 2, _p(done_waves=[1]))
    assert decide(run, PLAN, NOW) == decide(run, PLAN, NOW)
    assert run == _run(Phase.WAVE_DONE, 2, _p(done_waves=[1]))  # the input is not changed


def test_a_decision_the_state_machine_forbids_raises_where_it_is_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug that decides DRAINING -> ABORTED (an abort skipping the rollback) never reaches the journal."""
    monkeypatch.setattr(decide_module, "_decide", lambda run, plan, now: Transition(to=Phase.ABORTED))
    with pytest.raises(IllegalTransition, match="draining -> aborted"):
        decide(_run(Phase.DRAINING, 1), PLAN, NOW)


@pytest.mark.parametrize("src", sorted(set(Phase) - TERMINAL))
def test_every_illegal_move_raises(src: Phase) -> None:
    from orchestrator.rollout.machine import TRANSITIONS

    for dst in set(Phase) - TRANSITIONS[src]:
        with pytest.raises(IllegalTransition):
            check(src, dst)


def test_a_fleet_rollback_takes_culprits_first_then_the_newest() -> None:
    run = _run(Phase.WAITING_FLEET_BAKE, 3, _p(done_waves=[1, 2]))
    assert upgraded_sites(run, PLAN) == ("site1", "site2")
    fleet = fleet_rollback(run, PLAN, reason="guard", culprits=("site1",))
    assert fleet.queue == ("site1", "site2") and fleet.culprits == ("site1",)
    assert fleet.exit_code == ExitCode.FLEET_ROLLED_BACK
    # a culprit this run did not upgrade (skipped, already on the target) is not taken back
    assert fleet_rollback(run, PLAN, reason="guard", culprits=("site9",)).queue == ("site2", "site1")


def test_a_guard_verdict_met_at_a_waves_end_takes_that_wave_back_too() -> None:
    """Found by the lab: the guard named the canary during wave 2's health probe; the run was at
    WAVE_DONE (wave 2, done_waves still [1]) when it turned to its fleet rollback, and site2 was
    left on the failing release."""
    run = _run(Phase.WAVE_DONE, 2, _p(done_waves=[1], guard=GuardFired(at=1.0, culprits=("site1",))))
    assert upgraded_sites(run, PLAN) == ("site1", "site2")
    d = decide(run, PLAN, NOW)
    assert isinstance(d, Transition) and d.to == Phase.FLEET_ROLLING_BACK
    assert d.progress is not None and d.progress["fleet"].queue == ("site1", "site2")


@pytest.mark.parametrize(("phase", "wave", "done", "expected"), [
    (Phase.PREFLIGHT, 0, [], ((), ("site1", "site2", "site3"))),
    (Phase.GATING, 1, [], ((), ("site2", "site3"))),  # the canary is drained: its gate judges it
    (Phase.STEPPING, 1, [], (("site1",), ("site2", "site3"))),
    (Phase.AWAITING_APPROVAL, 2, [1], (("site1",), ("site2", "site3"))),
    (Phase.SWITCHING, 2, [1], (("site1",), ("site3",))),
    (Phase.WAVE_DONE, 2, [1], (("site1", "site2"), ("site3",))),
    (Phase.WAITING_FLEET_BAKE, 3, [1, 2], (("site1", "site2"), ("site3",))),
    (Phase.BAKING, 3, [1, 2], (("site1", "site2", "site3"), ())),
])
def test_the_guard_watches_sites_from_their_live_steps_against_the_untouched(
        phase: Phase, wave: int, done: list[int], expected: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    assert guarded_sites(_run(phase, wave, _p(done_waves=done)), PLAN) == expected


def test_the_standing_reserve_stays_a_baseline_to_the_end() -> None:
    body = {**PLAN.model_dump(mode="json", exclude={"digest", "limit", "unlimited"}), "standing": ["site4"]}
    plan = Plan.model_validate({**body, "digest": plan_digest(body)})
    assert guarded_sites(_run(Phase.BAKING, 3, _p(done_waves=[1, 2])), plan) == (("site1", "site2", "site3"),
                                                                                ("site4",))


def test_a_wave_starts_at_its_approval_then_its_fleet_bake() -> None:
    assert wave_start(PLAN, 2, RunProgress()) == Phase.AWAITING_APPROVAL
    assert wave_start(PLAN, 2, _p(approvals={2: "ann"})) == Phase.PREPARING
    assert wave_start(PLAN, 3, RunProgress()) == Phase.WAITING_FLEET_BAKE
    assert wave_start(PLAN, 1, RunProgress()) == Phase.PREPARING


# -- staging the next site while a wave steps and bakes (issue #16, item 3) ----------------
FOUR = _plan(_wave(1, "site1", "canary"), _wave(2, "site2", "wave"), _wave(3, "site3", "wave", approval=True),
             _wave(4, "site4", "reserve", fleet_bake=30))
STAGED = Staged(digest="d1", ready=True)

STAGE_ROWS: list[tuple[str, RunView, Effect | None]] = [
    ("wave 1 steps: wave 2 is staged", _run(Phase.STEPPING, 1), Effect(kind=EffectKind.STAGE, wave=2, site="site2")),
    ("wave 1 bakes: the same", _run(Phase.BAKING, 1), Effect(kind=EffectKind.STAGE, wave=2, site="site2")),
    ("already staged (or begun): once only", _run(Phase.BAKING, 1, _p(staged={2: Staged(digest="d1")})), None),
    ("wave 1 gating: its site is not proven yet", _run(Phase.GATING, 1), None),
    ("wave 2 preparing: nothing beside it", _run(Phase.PREPARING, 2), None),
    ("the next wave waits for an approval", _run(Phase.BAKING, 2), None),
    ("the next wave waits for the fleet bake: staged, it waits beside the current release",
     _run(Phase.BAKING, 3, _p(approvals={3: "ann"})), Effect(kind=EffectKind.STAGE, wave=4, site="site4")),
    ("the next wave approved in advance", _run(Phase.BAKING, 2, _p(approvals={3: "ann"})),
     Effect(kind=EffectKind.STAGE, wave=3, site="site3")),
    ("the last wave: nothing after it", _run(Phase.BAKING, 4, _p(approvals={3: "ann"})), None),
    ("an abort asked", _run(Phase.BAKING, 1, _p(abort_requested="ann")), None),
    ("an undo asked", _run(Phase.BAKING, 1, _p(undo_requested="ann")), None),
    ("the guard fired", _run(Phase.STEPPING, 1, _p(guard=GuardFired(at=1.0, culprits=("site1",)))), None),
    ("an inconclusive step being attributed",
     _run(Phase.STEPPING, 1, _p(inconclusive=Inconclusive(wave=1, phase=Phase.STEPPING, reason="r"))), None),
]


@pytest.mark.parametrize(("name", "run", "expected"), STAGE_ROWS, ids=[r[0] for r in STAGE_ROWS])
def test_the_next_site_is_staged_only_beside_a_live_wave_and_never_behind_an_approval(
        name: str, run: RunView, expected: Effect | None) -> None:
    assert stage_next(run, FOUR) == expected


@pytest.mark.parametrize(("staged", "ready"), [
    ({2: STAGED}, True),
    ({}, False),
    ({2: Staged(digest="d1")}, False),  # begun, or failed: its preparation runs in its turn
    ({2: Staged(digest="d0", ready=True)}, False),  # another bundle than the run's verified one
    ({3: STAGED}, False),
])
def test_a_wave_skips_its_preparation_only_when_staged_complete_from_the_runs_bundle(
        staged: dict[int, Staged], ready: bool) -> None:
    assert staged_ready(_run(Phase.PREPARING, 2, _p(staged=staged, bundle_digest="d1"))) is ready


def test_a_run_ended_short_of_staged_sites_unstages_them_and_only_them() -> None:
    # wave 2 halted after its drain (its rollback answers for it), 3 staged beside it, 4 already removed
    staged = {2: Staged(digest="d1", ready=True, taken=True), 3: STAGED, 4: Staged(digest="d1", removed=True)}
    halted = _run(Phase.HALTED, 2, _p(staged=staged))
    assert unstaged_left(halted, FOUR) == (Effect(kind=EffectKind.UNSTAGE, wave=3, site="site3"),)
    assert unstaged_left(_run(Phase.BAKING, 2, _p(staged=staged)), FOUR) == ()  # not ended: nothing
    assert unstaged_left(_run(Phase.COMPLETED, 4, _p(staged=staged)), FOUR) == ()
    # stopped during the fleet bake: the reserve's wave is the run's, but its turn never drained it
    behind = {4: STAGED}
    assert unstaged_left(_run(Phase.ABORTED, 4, _p(staged=behind)), FOUR) == (
        Effect(kind=EffectKind.UNSTAGE, wave=4, site="site4"),)
    # its turn reached the drain: the site is the run's (rolled back, or on the release)
    taken = {4: Staged(digest="d1", ready=True, taken=True)}
    assert unstaged_left(_run(Phase.HALTED, 4, _p(staged=taken)), FOUR) == ()
    # decide still reports the end: unstaging is the executor's last act, not a phase
    assert isinstance(decide(halted, FOUR, NOW), Finish)
