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


def run_steps(*, site: str, full_weight: int, policy: LiveStepsPolicy, steering: TrafficSteering,
              metrics: MetricsProvider, start_step: int = 0,
              on_step: Callable[[int, int], None] | None = None,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> StageResult:
    """Undrain in the policy's weight steps from `start_step`, baking and judging each.

    `on_step(index, weight)` is called before each step (the journal records it, so a
    resumed run starts again at the step it was in)."""
    t0 = time.monotonic()
    metrics.check()
    windows = []
    total = LiveWindow(site=site, window_s=0, attempts=0, answered=0, failed=0, failure_ratio=None,
                       srd_p50_ms=None, srd_p95_ms=None, queries={})
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
        window = metrics.site_window(site=site, window_s=max(policy.bake_s, 1.0),
                                     end=started + max(policy.bake_s, 1.0))
        windows.append({"step": index, "percent": percent, "weight": weight, **window.model_dump()})
        attempts = total.attempts + window.attempts
        failed = total.failed + window.failed
        total = total.model_copy(update={"attempts": attempts, "failed": failed,
                                         "failure_ratio": failed / attempts if attempts else None,
                                         "srd_p95_ms": max(filter(None, (total.srd_p95_ms, window.srd_p95_ms)),
                                                           default=None)})
        verdict, reasons = judge_window(window, policy, final=False)
        if verdict == Verdict.FAIL:
            return StageResult(stage="live-steps", verdict=verdict,
                               reasons=tuple(f"at {percent}%: {r}" for r in reasons), calls=int(total.attempts),
                               seconds=round(time.monotonic() - t0, 3),
                               evidence={"steps": windows})
    verdict, reasons = judge_window(total, policy, final=True)
    return StageResult(stage="live-steps", verdict=verdict, reasons=tuple(reasons), calls=int(total.attempts),
                       seconds=round(time.monotonic() - t0, 3), evidence={"steps": windows})
