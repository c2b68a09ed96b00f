"""The rollout's pure decision core: what to do next, from the run state, the plan and the clock.

`decide(run, plan, now)` returns one of:
- `Finish`: the run has ended (completed, halted or aborted) with its exit code;
- `Transition`: move the run (the move is checked against the state machine here, so an
  illegal one raises where it is decided, never reaching the journal);
- `Wait`: nothing to do before a time (a bake, the fleet bake) or before a human acts
  (an approval);
- `Effect`: one side effect on the estate (drain, switch, gate, ...) that the executor
  performs through its ports; the effect's result comes back as the next run state.

No I/O, no clock of its own: the same inputs give the same decision, and every phase and
guard is tested in tables (tests/unit/rollout/test_decide.py). The executor is the one place
that acts on decisions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from orchestrator.errors import ExitCode
from orchestrator.frozen import Frozen
from orchestrator.rollout.machine import SITE_IN_FLIGHT, TERMINAL, Phase, check
from orchestrator.rollout.plan import Plan
from orchestrator.rollout.state import FleetRollback, RunProgress


class OutcomeKind(StrEnum):
    """How a drive of the run stopped."""

    COMPLETED = "completed"
    HALTED = "halted"
    ABORTED = "aborted"
    WAITING = "waiting"


class EffectKind(StrEnum):
    """The side effects a run asks for, one phase each."""

    PREFLIGHT = "preflight"
    PREPARE = "prepare"
    DRAIN = "drain"
    SWITCH = "switch"
    POSTCHECK = "postcheck"
    GATE = "gate"
    ATTRIBUTE = "attribute"
    LIVE_STEPS = "live_steps"
    HEALTH = "health"
    ROLLBACK = "rollback"
    FLEET_ROLLBACK = "fleet_rollback"
    STAGE = "stage"  # the next wave's site, in the background (see `stage_next`)
    UNSTAGE = "unstage"  # a staged site the run never reached, once it has ended (see `unstaged_left`)


class WaitKind(StrEnum):
    """What a run waits for."""

    APPROVAL = "approval"
    FLEET_BAKE = "fleet_bake"
    BAKE = "bake"


class RunView(Frozen):
    """The part of a journal run that decisions read."""

    id: str
    phase: Phase
    wave: int = Field(ge=0)
    progress: RunProgress = RunProgress()
    outcome: str | None = None


class Finish(Frozen):
    """The run has ended."""

    kind: OutcomeKind
    exit_code: ExitCode
    message: str


class Transition(Frozen):
    """Move the run; `progress` fields are written with the move, atomically."""

    to: Phase
    wave: int | None = None
    site: str | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    outcome: str | None = None


class Wait(Frozen):
    """Nothing to do for `seconds` (None: until a human acts)."""

    kind: WaitKind
    message: str
    seconds: float | None


class Effect(Frozen):
    """One side effect on the wave's site."""

    kind: EffectKind
    wave: int
    site: str | None


Decision = Finish | Transition | Wait | Effect

# Each phase that only acts: the effect it asks for.
_EFFECTS: dict[Phase, EffectKind] = {
    Phase.PREFLIGHT: EffectKind.PREFLIGHT,
    Phase.PREPARING: EffectKind.PREPARE,
    Phase.DRAINING: EffectKind.DRAIN,
    Phase.SWITCHING: EffectKind.SWITCH,
    Phase.POSTCHECKING: EffectKind.POSTCHECK,
    Phase.GATING: EffectKind.GATE,
    Phase.STEPPING: EffectKind.LIVE_STEPS,
    Phase.ROLLING_BACK: EffectKind.ROLLBACK,
}


def decide(run: RunView, plan: Plan, now: float) -> Decision:
    """The next decision for `run` of `plan` at time `now`."""
    decision = _decide(run, plan, now)
    if isinstance(decision, Transition):
        check(run.phase, decision.to)  # a decision the state machine forbids is a bug: raise here
    return decision


def wave_start(plan: Plan, index: int, progress: RunProgress) -> Phase:
    """The first phase of wave `index`: an approval, the fleet bake, or straight to preparing."""
    wave = plan.waves[index - 1]
    if wave.approval_required and index not in progress.approvals:
        return Phase.AWAITING_APPROVAL
    if wave.not_before_fleet_bake_s > 0:
        return Phase.WAITING_FLEET_BAKE
    return Phase.PREPARING


def upgraded_sites(run: RunView, plan: Plan) -> tuple[str, ...]:
    """The sites this run has put on the new release (or may have), in upgrade order."""
    done = [plan.waves[w - 1].site for w in run.progress.done_waves]
    # WAVE_DONE: the wave's site is on the new release though done_waves gains it only on the
    # way out; a guard verdict or an undo decided there must take it back too
    if (run.phase in SITE_IN_FLIGHT or run.phase == Phase.WAVE_DONE) and run.wave \
            and plan.waves[run.wave - 1].site not in done:
        done.append(plan.waves[run.wave - 1].site)
    return tuple(done)


def fleet_rollback(run: RunView, plan: Plan, *, reason: str, culprits: tuple[str, ...] = ()) -> FleetRollback:
    """Every upgraded site back to its from-release: culprits first, then the newest first."""
    sites = upgraded_sites(run, plan)
    rest = [s for s in reversed(sites) if s not in culprits]
    return FleetRollback(reason=reason, queue=(*[c for c in culprits if c in sites], *rest), culprits=culprits)


# From here a wave's site takes live calls on the new release: the fleet guard watches it.
_LIVE_ON_NEW = frozenset({Phase.STEPPING, Phase.BAKING, Phase.WAVE_DONE})


def guarded_sites(run: RunView, plan: Plan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(sites on the new release taking live calls, in upgrade order; sites not yet touched).

    The wave in flight before its live steps is in neither: drained, and not yet judged by
    anything but its gate. Sites the plan skips (already on the target) are not compared; the
    standing reserve is (untouched to the end)."""
    done = [plan.waves[w - 1].site for w in run.progress.done_waves]
    current = plan.waves[run.wave - 1].site if run.wave else None
    if current and run.phase in _LIVE_ON_NEW and current not in done:
        done.append(current)
    # the standing reserve is never touched by this run: it is a baseline to the end
    later = [*(w.site for w in plan.waves if w.index > run.wave or (run.wave == 0)), *plan.standing]
    if current and run.phase in (Phase.AWAITING_APPROVAL, Phase.WAITING_FLEET_BAKE, Phase.PREPARING):
        later.insert(0, current)
    return tuple(done), tuple(s for s in later if s not in done)


# While a wave's site takes live calls and bakes, nothing else of the run acts: the next site
# is staged then (preflight, its release installed beside the current one; nothing live changes).
_STAGING = frozenset({Phase.STEPPING, Phase.BAKING})
_STAGED_STARTS = frozenset({Phase.PREPARING, Phase.WAITING_FLEET_BAKE})


def stage_next(run: RunView, plan: Plan) -> Effect | None:
    """The next wave's site to stage now, beside the wave in flight, or None.

    A wave that starts at once or after the fleet bake is staged (the staged release waits beside
    the current one through the bake; a run that ends first removes it); one behind an approval
    is not (an approval may take days, or never come). Only once, and never while the run is
    being stopped or judged inconclusive."""
    progress = run.progress
    if run.phase not in _STAGING or progress.guard is not None or progress.undo_requested \
            or progress.abort_requested or progress.inconclusive is not None:
        return None
    nxt = run.wave + 1
    if nxt > len(plan.waves) or nxt in progress.staged or wave_start(plan, nxt, progress) not in _STAGED_STARTS:
        return None
    return Effect(kind=EffectKind.STAGE, wave=nxt, site=plan.waves[nxt - 1].site)


def staged_ready(run: RunView) -> bool:
    """The wave being prepared was staged, complete, from the run's verified bundle: its
    preflight and install are done."""
    staged = run.progress.staged.get(run.wave)
    return staged is not None and staged.ready and staged.digest is not None \
        and staged.digest == run.progress.bundle_digest


def unstaged_left(run: RunView, plan: Plan) -> tuple[Effect, ...]:
    """Once a run has ended short of its last wave: the staged sites it never reached, whose
    staged release is to be removed (it is live nowhere). That includes the wave the run ended
    at when its turn never reached the drain (a run stopped during the fleet bake, say)."""
    if run.phase not in TERMINAL:
        return ()
    staged = run.progress.staged
    return tuple(Effect(kind=EffectKind.UNSTAGE, wave=w, site=plan.waves[w - 1].site) for w in sorted(staged)
                 if not staged[w].removed and (w > run.wave or (w == run.wave and not staged[w].taken)))


def _decide(run: RunView, plan: Plan, now: float) -> Decision:
    p, progress = run.phase, run.progress
    if p in TERMINAL:
        return _finish(run)
    if p == Phase.FLEET_ROLLING_BACK:
        return _fleet(run, plan)
    if progress.guard is not None:
        culprits = progress.guard.culprits
        fleet = fleet_rollback(run, plan, reason=f"fleet guard: {', '.join(culprits)} failing", culprits=culprits)
        return Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": fleet})
    if progress.undo_requested:
        fleet = fleet_rollback(run, plan, reason=f"undone by {progress.undo_requested}")
        return Transition(to=Phase.FLEET_ROLLING_BACK, progress={"fleet": fleet})
    who = progress.abort_requested
    if who and p not in SITE_IN_FLIGHT:
        return Transition(to=Phase.ABORTED, outcome=f"aborted by {who}")
    if who and p != Phase.ROLLING_BACK:
        # a site in flight is never left half-changed: an abort goes through its rollback
        return Transition(to=Phase.ROLLING_BACK, progress={"halt_reason": f"aborted by {who}"})
    if p == Phase.PENDING:
        return Transition(to=Phase.PREFLIGHT)
    site = plan.waves[run.wave - 1].site if run.wave else None
    pending = progress.inconclusive
    if pending is not None and (pending.wave, pending.phase) == (run.wave, p):
        # an inconclusive gate blames the candidate only once no upgraded site explains it
        if not pending.checked:
            return Effect(kind=EffectKind.ATTRIBUTE, wave=run.wave, site=site)
        return Transition(to=Phase.ROLLING_BACK, outcome=pending.reason,
                          progress={"halt_reason": pending.reason, "exit_code": ExitCode.INCONCLUSIVE})
    if p in _EFFECTS:
        return Effect(kind=_EFFECTS[p], wave=run.wave, site=site)
    wave = plan.waves[run.wave - 1]
    if p == Phase.AWAITING_APPROVAL:
        if run.wave not in progress.approvals:
            return Wait(kind=WaitKind.APPROVAL, seconds=None,
                        message=f"wave {run.wave} ({wave.site}) needs an approval: "
                                f"callfleet rollout approve {run.id} --wave {run.wave}")
        nxt = Phase.WAITING_FLEET_BAKE if wave.not_before_fleet_bake_s > 0 else Phase.PREPARING
        return Transition(to=nxt, site=wave.site)
    if p == Phase.WAITING_FLEET_BAKE:
        since = now if progress.fleet_done_at is None else progress.fleet_done_at
        left = since + wave.not_before_fleet_bake_s - now
        if left > 0:
            return Wait(kind=WaitKind.FLEET_BAKE, seconds=left,
                        message=f"reserve {wave.site}: the new release bakes fleet-wide, {left:.0f}s left")
        return Transition(to=Phase.PREPARING, site=wave.site)
    if p == Phase.BAKING:
        started = progress.wave(run.wave).bake_started
        left = (now if started is None else started) + wave.bake_s - now
        if left > 0:
            return Wait(kind=WaitKind.BAKE, seconds=left,
                        message=f"wave {run.wave} ({wave.site}): baking, {left:.0f}s left")
        return Effect(kind=EffectKind.HEALTH, wave=run.wave, site=wave.site)
    return _wave_done(run, plan, now)


def _wave_done(run: RunView, plan: Plan, now: float) -> Transition:
    wave, nxt = plan.waves[run.wave - 1], run.wave + 1
    updates: dict[str, Any] = {"done_waves": [*run.progress.done_waves, run.wave]}
    # the fleet bake of a reserve counts from the end of the last wave that is not one
    if wave.role != "reserve" and (nxt > len(plan.waves) or plan.waves[nxt - 1].role == "reserve"):
        updates["fleet_done_at"] = now
    if nxt > len(plan.waves):
        return Transition(to=Phase.COMPLETED, progress=updates,
                          outcome=f"{len(plan.waves)} site(s) on {plan.target}")
    return Transition(to=wave_start(plan, nxt, run.progress), wave=nxt, site=plan.waves[nxt - 1].site,
                      progress=updates)


def _fleet(run: RunView, plan: Plan) -> Decision:
    fleet = run.progress.fleet
    if fleet is None:
        # every way in records the queue with the move: without one the journal was damaged,
        # and only a human can tell which site runs what
        return Transition(to=Phase.HALTED, progress={"exit_code": ExitCode.ROLLBACK_FAILED},
                          outcome="fleet rollback without its record (damaged journal?): check every site")
    if fleet.queue:
        site = fleet.queue[0]
        index = next(w.index for w in plan.waves if w.site == site)
        return Effect(kind=EffectKind.FLEET_ROLLBACK, wave=index, site=site)
    back = f"{', '.join(fleet.done)} back on the from-release" if fleet.done else "no site to take back"
    failed = f"; ROLLBACK FAILED on {', '.join(fleet.failed)} (left drained)" if fleet.failed else ""
    code = ExitCode.ROLLBACK_FAILED if fleet.failed else fleet.exit_code
    return Transition(to=Phase.HALTED, progress={"exit_code": code, "halt_reason": fleet.reason},
                      outcome=f"{fleet.reason}: {back}{failed}")


def _finish(run: RunView) -> Finish:
    kind = {Phase.COMPLETED: OutcomeKind.COMPLETED, Phase.ABORTED: OutcomeKind.ABORTED}.get(
        run.phase, OutcomeKind.HALTED)
    code = ExitCode.OK if kind != OutcomeKind.HALTED else (run.progress.exit_code or ExitCode.ROLLED_BACK)
    return Finish(kind=kind, exit_code=code, message=run.outcome or kind.value)
