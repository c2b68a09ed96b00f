"""The one impure loop: drive a run through the state machine, journalling around every effect.

Each phase handler is idempotent, so resuming after a kill -9 simply runs the handler of
the phase the journal says the run is in: a drain is drained again, a switch re-run
(Ansible completes what was half done), a gate re-run from its first stage (a gate is
never skipped), a rollback re-run. A completed wave is never run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import CallfleetError
from orchestrator.estate.model import Estate
from orchestrator.gate.live import run_steps
from orchestrator.gate.runner import choose_baselines, run_gate
from orchestrator.gate.sequential.budget import split
from orchestrator.gate.sequential.floor import judge_floor
from orchestrator.gate.verdict import Verdict
from orchestrator.metrics.provider import MetricsProvider
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.probe.runner import check_reachable, probe_site
from orchestrator.release.bundle import bundle_digest, require_unchanged, require_verified
from orchestrator.rollout.journal import Journal, Run
from orchestrator.rollout.machine import SITE_IN_FLIGHT, TERMINAL, Phase
from orchestrator.rollout.plan import Plan, Wave, active_freeze
from orchestrator.site.ops import SiteOps, failures_text

OutcomeKind = Literal["completed", "halted", "aborted", "waiting"]
# Exit codes of upgrade/advance/resume (see README): completed 0, halted after a rollback 6,
# halted on an inconclusive gate 8, halted before touching anything 4, waiting 10.
EXIT_WAITING = 10


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
    bundle: Path
    metrics: MetricsProvider | None
    alert: Callable[[str, dict[str, Any]], None] | None = None
    progress: Callable[[str], None] | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    health_calls: int = 20
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

    def _wave_start(self, index: int, run: Run) -> Phase:
        wave = self._wave(index)
        approved = str(index) in run.progress.get("approvals", {})
        if wave.approval_required and not approved:
            return Phase.AWAITING_APPROVAL
        if wave.not_before_fleet_bake_s > 0:
            return Phase.WAITING_FLEET_BAKE
        return Phase.PREPARING

    def _waiting(self, run: Run, message: str, seconds: float | None) -> Outcome | None:
        """Sleep (attended) or return a waiting outcome (CI)."""
        if self.wait == "return" or seconds is None:
            return Outcome(run=self.run_id, kind="waiting", phase=run.phase, wave=run.wave, message=message,
                           exit_code=EXIT_WAITING)
        self._say(message)
        self.ports.sleep(max(0.0, min(seconds, 5.0)))
        return None

    # -- the loop --------------------------------------------------------------------
    def drive(self) -> Outcome:
        """Run handlers until the run ends or must wait."""
        self.j.take_lease(self.run_id)
        try:
            for _ in range(self.max_actions):
                run = self._run()
                if run.phase in TERMINAL:
                    return self._final(run)
                outcome = self._handle(run)
                if outcome is not None:
                    return outcome
            raise CallfleetError(f"rollout {self.run_id}: gave up after {self.max_actions} actions (a bug)")
        finally:
            self.j.drop_lease(self.run_id)

    def _final(self, run: Run) -> Outcome:
        kind: OutcomeKind = {Phase.COMPLETED: "completed", Phase.ABORTED: "aborted"}.get(run.phase, "halted")  # type: ignore[assignment]
        code = 0 if kind in ("completed", "aborted") else int(run.progress.get("exit_code", 6))
        return Outcome(run=self.run_id, kind=kind, phase=run.phase, wave=run.wave,
                       message=run.outcome or kind, exit_code=code)

    def _handle(self, run: Run) -> Outcome | None:
        p = run.phase
        who = run.progress.get("abort_requested")
        if who and p not in SITE_IN_FLIGHT:
            self._go(Phase.ABORTED, outcome=f"aborted by {who}")
            return None
        if who and p != Phase.ROLLING_BACK:
            self._go(Phase.ROLLING_BACK, progress={"halt_reason": f"aborted by {who}"})
            return None
        if p == Phase.PENDING:
            self._go(Phase.PREFLIGHT)
        elif p == Phase.PREFLIGHT:
            self._preflight(run)
        elif p == Phase.AWAITING_APPROVAL:
            wave = self._wave(run.wave)
            if str(run.wave) not in run.progress.get("approvals", {}):
                return Outcome(run=self.run_id, kind="waiting", phase=p, wave=run.wave,
                               message=f"wave {run.wave} ({wave.site}) needs an approval: "
                                       f"callfleet rollout approve {self.run_id} --wave {run.wave}",
                               exit_code=EXIT_WAITING)
            nxt = Phase.WAITING_FLEET_BAKE if wave.not_before_fleet_bake_s > 0 else Phase.PREPARING
            self._go(nxt, site=wave.site)
        elif p == Phase.WAITING_FLEET_BAKE:
            wave = self._wave(run.wave)
            since = float(run.progress.get("fleet_done_at", self.ports.clock()))
            left = since + wave.not_before_fleet_bake_s - self.ports.clock()
            if left > 0:
                return self._waiting(run, f"reserve {wave.site}: the new release bakes fleet-wide, "
                                          f"{left:.0f}s left", left)
            self._go(Phase.PREPARING, site=wave.site)
        elif p == Phase.PREPARING:
            return self._prepare(run)
        elif p == Phase.DRAINING:
            self._step(run, "drain", self.ports.site_ops.drain, Phase.SWITCHING)
        elif p == Phase.SWITCHING:
            self._switch(run)
        elif p == Phase.POSTCHECKING:
            self._postcheck(run)
        elif p == Phase.GATING:
            self._gate(run)
        elif p == Phase.STEPPING:
            self._live_steps(run)
        elif p == Phase.BAKING:
            return self._bake(run)
        elif p == Phase.WAVE_DONE:
            self._wave_done(run)
        elif p == Phase.ROLLING_BACK:
            self._rollback(run)
        return None

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
                       code=4, rollback=False, run=run)
            return
        try:
            require_verified(self.ports.bundle)
            # the verified content, named once for the run: every wave checks it again
            self.j.update_progress(self.run_id, {"bundle_digest": bundle_digest(self.ports.bundle)})
            self._effect("reachability", None, lambda: check_reachable(estate, estate.hosts))
            weights = {name: st.weight for name, st in self.ports.site_ops.steering.state().items()}
        except CallfleetError as exc:
            self._halt(f"preflight: {exc.message}", code=exc.exit_code, rollback=False, run=run)
            return
        if not self.plan.waves:
            self._go(Phase.COMPLETED, progress={"original_weights": weights}, outcome="nothing to change")
            return
        self.j.update_progress(self.run_id, {"original_weights": weights})
        self._go(self._wave_start(1, run), wave=1, site=self._wave(1).site)

    def _prepare(self, run: Run) -> Outcome | None:
        wave = self._wave(run.wave)
        freeze = active_freeze(self.policy, datetime.fromtimestamp(self.ports.clock(), UTC))
        if freeze is not None:
            return self._waiting(run, f"freeze window in force ({freeze.reason}); wave {run.wave} waits", 60.0)
        try:
            self._same_bundle(run)
        except CallfleetError as exc:
            self._halt(f"wave {run.wave} ({wave.site}): {exc.message}", code=exc.exit_code, rollback=False, run=run)
            return None
        result = self._effect("preflight", wave.site,
                              lambda: self.ports.site_ops.preflight(wave.site, wave.to_release, self.ports.bundle))
        if not result.succeeded:
            self._halt(f"preflight of {wave.site} failed (nothing switched): {failures_text(result)}",
                       code=4, rollback=False, run=run)
            return None
        self._go(Phase.DRAINING, site=wave.site)
        return None

    def _same_bundle(self, run: Run) -> None:
        """A bundle changed between waves must never reach another site (InvalidInput)."""
        expected = run.progress.get("bundle_digest")
        require_unchanged(self.ports.bundle, str(expected) if expected else None)

    def _step(self, run: Run, name: str, fn: Callable[[str], Any], nxt: Phase) -> None:
        wave = self._wave(run.wave)
        try:
            self._effect(name, wave.site, lambda: fn(wave.site))
        except CallfleetError as exc:
            self._halt(f"{name} of {wave.site} failed: {exc.message}", code=6, rollback=True, run=run)
            return
        self._go(nxt, site=wave.site)

    def _switch(self, run: Run) -> None:
        wave = self._wave(run.wave)
        digest = run.progress.get("bundle_digest")
        result = self._effect("switch", wave.site, lambda: self.ports.site_ops.switch(
            wave.site, wave.to_release, digest=str(digest) if digest else None))
        for host, hr in result.hosts.items():
            self.j.record(self.run_id, "host", site=wave.site,
                          data={"host": host, "changed": hr.changed, "failed": hr.failed + hr.unreachable})
        if not result.succeeded:
            self._halt(f"switch of {wave.site} to {wave.to_release} failed: {failures_text(result)}",
                       code=6, rollback=True, run=run)
            return
        self._go(Phase.POSTCHECKING, site=wave.site)

    def _postcheck(self, run: Run) -> None:
        wave = self._wave(run.wave)
        checks = self._effect("post-check", wave.site,
                              lambda: self.ports.site_ops.postcheck(wave.site, wave.to_release))
        bad = [f"{c.host}: {c.check}: {c.detail}" for c in checks if not c.ok]
        if bad:
            self._halt(f"post-checks of {wave.site} failed: {'; '.join(bad)}", code=6, rollback=True, run=run)
            return
        self._go(Phase.GATING, site=wave.site)

    def _gate(self, run: Run) -> None:
        wave = self._wave(run.wave)
        done_sites = [w.site for w in self.plan.waves[: run.wave - 1]]
        try:
            count = self.policy.gate.canary.baseline_sites
            others = len(self.ports.estate.sites) - 1 - len(done_sites)
            # untouched sites first; the last waves (the reserve) compare with sites already
            # proven on the new release, since no untouched site is left
            baselines = choose_baselines(self.ports.estate, wave.site, count,
                                         exclude=done_sites if others >= count else (),
                                         prefer_release=wave.from_releases[0])
            result = self._effect("gate", wave.site, lambda: run_gate(
                estate=self.ports.estate, site=wave.site, policy=self.policy.gate, baselines=baselines,
                releases=(wave.to_release,), on_stage=lambda s: self._say(
                    f"wave {run.wave} ({wave.site}): gate stage {s.stage}: {s.verdict} ({s.calls} calls)")))
        except CallfleetError as exc:
            self._halt(f"gate of {wave.site} could not run: {exc.message}", code=8, rollback=True, run=run)
            return
        self.j.record(self.run_id, "gate", site=wave.site, data=result.model_dump(mode="json"))
        if result.verdict == Verdict.PASS:
            self._go(Phase.STEPPING, site=wave.site, progress={f"wave{run.wave}_step": 0})
            return
        code = 6 if result.verdict == Verdict.FAIL else 8
        self._halt(f"gate {result.verdict} on {wave.site}: {'; '.join(result.reasons[:3])}", code=code,
                   rollback=True, run=run, evidence={"gate": result.verdict.value})
        self._alert("gate_failed" if result.verdict == Verdict.FAIL else "inconclusive_pause", self._run(),
                    "; ".join(result.reasons[:5]))

    def _live_steps(self, run: Run) -> None:
        wave = self._wave(run.wave)
        full = int(run.progress.get("original_weights", {}).get(wave.site, 100))
        if self.ports.metrics is None:
            self._halt("no metrics provider: live steps cannot be judged", code=8, rollback=True, run=run)
            return
        start = int(run.progress.get(f"wave{run.wave}_step", 0))

        def on_step(index: int, percent: int) -> None:
            self.j.update_progress(self.run_id, {f"wave{run.wave}_step": index})
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
            self._halt(f"live steps of {wave.site} could not be judged: {exc.message}", code=8, rollback=True,
                       run=run)
            return
        self.j.record(self.run_id, "gate", site=wave.site, data=result.model_dump(mode="json"))
        if result.verdict != Verdict.PASS:
            self._halt(f"live steps {result.verdict} on {wave.site}: {'; '.join(result.reasons[:3])}",
                       code=6 if result.verdict == Verdict.FAIL else 8, rollback=True, run=run)
            self._alert("gate_failed", self._run(), "; ".join(result.reasons))
            return
        self._go(Phase.BAKING, site=wave.site, progress={f"wave{run.wave}_bake_started": self.ports.clock()})

    def _bake(self, run: Run) -> Outcome | None:
        wave = self._wave(run.wave)
        started = float(run.progress.get(f"wave{run.wave}_bake_started", self.ports.clock()))
        left = started + wave.bake_s - self.ports.clock()
        if left > 0:
            return self._waiting(run, f"wave {run.wave} ({wave.site}): baking, {left:.0f}s left", left)
        try:
            report = self._effect("health", wave.site, lambda: probe_site(
                estate=self.ports.estate, site=self.ports.estate.site(wave.site), calls=self.ports.health_calls,
                rate=50))
        except CallfleetError as exc:
            self._halt(f"health check of {wave.site} after the bake failed: {exc.message}", code=6,
                       rollback=True, run=run)
            return None
        seq = self.policy.gate.sequential
        # The floor judged statistically at this wave's share of the rollout's false-FAIL
        # budget, not "any failed call": background failures must not roll back a good release.
        judged = judge_floor(((n.number, n.attempted, n.failed) for n in report.numbers), floor=seq.ser_floor,
                             alpha=split(seq, waves=len(self.plan.waves), numbers=len(report.numbers)).per_test)
        if not judged.healthy:
            bad = [judged.describe(c) for c in judged.below]
            self._halt(f"{wave.site} unhealthy after the bake: {', '.join(bad)}", code=6, rollback=True, run=run,
                       evidence={"bake_floor": judged.model_dump(mode="json")})
            return None
        self._go(Phase.WAVE_DONE, site=wave.site)
        return None

    def _wave_done(self, run: Run) -> None:
        wave = self._wave(run.wave)
        updates: dict[str, Any] = {"done_waves": [*run.progress.get("done_waves", []), run.wave]}
        nxt = run.wave + 1
        if wave.role != "reserve" and (nxt > len(self.plan.waves) or self._wave(nxt).role == "reserve"):
            updates["fleet_done_at"] = self.ports.clock()
        self.j.update_progress(self.run_id, updates)
        if nxt > len(self.plan.waves):
            self._go(Phase.COMPLETED, outcome=f"{len(self.plan.waves)} site(s) on {self.plan.target}")
            return
        self._go(self._wave_start(nxt, self._run()), wave=nxt, site=self._wave(nxt).site)

    def _rollback(self, run: Run) -> None:
        wave = self._wave(run.wave)
        ops = self.ports.site_ops
        back_to = wave.from_releases[0]
        result = self._effect("rollback", wave.site, lambda: ops.switch(wave.site, back_to))
        if not result.succeeded:
            # keep the site drained: no live call may meet a broken site
            self.j.update_progress(self.run_id, {"exit_code": 7})
            self._go(Phase.HALTED, outcome=f"ROLLBACK FAILED on {wave.site}: {failures_text(result)}; "
                                           "the site stays drained")
            self._alert("rollout_stuck", self._run(), f"rollback of {wave.site} failed")
            return
        full = int(run.progress.get("original_weights", {}).get(wave.site, 100))
        def restore() -> None:
            ops.steering.set_weight(wave.site, full)
            ops.undrain(wave.site)

        self._effect("restore traffic", wave.site, restore)
        aborting = run.progress.get("abort_requested")
        reason = run.progress.get("halt_reason", "rolled back")
        self._go(Phase.ABORTED if aborting else Phase.HALTED, site=wave.site,
                 outcome=f"aborted by {aborting}; {wave.site} back on {back_to}" if aborting
                 else f"{reason}; {wave.site} rolled back to {back_to}, traffic restored")
        self._alert("rolled_back", self._run(), f"{wave.site} rolled back to {back_to}")

    def _alert(self, kind: str, run: Run, detail: str) -> None:
        if self.ports.alert is None:
            return
        wave = self._wave(run.wave) if run.wave else None
        try:
            self.ports.alert(kind, {"run": self.run_id, "site": wave.site if wave else None,
                                    "from": wave.from_releases[0] if wave else None, "to": self.plan.target,
                                    "detail": detail, "phase": run.phase.value})
        except Exception as exc:  # an alert channel must never stop a rollback
            self.j.record(self.run_id, "alert-error", data={"error": str(exc)[:300]})
