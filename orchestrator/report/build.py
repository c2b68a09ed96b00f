"""Journal events in, report out. Pure: no file, no clock.

Reads events exactly as the executor writes them (orchestrator/rollout/executor.py):
`transition` (data: `from`, plus the evidence of a halt), `before`/`after` around each
effect, `gate` (a GateResult, or a live-steps StageResult), `traffic-step`, `approval`,
`abort` and `alert-error`. Alert deliveries are not journalled (they live in the alert
store) and come in separately.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.alerting.models import Delivery
from orchestrator.errors import ExitCode
from orchestrator.gate.verdict import Verdict
from orchestrator.report.model import (
    AlertReport,
    Arm,
    DecisionKind,
    Finding,
    GateReport,
    HumanDecision,
    LiveStep,
    NumberComparison,
    PhaseSpan,
    PublicImpact,
    RollbackReport,
    RolloutReport,
    RunInfo,
    RunVerdict,
    StageReport,
    Statistic,
    StatKind,
    TrafficPoint,
    WaveReport,
    WaveState,
)
from orchestrator.rollout.journal import Event, Run
from orchestrator.rollout.machine import TERMINAL, Phase
from orchestrator.rollout.plan import Plan

POOLED = "all"
_RUN_VERDICT = {Phase.COMPLETED: RunVerdict.COMPLETED, Phase.HALTED: RunVerdict.HALTED,
                Phase.ABORTED: RunVerdict.ABORTED}


def build_report(run: Run, events: Sequence[Event], *, deliveries: Iterable[Delivery] = (),
                 alerts_source: str | None = None, alpha: float | None = None) -> RolloutReport:
    """The report of `run` from its events (oldest first). `alpha` is the gate policy's
    significance level, the boundary of the p-values (None: not known)."""
    plan = Plan.model_validate(run.plan)
    phases = _phases(events, run)
    gates = tuple(_gate(e, alpha) for e in events if e.kind == "gate")
    rollbacks = _rollbacks(events, run, plan)
    verdict = _RUN_VERDICT.get(run.phase, RunVerdict.IN_PROGRESS)
    exit_code = None if verdict == RunVerdict.IN_PROGRESS else (
        int(run.progress.exit_code or ExitCode.ROLLED_BACK) if verdict == RunVerdict.HALTED else 0)
    return RolloutReport(
        run=RunInfo(id=run.id, estate=plan.estate, target=run.target, actor=run.actor, created=run.created,
                    updated=run.updated, phase=run.phase, outcome=run.outcome, plan_digest=run.digest,
                    policy=run.policy),
        verdict=verdict, reason=run.outcome, exit_code=exit_code,
        waves=_waves(plan, run, phases, rollbacks), phases=phases,
        traffic=tuple(TrafficPoint(ts=e.ts, wave=e.wave, site=e.site or "", step=int(e.data.get("step", 0)),
                                   percent=int(e.data.get("percent", 0)))
                      for e in events if e.kind == "traffic-step"),
        gates=gates, rollbacks=rollbacks, decisions=_decisions(events),
        alerts=_alerts(events, deliveries), alerts_source=alerts_source,
        public=tuple(_public(g) for g in gates if any(s.live_steps for s in g.stages)),
        findings=_findings(gates, rollbacks, run, verdict))


def _phases(events: Sequence[Event], run: Run) -> tuple[PhaseSpan, ...]:
    starts = [e for e in events if e.kind in ("created", "transition")]
    spans = []
    for i, e in enumerate(starts):
        phase = Phase(e.phase)
        nxt = starts[i + 1].ts if i + 1 < len(starts) else None
        # a terminal phase is an instant; the last open phase runs on (None)
        end = e.ts if phase in TERMINAL else nxt
        data = {k: str(v) for k, v in e.data.items() if k not in ("from", "actor", "digest")}
        spans.append(PhaseSpan(phase=phase, wave=e.wave, site=e.site, start=e.ts, end=end, data=data))
    return tuple(spans)


def _waves(plan: Plan, run: Run, phases: Sequence[PhaseSpan],
           rollbacks: Sequence[RollbackReport]) -> tuple[WaveReport, ...]:
    done = set(run.progress.done_waves)
    rolled = {r.wave: r for r in rollbacks}
    out = []
    for w in plan.waves:
        mine = [p for p in phases if p.wave == w.index and p.phase not in TERMINAL]
        if w.index in rolled:  # a done wave too, when a fleet rollback took it back
            state = WaveState.ROLLED_BACK if rolled[w.index].succeeded else WaveState.HALTED
        elif w.index in done:
            state = WaveState.DONE
        elif w.index == run.wave and run.phase == Phase.ABORTED:
            state = WaveState.ABORTED
        elif w.index == run.wave and run.phase in TERMINAL:
            state = WaveState.HALTED
        elif w.index == run.wave and mine:
            state = WaveState.IN_PROGRESS
        else:
            state = WaveState.NOT_REACHED
        ends = [p.end for p in mine if p.end is not None]
        out.append(WaveReport(index=w.index, site=w.site, role=w.role, from_releases=tuple(w.from_releases),
                              to_release=w.to_release, planned_steps=tuple(s.weight for s in w.traffic_steps),
                              state=state, start=mine[0].start if mine else None,
                              end=max(ends) if ends and state != WaveState.IN_PROGRESS else None))
    return tuple(out)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _p_value(kind: StatKind, scope: str, p: Any, alpha: float | None) -> Statistic:
    value = _num(p)
    crossed = None if value is None or alpha is None else value < alpha
    return Statistic(kind=kind, scope=scope, value=value, boundary=alpha, crossed=crossed)


def _arm(n: Mapping[str, Any], side: str) -> Arm:
    return Arm(calls=int(n.get(f"{side}_calls", 0)), failed=int(n.get(f"{side}_failed", 0)),
               ser=_num(n.get(f"{side}_ser")), failures=dict(n.get(f"{side}_failures", {})),
               srd_p50_ms=_num(n.get(f"{side}_srd_p50_ms")), srd_p95_ms=_num(n.get(f"{side}_srd_p95_ms")))


def _sequential(looks: Any) -> dict[str, list[Statistic]]:
    """Per scope, each sequential test at the first look that crossed its FAIL boundary, else
    at the last look (evidence a stage journals as `looks`: gate/sequential's Look)."""
    out: dict[str, list[Statistic]] = {}
    if not isinstance(looks, list) or not looks:
        return out
    seen: dict[tuple[str, str], Statistic] = {}
    for look in looks:
        for t in look.get("tests", []):
            key = (str(t.get("kind")), str(t.get("scope")))
            if key in seen and seen[key].crossed:
                continue
            seen[key] = Statistic(kind=StatKind.SEQUENTIAL, scope=key[1], value=_num(t.get("log_e_fail")),
                                  boundary=_num(t.get("fail_boundary")), crossed=bool(t.get("crossed_fail")),
                                  second=int(look.get("second", 0)), detail=key[0])
    for (_, scope), stat in seen.items():
        out.setdefault(scope, []).append(stat)
    return out


def _stage(data: Mapping[str, Any], alpha: float | None, baselines: Sequence[str]) -> StageReport:
    ev = data.get("evidence", {})
    seq = _sequential(ev.get("looks"))
    numbers = []
    for n in ev.get("numbers", []):
        scope = str(n["number"])
        stats = [_p_value(StatKind.FISHER, scope, n.get("fisher_p"), alpha),
                 _p_value(StatKind.MANN_WHITNEY, scope, n.get("mannwhitney_p"), alpha), *seq.get(scope, [])]
        numbers.append(NumberComparison(number=scope, verdict=Verdict(n["verdict"]),
                                        reasons=tuple(n.get("reasons", ())), canary=_arm(n, "canary"),
                                        baseline=_arm(n, "baseline"),
                                        srd_shift_ms=_num(n.get("srd_shift_ms")), statistics=tuple(stats)))
    pooled = [*([_p_value(StatKind.POOLED_FISHER, POOLED, ev["pooled_fisher_p"], alpha)]
                if "pooled_fisher_p" in ev else []), *seq.get(POOLED, [])]
    steps = tuple(LiveStep(step=int(s.get("step", 0)), percent=int(s.get("percent", 0)),
                           weight=int(s.get("weight", 0)), attempts=float(s.get("attempts", 0)),
                           answered=float(s.get("answered", 0)), failed=float(s.get("failed", 0)),
                           failure_ratio=_num(s.get("failure_ratio")), srd_p95_ms=_num(s.get("srd_p95_ms")),
                           codes={str(k): float(v) for k, v in (s.get("codes") or {}).items()})
                  for s in ev.get("steps", []))
    verdict = Verdict(data["verdict"])
    return StageReport(stage=str(data["stage"]), verdict=verdict, reasons=tuple(data.get("reasons", ())),
                       calls=int(data.get("calls", 0)), seconds=float(data.get("seconds", 0.0)),
                       baseline_sites=tuple(ev.get("baseline_sites", baselines)), numbers=tuple(numbers),
                       pooled=tuple(pooled), live_steps=steps, failing=verdict != Verdict.PASS)


def _gate(e: Event, alpha: float | None) -> GateReport:
    d = e.data
    if "stages" in d:  # the synthetic stages: a GateResult
        baselines = tuple(d.get("baseline_sites", ()))
        stages = tuple(_stage(s, alpha, baselines) for s in d["stages"])
        return GateReport(wave=e.wave, site=e.site or str(d.get("site", "")), ts=e.ts, verdict=Verdict(d["verdict"]),
                          reasons=tuple(d.get("reasons", ())), baseline_sites=baselines, calls=int(d.get("calls", 0)),
                          stages=stages)
    stage = _stage(d, alpha, ())  # the live steps: one StageResult
    return GateReport(wave=e.wave, site=e.site or "", ts=e.ts, verdict=stage.verdict, reasons=stage.reasons,
                      baseline_sites=(), calls=stage.calls, stages=(stage,))


def _rollbacks(events: Sequence[Event], run: Run, plan: Plan) -> tuple[RollbackReport, ...]:
    return (*_site_rollbacks(events, run, plan), *_fleet_rollbacks(events, run, plan))


def _fleet_rollbacks(events: Sequence[Event], run: Run, plan: Plan) -> tuple[RollbackReport, ...]:
    """Each site a fleet rollback took back (its events carry the run's wave, not the site's)."""
    fleet = run.progress.fleet
    if fleet is None:
        return ()
    index = {w.site: w for w in plan.waves}
    out: dict[str, RollbackReport] = {}
    for i, e in enumerate(events):
        if e.kind != "before" or e.data.get("effect") != "fleet rollback" or e.site not in index:
            continue
        wave = index[e.site]
        restored = any(x.kind == "after" and x.data.get("effect") == "restore traffic" and x.site == e.site
                       for x in events[i + 1:])
        succeeded = True if e.site in fleet.done else False if e.site in fleet.failed else None
        out.setdefault(e.site, RollbackReport(  # a kill -9 repeats it: the first attempt's start
            wave=wave.index, site=e.site, reason=fleet.reason, to_release=wave.from_releases[0], started=e.ts,
            succeeded=succeeded, traffic_restored=restored, fleet=True))
    return tuple(out.values())


def _site_rollbacks(events: Sequence[Event], run: Run, plan: Plan) -> tuple[RollbackReport, ...]:
    out = []
    for i, e in enumerate(events):
        if e.kind != "transition" or e.phase != Phase.ROLLING_BACK:
            continue
        later = events[i + 1:]
        restored = any(x.kind == "after" and x.data.get("effect") == "restore traffic" and x.wave == e.wave
                       for x in later)
        left = any(x.kind == "transition" for x in later)
        wave = plan.waves[e.wave - 1] if 0 < e.wave <= len(plan.waves) else None
        # the halt's reason is the run's (one rollback per run: it ends the run)
        reason = run.progress.halt_reason or run.outcome or "rolled back"
        out.append(RollbackReport(wave=e.wave, site=e.site or (wave.site if wave else ""), reason=reason,
                                  to_release=wave.from_releases[0] if wave else None, started=e.ts,
                                  succeeded=True if restored else (False if left else None),
                                  traffic_restored=restored))
    return tuple(out)


def _decisions(events: Sequence[Event]) -> tuple[HumanDecision, ...]:
    out = []
    for e in events:
        if e.kind == "approval":
            out.append(HumanDecision(kind=DecisionKind.APPROVAL, by=str(e.data.get("by", "?")), ts=e.ts,
                                     wave=int(e.data["wave"]) if "wave" in e.data else None, site=e.site))
        elif e.kind == "abort":
            out.append(HumanDecision(kind=DecisionKind.ABORT, by=str(e.data.get("by", "?")), ts=e.ts,
                                     wave=e.wave or None, site=e.site))
    return tuple(out)


def _alerts(events: Sequence[Event], deliveries: Iterable[Delivery]) -> tuple[AlertReport, ...]:
    out = [AlertReport(kind=d.dedupe_key.rpartition(":")[2] or d.dedupe_key, audience=d.audience, channel=d.channel,
                       state=str(d.state), attempts=d.attempts, ts=d.created_at.timestamp(), error=d.error)
           for d in deliveries]
    out += [AlertReport(kind="alert", audience=None, channel=None, state="error", attempts=None, ts=e.ts,
                        error=str(e.data.get("error", "")))
            for e in events if e.kind == "alert-error"]
    return tuple(sorted(out, key=lambda a: a.ts))


def _public(g: GateReport) -> PublicImpact:
    steps = [s for st in g.stages for s in st.live_steps]
    return PublicImpact(wave=g.wave, site=g.site, attempts=sum(s.attempts for s in steps),
                        failed=sum(s.failed for s in steps))


def _findings(gates: Sequence[GateReport], rollbacks: Sequence[RollbackReport], run: Run,
              verdict: RunVerdict) -> tuple[Finding, ...]:
    out = []
    for g in gates:
        for s in g.stages:
            out.append(Finding(wave=g.wave, site=g.site, what=f"gate stage {s.stage}", verdict=str(s.verdict),
                               why=s.reasons or (f"{s.calls} calls, every check passed",)))
    guard = run.progress.guard
    if guard is not None:
        out.append(Finding(wave=None, site=guard.culprits[0], what="fleet guard",
                           verdict=f"named {', '.join(guard.culprits)}; drained {', '.join(guard.drained) or 'none'}",
                           why=guard.reasons))
    for r in rollbacks:
        state = {True: "rolled back, traffic restored", False: "ROLLBACK FAILED", None: "rolling back"}[r.succeeded]
        what = f"{'fleet ' if r.fleet else ''}rollback to {r.to_release}"
        out.append(Finding(wave=r.wave, site=r.site, what=what, verdict=state, why=(r.reason,)))
    out.append(Finding(wave=run.wave or None, site=None, what="rollout", verdict=str(verdict),
                       why=(run.outcome,) if run.outcome else ()))
    return tuple(out)
