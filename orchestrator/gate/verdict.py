"""Pure gate decisions: call counts and delays in, verdict with reasons out. No I/O.

Statistics as automated canary analysis does them: a one-sided Fisher exact test on
failure proportions (canary worse than baseline), a one-sided Mann-Whitney U test on
setup delays, each paired with a practical threshold so a statistically significant
but harmless difference (a fraction of a millisecond) never fails a good release;
plus absolute floors. Too little data is INCONCLUSIVE, never PASS; a failing baseline
makes the estate, not the release, the suspect: INCONCLUSIVE.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from orchestrator.policy.model import CanaryPolicy, SyntheticPolicy
from orchestrator.probe import metrics
from orchestrator.sipp.scenarios import CallStats


class Verdict(StrEnum):
    """A gate's (or a stage's) answer."""

    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


def combine(verdicts: list[Verdict]) -> Verdict:
    """FAIL beats INCONCLUSIVE beats PASS; nothing at all is INCONCLUSIVE."""
    if not verdicts:
        return Verdict.INCONCLUSIVE
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


class NumberJudgement(BaseModel):
    """The evidence and verdict for one emergency number."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    number: str
    verdict: Verdict
    reasons: tuple[str, ...]
    canary_calls: int
    canary_failed: int
    canary_ser: float | None
    canary_failures: dict[str, int]
    canary_srd_p50_ms: float | None
    canary_srd_p95_ms: float | None
    baseline_calls: int
    baseline_failed: int
    baseline_ser: float | None
    baseline_srd_p50_ms: float | None
    baseline_srd_p95_ms: float | None
    fisher_p: float | None
    mannwhitney_p: float | None
    srd_shift_ms: float | None


class Judgement(BaseModel):
    """A stage's verdict over every number, plus the pooled test."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    verdict: Verdict
    reasons: tuple[str, ...]
    numbers: tuple[NumberJudgement, ...]
    pooled_fisher_p: float | None
    calls: int


def _fisher_greater(c_fail: int, c_ok: int, b_fail: int, b_ok: int) -> float | None:
    if c_fail + c_ok == 0 or b_fail + b_ok == 0:
        return None
    return float(sps.fisher_exact([[c_fail, c_ok], [b_fail, b_ok]], alternative="greater").pvalue)


def _mwu_greater(canary: tuple[float, ...], baseline: tuple[float, ...]) -> float | None:
    if len(canary) < 5 or len(baseline) < 5:
        return None
    if len(set(canary) | set(baseline)) == 1:
        return 1.0  # identical constant samples: no shift at all
    return float(sps.mannwhitneyu(canary, baseline, alternative="greater").pvalue)


def _ineffective(s: CallStats) -> int:
    """Failed calls that count against the release (everything but 3xx redirects)."""
    return sum(n for code, n in s.failures.items() if not code.startswith("3"))


def judge_number(number: str, canary: CallStats, baseline: CallStats | None, *, synthetic: SyntheticPolicy,
                 canary_policy: CanaryPolicy) -> NumberJudgement:
    """Floors, enough data, and the canary-versus-baseline tests for one number."""
    reasons: list[str] = []
    verdict = Verdict.PASS
    c_ser = metrics.ser(canary)
    b_ser = metrics.ser(baseline) if baseline else None
    c_p95 = metrics.percentile(canary.srd_ms, 95)
    b_p95 = metrics.percentile(baseline.srd_ms, 95) if baseline else None
    c_p50 = metrics.percentile(canary.srd_ms, 50)
    b_p50 = metrics.percentile(baseline.srd_ms, 50) if baseline else None
    baseline_failing = b_ser is not None and b_ser < synthetic.ser_min
    fisher_p = mwu_p = shift = None

    def fail(reason: str) -> None:
        nonlocal verdict
        if baseline_failing:
            reasons.append(f"{reason}, but baseline also failing (SER {b_ser:.1%}): estate unhealthy")
            verdict = Verdict.FAIL if verdict == Verdict.FAIL else Verdict.INCONCLUSIVE
        else:
            reasons.append(reason)
            verdict = Verdict.FAIL

    if canary.attempted < synthetic.min_calls_per_number:
        reasons.append(f"too little data: {canary.attempted} calls < {synthetic.min_calls_per_number}")
        verdict = Verdict.INCONCLUSIVE
    if baseline is None or baseline.attempted < synthetic.min_calls_per_number:
        reasons.append("no baseline with enough calls in the same window")
        verdict = Verdict.FAIL if verdict == Verdict.FAIL else Verdict.INCONCLUSIVE
    if c_ser is not None and c_ser < synthetic.ser_min:
        codes = ", ".join(f"{k}x{v}" for k, v in sorted(canary.failures.items()))
        fail(f"SER {c_ser:.1%} below floor {synthetic.ser_min:.0%} ({codes})")
    if c_p95 is not None and c_p95 > synthetic.srd_p95_max_ms:
        if b_p95 is not None and b_p95 > synthetic.srd_p95_max_ms:
            reasons.append(f"SRD p95 {c_p95:.0f} ms over ceiling, but baseline too ({b_p95:.0f} ms): estate slow")
            verdict = Verdict.FAIL if verdict == Verdict.FAIL else Verdict.INCONCLUSIVE
        else:
            reasons.append(f"SRD p95 {c_p95:.0f} ms above ceiling {synthetic.srd_p95_max_ms:.0f} ms")
            verdict = Verdict.FAIL
    if baseline is not None:
        fisher_p = _fisher_greater(_ineffective(canary), canary.answered, _ineffective(baseline), baseline.answered)
        if fisher_p is not None and fisher_p < canary_policy.alpha:
            fail(f"failures significantly above baseline (Fisher p={fisher_p:.2g})")
        mwu_p = _mwu_greater(canary.srd_ms, baseline.srd_ms)
        if c_p50 is not None and b_p50 is not None:
            shift = c_p50 - b_p50
        # the shift must also exceed the baseline's own spread (p95 - p50): on a loaded machine
        # both sides jitter by tens of milliseconds, and a shift inside that noise is no regression
        spread = (b_p95 - b_p50) if b_p95 is not None and b_p50 is not None else 0.0
        needed = max(canary_policy.srd_shift_ms, spread)
        if mwu_p is not None and mwu_p < canary_policy.alpha and shift is not None and shift >= needed:
            reasons.append(f"setup delay +{shift:.0f} ms over baseline (Mann-Whitney p={mwu_p:.2g}, "
                           f"more than {needed:.0f} ms)")
            verdict = Verdict.FAIL
    return NumberJudgement(
        number=number, verdict=verdict, reasons=tuple(reasons), canary_calls=canary.attempted,
        canary_failed=canary.failed, canary_ser=c_ser, canary_failures=dict(canary.failures),
        canary_srd_p50_ms=c_p50, canary_srd_p95_ms=c_p95,
        baseline_calls=baseline.attempted if baseline else 0, baseline_failed=baseline.failed if baseline else 0,
        baseline_ser=b_ser, baseline_srd_p50_ms=b_p50, baseline_srd_p95_ms=b_p95,
        fisher_p=fisher_p, mannwhitney_p=mwu_p, srd_shift_ms=shift)


def judge_probe(canary: Mapping[str, CallStats], baseline: Mapping[str, CallStats], *,
                synthetic: SyntheticPolicy, canary_policy: CanaryPolicy) -> Judgement:
    """Judge every number, then the pooled failure counts (a few percent of failures spread
    over all numbers can pass each number's test yet be significant together)."""
    numbers = tuple(judge_number(n, canary[n], baseline.get(n), synthetic=synthetic,
                                 canary_policy=canary_policy) for n in canary)
    reasons = [f"{j.number}: {r}" for j in numbers for r in j.reasons]
    verdicts = [j.verdict for j in numbers]
    c_all = metrics.merge(canary.values())
    b_all = metrics.merge(baseline.values()) if baseline else None
    pooled = None
    healthy_baseline = all(j.verdict != Verdict.INCONCLUSIVE or "baseline" not in " ".join(j.reasons)
                           for j in numbers)
    if b_all is not None and healthy_baseline:
        pooled = _fisher_greater(_ineffective(c_all), c_all.answered, _ineffective(b_all), b_all.answered)
        if pooled is not None and pooled < canary_policy.alpha:
            reasons.append(f"all numbers: failures {_ineffective(c_all)}/{c_all.attempted} significantly above "
                           f"baseline {_ineffective(b_all)}/{b_all.attempted} (Fisher p={pooled:.2g})")
            verdicts.append(Verdict.FAIL)
    return Judgement(verdict=combine(verdicts), reasons=tuple(reasons), numbers=numbers,
                     pooled_fisher_p=pooled, calls=c_all.attempted + (b_all.attempted if b_all else 0))
