"""The one impure loop: drive a run through the state machine, journalling around every effect.

Each phase handler is idempotent, so resuming after a kill -9 simply runs the handler of
the phase the journal says the run is in: a drain is drained again, a switch re-run
(Ansible completes what was half done), a gate re-run from its first stage (a gate is
never skipped), a rollback re-run. A completed wave is never run again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import CallfleetError, ExitCode, InvalidInput
from orchestrator.estate.model import Estate
from orchestrator.gate.live import run_steps
from orchestrator.gate.sequential.budget import split
from orchestrator.gate.sequential.floor import judge_floor
from orchestrator.gate.verdict import Verdict
from orchestrator.guard.observe import GuardObserver
from orchestrator.metrics.provider import MetricsProvider
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.release.bundle import bundle_digest, require_unchanged, require_verified
from orchestrator.rollout.decide import (
    EffectKind,
    Finish,
    OutcomeKind,
    RunView,
    Transition,
    Wait,
    WaitKind,
    decide,
    guarded_sites,
    stage_next,
    staged_ready,
    unstaged_left,
    wave_start,
)
from orchestrator.rollout.guard_loop import FleetGuard
from orchestrator.rollout.journal import Journal, Run
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.plan import Plan, Wave, active_freeze
from orchestrator.rollout.prober import EstateProber, Prober
from orchestrator.rollout.stager import Stager
from orchestrator.rollout.state import Inconclusive, Staged
from orchestrator.rollout.wave_gate import EstateWaveGate, WaveGate
from orchestrator.site.ops import SiteOps, failures_text


class Outcome(BaseModel):
    """Where a drive of the run stopped."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    run: str
    kind: OutcomeKind
    phase: Phase
    wave: int
    message: str
    exit_code: int


@dataclass
class Ports:
    """Everything with a side effect the executor uses."""

    estate: Estate
    site_ops: SiteOps
    bundle: Path | None  # None: not in the store (a fleet rollback installs nothing)
    metrics: MetricsProvider | None
    alert: Callable[[str, dict[str, Any]], None] | None = None
    progress: Callable[[str], None] | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    health_calls: int = 20
    guard_observer: GuardObserver | None = None  # None: no fleet guard (no metrics backend)
    gate: WaveGate | None = None  # None: the gate's stages against `estate`
    prober: Prober | None = None  # None: OPTIONS pings and SIPp probes against `estate`
    _notes: list[str] = field(default_factory=list)


class Executor:
    """Drives one run. `wait="sleep"` sleeps through bakes and fleet bakes (an attended
    `upgrade`); `wait="return"` stops at the first wait (`rollout advance` from CI)."""

    def __init__(self, *, journal: Journal, run_id: str, policy: RolloutPolicy, ports: Ports,
                 wait: Literal["sleep", "return"] = "sleep", max_actions: int = 10_000) -> None:
        self.j = journal
        self.run_id = run_id
        self.policy = policy
        self.ports = ports
        self.wait = wait
        self.max_actions = max_actions
        run = journal.run(run_id)
        self.plan = Plan.model_validate(run.plan)
        self.gate: WaveGate = ports.gate or EstateWaveGate(estate=ports.estate, policy=policy.gate)
        self.prober: Prober = ports.prober or EstateProber(ports.estate)
        self.guard: FleetGuard | None = None  # while a drive runs, with a guard policy and eyes
        self.stager = Stager()  # the next wave's site, staged while this one steps and bakes
        self._effects: dict[EffectKind, Callable[[Run], Outcome | None]] = {
            EffectKind.PREFLIGHT: self._preflight,
            EffectKind.PREPARE: self._prepare,
            EffectKind.DRAIN: self._drain,
            EffectKind.SWITCH: self._switch,
            EffectKind.POSTCHECK: self._postcheck,
            EffectKind.GATE: self._gate,
            EffectKind.ATTRIBUTE: self._attribute,
            EffectKind.LIVE_STEPS: self._live_steps,
            EffectKind.HEALTH: self._health,
            EffectKind.ROLLBACK: self._rollback,
            EffectKind.FLEET_ROLLBACK: self._fleet_rollback,
        }

    # -- helpers ---------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.ports.progress:
            self.ports.progress(message)

    def _run(self) -> Run:
        return self.j.run(self.run_id)

    def _wave(self, index: int) -> Wave:
        return self.plan.waves[index - 1]

    def _go(self, to: Phase, *, wave: int | None = None, site: str | None = None,
            progress: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
            outcome: str | None = None) -> Run:
        run = self.j.transition(self.run_id, to, wave=wave, site=site, progress=progress, data=data,
                                outcome=outcome)
        where = f"wave {run.wave} ({self._wave(run.wave).site})" if run.wave else "run"
        self._say(f"{where}: {to}" + (f" - {outcome}" if outcome else ""))
        return run

    def _effect(self, name: str, site: str | None, fn: Callable[[], Any]) -> Any:
        """Journal before and after an effect (an effect with no "after" is redone on resume)."""
        self.j.record(self.run_id, "before", site=site, data={"effect": name})
        result = fn()
        self.j.record(self.run_id, "after", site=site, data={"effect": name})
        return result

    def _waiting(self, run: Run, message: str, seconds: float | None) -> Outcome | None:
        """Sleep (attended) or return a waiting outcome (CI)."""
        if self.wait == "return" or seconds is None:
            return Outcome(run=self.run_id, kind="waiting", phase=run.phase, wave=run.wave, message=message,
                           exit_code=ExitCode.WAITING)
        self._say(message)
        self.ports.sleep(max(0.0, min(seconds, 5.0)))
        return None

    # -- the loop --------------------------------------------------------------------
    def drive(self) -> Outcome:
        """Act on decisions until the run ends or must wait; the fleet guard watches meanwhile."""
        self.j.take_lease(self.run_id)
        self.guard = guard = self._guard()
        try:
            if guard is not None:
                guard.start()
            for _ in range(self.max_actions):
                outcome = self._handle(self._run())
                if outcome is not None:
                    return outcome
            raise CallfleetError(f"rollout {self.run_id}: gave up after {self.max_actions} actions (a bug)")
        finally:
            self._collect_staging(wait=True, cancel=True)  # no staging outlives the drive's lease
            if guard is not None:
                guard.stop()
            self.guard = None
            self.j.drop_lease(self.run_id)

    def _guard(self) -> FleetGuard | None:
        policy = self.policy.rollout.guard
        if not policy.enabled or self.ports.guard_observer is None:
            return None
        return FleetGuard(journal=self.j, run_id=self.run_id, plan=self.plan, policy=policy,
                          observer=self.ports.guard_observer, steering=self.ports.site_ops.steering,
                          numbers=tuple(n.number for n in self.ports.estate.numbers), clock=self.ports.clock,
                          lag_s=self.policy.gate.live_steps.metrics_lag_s, say=self._say,
                          alert=lambda kind, site, detail: self._alert(kind, self._run(), detail, site=site))

    def _handle(self, run: Run) -> Outcome | None:
        if self._collect_staging(wait=False):
            run = self._run()
        view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
        d = decide(view, self.plan, self.ports.clock())
        if isinstance(d, Finish):
            self._end_staging()
            return Outcome(run=self.run_id, kind=d.kind, phase=run.phase, wave=run.wave, message=d.message,
                           exit_code=d.exit_code)
        if isinstance(d, Transition):
            self._go(d.to, wave=d.wave, site=d.site, progress=d.progress or None, outcome=d.outcome)
            return None
        if isinstance(d, Wait):
            if d.kind == WaitKind.BAKE:
                self._stage(view)
            if d.seconds is None:
                self._collect_staging(wait=True)  # an approval may take days: staging ends first
            return self._waiting(run, d.message, d.seconds)
        if d.kind in (EffectKind.LIVE_STEPS, EffectKind.HEALTH):
            self._stage(view)
        elif d.kind in (EffectKind.ROLLBACK, EffectKind.FLEET_ROLLBACK):
            self._collect_staging(wait=False, cancel=True)  # a rollback never waits for staging
        elif d.kind == EffectKind.PREPARE and self._collect_staging(wait=True):
            run = self._run()
        return self._effects[d.kind](run)

    # -- staging the next site (issue #16, item 3) ---------------------------------------
    def _stage(self, view: RunView) -> None:
        """Start staging the site `stage_next` names, in the background, unless one is under way.

        Only in a drive that goes on through the bake (`upgrade`, `rollout resume`): one that
        stops at the bake (`rollout advance`, `--no-wait`) would have to wait for the staging
        before it returns, and the bake's clock would run out meanwhile."""
        if not self.policy.rollout.stage_next or self.stager.busy or self.wait == "return":
            return
        effect = stage_next(view, self.plan)
        if effect is None or effect.site is None:
            return
        wave = self._wave(effect.wave)
        try:
            bundle = self._same_bundle(self._run())
        except CallfleetError:
            return  # the wave's own preparation says why, in its turn
        staged = Staged(digest=view.progress.bundle_digest)
        self.j.update_progress(self.run_id, {"staged": {**self._run().progress.staged, effect.wave: staged}})
        self.j.record(self.run_id, "stage", site=wave.site, data={"wave": effect.wave, "state": "begun"})
        self._say(f"wave {effect.wave} ({wave.site}): staging {wave.to_release} beside its current release "
                  f"while wave {view.wave} ({self._wave(view.wave).site}) is live")
        ops = self.ports.site_ops

        def work(cancel: threading.Event) -> tuple[bool, str]:
            result = ops.stage(wave.site, wave.to_release, bundle, cancel)
            return result.succeeded, "" if result.succeeded else failures_text(result)

        self.stager.start(effect.wave, wave.site, work)

    def _collect_staging(self, *, wait: bool, cancel: bool = False) -> bool:
        """Journal a finished staging run (True when one was)."""
        outcome = self.stager.collect(wait=wait, cancel=cancel)
        if outcome is None:
            return False
        staged = self._run().progress.staged
        before = staged.get(outcome.wave) or Staged(digest=None)
        done = before.model_copy(update={"ready": outcome.ok, "seconds": outcome.seconds})
        self.j.update_progress(self.run_id, {"staged": {**staged, outcome.wave: done}})
        self.j.record(self.run_id, "stage", site=outcome.site,
                      data={"wave": outcome.wave, "state": "ready" if outcome.ok else "failed",
                            "seconds": outcome.seconds, "detail": outcome.detail})
        self._say(f"wave {outcome.wave} ({outcome.site}): staged in {outcome.seconds:.1f}s" if outcome.ok else
                  f"wave {outcome.wave} ({outcome.site}): staging failed ({outcome.detail or 'cancelled'}); "
                  "its preparation runs in its turn")
        return True

    def _end_staging(self) -> None:
        """The run has ended: staging stops, and a staged site the run never reached loses the
        staged release (live nowhere there)."""
        self._collect_staging(wait=True, cancel=True)
        run = self._run()
        view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
        for effect in unstaged_left(view, self.plan):
            wave = self._wave(effect.wave)
            try:
                result = self._effect("unstage", wave.site, lambda w=wave: self.ports.site_ops.unstage(  # type: ignore[misc]
                    w.site, w.to_release))
                ok, why = result.succeeded, failures_text(result)
            except CallfleetError as exc:
                ok, why = False, exc.message
            staged = self._run().progress.staged
            self.j.update_progress(self.run_id, {"staged": {**staged, effect.wave: staged[effect.wave].model_copy(
                update={"removed": True})}})
            self._say(f"wave {effect.wave} ({wave.site}): staged {wave.to_release} removed" if ok else
                      f"wave {effect.wave} ({wave.site}): could not remove the staged {wave.to_release}: {why}")

    # -- phase handlers ----------------------------------------------------------------
    def _halt(self, reason: str, *, code: int, rollback: bool, run: Run,
              evidence: dict[str, Any] | None = None) -> None:
        if rollback:
            self._go(Phase.ROLLING_BACK, progress={"halt_reason": reason, "exit_code": code}, data=evidence,
                     outcome=reason)
        else:
            self._go(Phase.HALTED, progress={"halt_reason": reason, "exit_code": code}, data=evidence, outcome=reason)
            self._alert("rollout_stuck", run, reason)

    def _preflight(self, run: Run) -> None:
        estate = self.ports.estate
        now = datetime.fromtimestamp(self.ports.clock(), UTC)
        freeze = active_freeze(self.policy, now)
        if freeze is not None:
            self._halt(f"freeze window in force ({freeze.reason or 'no reason given'}): nothing changed",
                       code=ExitCode.REMOTE, rollback=False, run=run)
            return
        try:
            bundle = self._bundle()
            require_verified(bundle)
            # the verified content, named once for the run: every wave checks it again
            self.j.update_progress(self.run_id, {"bundle_digest": bundle_digest(bundle)})
            self._effect("reachability", None, lambda: self.prober.reachable(estate.hosts))
            weights = {name: st.weight for name, st in self.ports.site_ops.steering.state().items()}
        except CallfleetError as exc:
            self._halt(f"preflight: {exc.message}", code=exc.exit_code, rollback=False, run=run)
            return
        if not self.plan.waves:
            self._go(Phase.COMPLETED, progress={"original_weights": weights}, outcome="nothing to change")
            return
        self.j.update_progress(self.run_id, {"original_weights": weights})
        self._go(wave_start(self.plan, 1, run.progress), wave=1, site=self._wave(1).site)

    def _prepare(self, run: Run) -> Outcome | None:
        wave = self._wave(run.wave)
        freeze = active_freeze(self.policy, datetime.fromtimestamp(self.ports.clock(), UTC))
        if freeze is not None:
            return self._waiting(run, f"freeze window in force ({freeze.reason}); wave {run.wave} waits", 60.0)
        try:
            bundle = self._same_bundle(run)
        except CallfleetError as exc:
            self._halt(f"wave {run.wave} ({wave.site}): {exc.message}", code=exc.exit_code, rollback=False, run=run)
            return None
        view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
        if staged_ready(view):
            self._say(f"wave {run.wave} ({wave.site}): staged earlier, preflight and install done")
            self._go(Phase.DRAINING, site=wave.site)
            return None
        result = self._effect("preflight", wave.site,
                              lambda: self.ports.site_ops.preflight(wave.site, wave.to_release, bundle))
        if not result.succeeded:
            self._halt(f"preflight of {wave.site} failed (nothing switched): {failures_text(result)}",
                       code=ExitCode.REMOTE, rollback=False, run=run)
            return None
        self._go(Phase.DRAINING, site=wave.site)
        return None

    def _bundle(self) -> Path:
        """The target's bundle (InvalidInput when the store does not hold it)."""
        if self.ports.bundle is None:
            raise InvalidInput(f"no bundle for release {self.plan.target} in the store: a wave cannot install it")
        return self.ports.bundle

    def _same_bundle(self, run: Run) -> Path:
        """The bundle, unchanged since the run began: one changed between waves must never reach
        another site (InvalidInput)."""
        expected = run.progress.bundle_digest
        bundle = self._bundle()
        require_unchanged(bundle, str(expected) if expected else None)
        return bundle

    def _step(self, run: Run, name: str, fn: Callable[[str], Any], nxt: Phase) -> None:
        wave = self._wave(run.wave)
        try:
            self._effect(name, wave.site, lambda: fn(wave.site))
        except CallfleetError as exc:
            self._halt(f"{name} of {wave.site} failed: {exc.message}",
                       code=ExitCode.ROLLED_BACK, rollback=True, run=run)
            return
        self._go(nxt, site=wave.site)

    def _drain(self, run: Run) -> None:
        # A staged site is the run's from its own drain on: its rollback, not unstaging, answers for it.
        staged = run.progress.staged.get(run.wave)
        if staged is not None and not staged.taken:
            self.j.update_progress(self.run_id, {"staged": {**run.progress.staged,
                                                            run.wave: staged.model_copy(update={"taken": True})}})
        self._step(run, "drain", self.ports.site_ops.drain, Phase.SWITCHING)

    def _switch(self, run: Run) -> None:
        wave = self._wave(run.wave)
        digest = run.progress.bundle_digest
        result = self._effect("switch", wave.site, lambda: self.ports.site_ops.switch(
            wave.site, wave.to_release, digest=str(digest) if digest else None))
        for host, hr in result.hosts.items():
            self.j.record(self.run_id, "host", site=wave.site,
                          data={"host": host, "changed": hr.changed, "failed": hr.failed + hr.unreachable})
        if not result.succeeded:
            self._halt(f"switch of {wave.site} to {wave.to_release} failed: {failures_text(result)}",
                       code=ExitCode.ROLLED_BACK, rollback=True, run=run)
            return
        self._go(Phase.POSTCHECKING, site=wave.site)

    def _postcheck(self, run: Run) -> None:
        wave = self._wave(run.wave)
        checks = self._effect("post-check", wave.site,
                              lambda: self.ports.site_ops.postcheck(wave.site, wave.to_release))
        bad = [f"{c.host}: {c.check}: {c.detail}" for c in checks if not c.ok]
        if bad:
            self._halt(f"post-checks of {wave.site} failed: {'; '.join(bad)}",
                       code=ExitCode.ROLLED_BACK, rollback=True, run=run)
            return
        self._go(Phase.GATING, site=wave.site)

    def _gate(self, run: Run) -> None:
        wave = self._wave(run.wave)
        upgraded = [w.site for w in self.plan.waves[: run.wave - 1]]
        try:
            result = self._effect("gate", wave.site, lambda: self.gate.judge(
                site=wave.site, upgraded=upgraded, from_release=wave.from_releases[0], to_release=wave.to_release,
                on_stage=lambda s: self._say(
                    f"wave {run.wave} ({wave.site}): gate stage {s.stage}: {s.verdict} ({s.calls} calls)")))
        except CallfleetError as exc:
            self._halt(f"gate of {wave.site} could not run: {exc.message}",
                       code=ExitCode.INCONCLUSIVE, rollback=True, run=run)
            return
        self.j.record(self.run_id, "gate", site=wave.site, data=result.model_dump(mode="json"))
        if result.verdict == Verdict.PASS:
            self._go(Phase.STEPPING, site=wave.site, progress=run.progress.wave_change(run.wave, step=0))
            return
        reason = f"gate {result.verdict} on {wave.site}: {'; '.join(result.reasons[:3])}"
        if result.verdict == Verdict.INCONCLUSIVE:
            self._inconclusive(run, reason)
            return
        self._halt(reason, code=ExitCode.ROLLED_BACK, rollback=True, run=run, evidence={"gate": result.verdict.value})
        self._alert("gate_failed", self._run(), "; ".join(result.reasons[:5]))

    def _inconclusive(self, run: Run, reason: str) -> None:
        """Record the verdict: `decide` asks for its attribution before anything is rolled back."""
        pending = Inconclusive(wave=run.wave, phase=run.phase, reason=reason)
        self.j.update_progress(self.run_id, {"inconclusive": pending})
        self._say(f"wave {run.wave}: {reason}")

    def _attribute(self, run: Run) -> None:
        """Does a site this run upgraded earlier explain an inconclusive verdict? The fleet guard
        probes and judges at once: a culprit is drained and the run turns to its fleet rollback
        (`decide`); with none, the candidate is the suspect after all (rolled back, exit 8)."""
        pending = run.progress.inconclusive
        if pending is None:  # decide asks for this effect only with one
            raise CallfleetError(f"rollout {self.run_id}: attribution without a verdict (a bug)")
        wave = self._wave(run.wave)
        if run.phase == Phase.STEPPING:
            # the candidate takes live calls in its steps: out of traffic while the guard looks
            self._effect("drain", wave.site, lambda: self.ports.site_ops.drain(wave.site))
        view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
        earlier = [s for s in guarded_sites(view, self.plan)[0] if s != wave.site]
        guard = self.guard
        if earlier and guard is not None:
            self._say(f"wave {run.wave} ({wave.site}): inconclusive; does {', '.join(earlier)} explain it? "
                      "the fleet guard looks")
            if self._effect("attribute", wave.site, guard.attribute):
                return  # the guard named a culprit: decide turns the run to the fleet rollback
            why = f"the fleet guard found no fault on {', '.join(earlier)}, upgraded before it"
        elif earlier:
            why = f"no fleet guard to tell whether {', '.join(earlier)}, upgraded before it, explains it"
        else:
            why = "no site was upgraded before it"
        reason = f"{pending.reason}; {why}"
        self.j.update_progress(self.run_id, {"inconclusive": pending.model_copy(update={"checked": True,
                                                                                        "reason": reason})})
        self._alert("inconclusive_pause", self._run(), reason)

    def _live_steps(self, run: Run) -> None:
        wave = self._wave(run.wave)
        full = run.progress.original_weights.get(wave.site, 100)
        if self.ports.metrics is None:
            self._halt("no metrics provider: live steps cannot be judged",
                       code=ExitCode.INCONCLUSIVE, rollback=True, run=run)
            return
        start = run.progress.wave(run.wave).step

        def on_step(index: int, percent: int) -> None:
            self.j.update_progress(self.run_id, self._run().progress.wave_change(run.wave, step=index))
            self.j.record(self.run_id, "traffic-step", site=wave.site, data={"step": index, "percent": percent})
            self._say(f"wave {run.wave} ({wave.site}): live traffic {percent}%")

        live = self.policy.gate.live_steps.model_copy(update={"weights": tuple(s.weight for s in wave.traffic_steps)}) \
            if wave.traffic_steps else self.policy.gate.live_steps
        try:
            result = self._effect("live-steps", wave.site, lambda: run_steps(
                site=wave.site, full_weight=full, policy=live, steering=self.ports.site_ops.steering,
                metrics=self.ports.metrics, start_step=start, on_step=on_step,  # type: ignore[arg-type]
                sleep=self.ports.sleep))
        except CallfleetError as exc:
            self._halt(f"live steps of {wave.site} could not be judged: {exc.message}",
                       code=ExitCode.INCONCLUSIVE, rollback=True,
                       run=run)
            return
        self.j.record(self.run_id, "gate", site=wave.site, data=result.model_dump(mode="json"))
        reason = f"live steps {result.verdict} on {wave.site}: {'; '.join(result.reasons[:3])}"
        if result.verdict == Verdict.INCONCLUSIVE:
            self._inconclusive(run, reason)
            return
        if result.verdict != Verdict.PASS:
            self._halt(reason, code=ExitCode.ROLLED_BACK, rollback=True, run=run)
            self._alert("gate_failed", self._run(), "; ".join(result.reasons))
            return
        self._go(Phase.BAKING, site=wave.site,
                 progress=run.progress.wave_change(run.wave, bake_started=self.ports.clock()))

    def _health(self, run: Run) -> Outcome | None:
        """After the bake (`decide` waited it out): probe the site, judge the SER floor."""
        wave = self._wave(run.wave)
        try:
            report = self._effect("health", wave.site,
                                  lambda: self.prober.probe(wave.site, calls=self.ports.health_calls))
        except CallfleetError as exc:
            self._halt(f"health check of {wave.site} after the bake failed: {exc.message}", code=ExitCode.ROLLED_BACK,
                       rollback=True, run=run)
            return None
        seq = self.policy.gate.sequential
        # The floor judged statistically at this wave's share of the rollout's false-FAIL
        # budget, not "any failed call": background failures must not roll back a good release.
        judged = judge_floor(((n.number, n.attempted, n.failed) for n in report.numbers), floor=seq.ser_floor,
                             alpha=split(seq, waves=len(self.plan.waves), numbers=len(report.numbers)).per_test)
        if not judged.healthy:
            bad = [judged.describe(c) for c in judged.below]
            self._halt(f"{wave.site} unhealthy after the bake: {', '.join(bad)}",
                       code=ExitCode.ROLLED_BACK, rollback=True, run=run,
                       evidence={"bake_floor": judged.model_dump(mode="json")})
            return None
        self._go(Phase.WAVE_DONE, site=wave.site)
        return None

    def _rollback(self, run: Run) -> None:
        wave = self._wave(run.wave)
        ops = self.ports.site_ops
        back_to = wave.from_releases[0]
        result = self._effect("rollback", wave.site, lambda: ops.switch(wave.site, back_to))
        if not result.succeeded:
            # keep the site drained: no live call may meet a broken site
            self.j.update_progress(self.run_id, {"exit_code": ExitCode.ROLLBACK_FAILED})
            self._go(Phase.HALTED, outcome=f"ROLLBACK FAILED on {wave.site}: {failures_text(result)}; "
                                           "the site stays drained")
            self._alert("rollout_stuck", self._run(), f"rollback of {wave.site} failed")
            return
        self._restore_traffic(run, wave.site)
        aborting = run.progress.abort_requested
        reason = run.progress.halt_reason or "rolled back"
        self._go(Phase.ABORTED if aborting else Phase.HALTED, site=wave.site,
                 outcome=f"aborted by {aborting}; {wave.site} back on {back_to}" if aborting
                 else f"{reason}; {wave.site} rolled back to {back_to}, traffic restored")
        self._alert("rolled_back", self._run(), f"{wave.site} rolled back to {back_to}")

    def _restore_traffic(self, run: Run, site: str) -> None:
        """The site's weight from before the run, and back in traffic."""
        full = run.progress.original_weights.get(site, 100)

        def restore() -> None:
            self.ports.site_ops.steering.set_weight(site, full)
            self.ports.site_ops.undrain(site)

        self._effect("restore traffic", site, restore)

    def _fleet_rollback(self, run: Run) -> None:
        """The next site of the fleet rollback: drained, back on its from-release, traffic restored.

        Idempotent like every effect: after a kill -9 the site at the head of the queue is done
        again (draining a drained site and switching to the release it runs change nothing)."""
        fleet = run.progress.fleet
        if fleet is None or not fleet.queue:  # decide asks for this effect only with a queue
            raise CallfleetError(f"rollout {self.run_id}: fleet rollback without a queue (a bug)")
        site = fleet.queue[0]
        back_to = next(w for w in self.plan.waves if w.site == site).from_releases[0]
        ops = self.ports.site_ops
        self._say(f"fleet rollback ({fleet.reason}): {site} back to {back_to}, "
                  f"{len(fleet.queue) - 1} more after it")
        try:
            self._effect("fleet drain", site, lambda: ops.drain(site))
            result = self._effect("fleet rollback", site, lambda: ops.switch(site, back_to))
            ok, why = result.succeeded, failures_text(result)
        except CallfleetError as exc:
            ok, why = False, exc.message
        if ok:
            self._restore_traffic(run, site)
            change = fleet.model_copy(update={"queue": fleet.queue[1:], "done": (*fleet.done, site)})
        else:
            # keep it drained: no live call may meet a site in an unknown state
            change = fleet.model_copy(update={"queue": fleet.queue[1:], "failed": (*fleet.failed, site)})
        self.j.update_progress(self.run_id, {"fleet": change})
        if ok:
            self._alert("rolled_back", self._run(), f"{site} rolled back to {back_to} ({fleet.reason})", site=site)
        else:
            self._alert("rollout_stuck", self._run(), f"fleet rollback of {site} failed: {why}; left drained",
                        site=site)

    def _alert(self, kind: str, run: Run, detail: str, *, site: str | None = None) -> None:
        if self.ports.alert is None:
            return
        wave = next((w for w in self.plan.waves if w.site == site), None) if site else \
            (self._wave(run.wave) if run.wave else None)
        try:
            self.ports.alert(kind, {"run": self.run_id, "site": wave.site if wave else None,
                                    "from": wave.from_releases[0] if wave else None, "to": self.plan.target,
                                    "detail": detail, "phase": run.phase.value})
        except Exception as exc:  # an alert channel must never stop a rollback
            self.j.record(self.run_id, "alert-error", data={"error": str(exc)[:300]})
