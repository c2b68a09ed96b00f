"""Stage 5: live traffic steps. Pure judgement of a live window, and the stepping loop.

After the synthetic stages pass, the site gets its traffic back in weight steps (e.g.
1%, 10%, the full share), each baked while its live failure ratio and setup delay
are read from the metrics provider (Prometheus)."""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.gate.stages import StageResult
from orchestrator.gate.verdict import Verdict
from orchestrator.metrics.provider import LiveWindow, MetricsProvider
from orchestrator.policy.model import LiveStepsPolicy
from orchestrator.traffic.steering import TrafficSteering


def judge_window(window: LiveWindow, policy: LiveStepsPolicy, *, final: bool) -> tuple[Verdict, list[str]]:
    """FAIL on too many failures or too slow a setup; too few calls is only a verdict at the
    final (full-weight) step, where it is INCONCLUSIVE: no live evidence, no PASS."""
    reasons: list[str] = []
    if window.attempts >= max(1, policy.min_live_calls) or (window.failed and not final):
        ratio = window.failure_ratio or 0.0
        if ratio > policy.max_failure_ratio:
            reasons.append(f"live failure ratio {ratio:.1%} over {policy.max_failure_ratio:.1%} "
                           f"({window.failed:.0f} of {window.attempts:.0f} calls; codes {window.codes})")
        if window.srd_p95_ms is not None and window.srd_p95_ms > policy.srd_p95_max_ms:
            reasons.append(f"live SRD p95 {window.srd_p95_ms:.0f} ms over {policy.srd_p95_max_ms:.0f} ms")
        return (Verdict.FAIL if reasons else Verdict.PASS), reasons
    if final:
        return Verdict.INCONCLUSIVE, [f"too little live traffic: {window.attempts:.0f} calls < "
                                      f"{policy.min_live_calls} over the steps"]
    return Verdict.PASS, []


def _sum(site: str, windows: list[LiveWindow]) -> LiveWindow:
    """The steps' windows as one: counts add up, the worst step's SRD p95 stands."""
    attempts = sum(w.attempts for w in windows)
    failed = sum(w.failed for w in windows)
    return LiveWindow(site=site, window_s=sum(w.window_s for w in windows), attempts=attempts,
                      answered=sum(w.answered for w in windows), failed=failed,
                      failure_ratio=failed / attempts if attempts else None, srd_p50_ms=None,
                      srd_p95_ms=max((w.srd_p95_ms for w in windows if w.srd_p95_ms is not None), default=None),
                      queries={})


def run_steps(*, site: str, full_weight: int, policy: LiveStepsPolicy, steering: TrafficSteering,
              metrics: MetricsProvider, start_step: int = 0,
              on_step: Callable[[int, int], None] | None = None,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> StageResult:
    """Undrain in the policy's weight steps from `start_step`, baking and judging each.

    At full weight the bake goes on, in bake-sized slices up to `evidence_wait_s`, while
    fewer than `min_live_calls` were seen: a quiet hour is a reason to look longer, not
    to call the release good or to halt it. `on_step(index, weight)` is called before
    each step (the journal records it, so a resumed run starts again at that step)."""
    t0 = time.monotonic()
    metrics.check()
    evidence: list[dict[str, object]] = []
    windows: list[LiveWindow] = []

    def result(verdict: Verdict, reasons: tuple[str, ...]) -> StageResult:
        return StageResult(stage="live-steps", verdict=verdict, reasons=reasons,
                           calls=int(_sum(site, windows).attempts), seconds=round(time.monotonic() - t0, 3),
                           evidence={"steps": evidence})

    bake = max(policy.bake_s, 1.0)
    for index in range(start_step, len(policy.weights)):
        percent = policy.weights[index]
        weight = max(1, round(full_weight * percent / 100))
        if on_step:
            on_step(index, percent)
        steering.set_weight(site, weight)
        steering.undrain(site)
        started = clock()
        sleep(policy.bake_s + policy.metrics_lag_s)
        # judge exactly the step's bake, once the backend has scraped all of it
        baked = bake
        window = metrics.site_window(site=site, window_s=baked, end=started + baked)
        final = index == len(policy.weights) - 1
        while (final and _sum(site, [*windows, window]).attempts < policy.min_live_calls
               and baked - bake < policy.evidence_wait_s
               and judge_window(window, policy, final=False)[0] != Verdict.FAIL):
            more = min(bake, policy.evidence_wait_s - (baked - bake))
            sleep(more)
            baked += more
            window = metrics.site_window(site=site, window_s=baked, end=started + baked)
        windows.append(window)
        evidence.append({"step": index, "percent": percent, "weight": weight, **window.model_dump()})
        verdict, reasons = judge_window(window, policy, final=False)
        if verdict == Verdict.FAIL:
            return result(verdict, tuple(f"at {percent}%: {r}" for r in reasons))
    verdict, reasons = judge_window(_sum(site, windows), policy, final=True)
    return result(verdict, tuple(reasons))
