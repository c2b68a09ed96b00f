"""The gate's statistics and stopping rule on arrays: shared by the one-gate judge (`judge`) and
the many-gates replay (`batch`), so simulations measure exactly what the gate does.

Arrays end with a "number" axis of length K; the pooled scope is appended as index K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.gate.sequential import evidence
from orchestrator.gate.sequential.evidence import Side
from orchestrator.gate.sequential.model import Decision
from orchestrator.policy.sequential import SequentialPolicy

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Codes = npt.NDArray[np.int8]

# Decision codes in arrays (index into CODES)
CONTINUE, PASS, FAIL, INCONCLUSIVE = 0, 1, 2, 3
CODES = (Decision.CONTINUE, Decision.PASS, Decision.FAIL, Decision.INCONCLUSIVE)


@dataclass(frozen=True)
class Totals:
    """Cumulative counts, shape (..., K): the sufficient statistics of every test."""

    canary_trials: npt.NDArray[np.int64]
    canary_failures: npt.NDArray[np.int64]
    baseline_trials: npt.NDArray[np.int64]
    baseline_failures: npt.NDArray[np.int64]
    pairs: npt.NDArray[np.int64]
    above_harmless: npt.NDArray[np.int64]
    below_shift: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Statistics:
    """Log e-values at one look (or many). Comparative tests: (..., K+1), pooled last;
    floor tests: (..., K)."""

    failures_fail: Floats
    failures_pass: Floats
    srd_fail: Floats
    srd_pass: Floats
    floor_fail: Floats  # the canary's SER significantly below the floor
    baseline_floor: Floats  # the baseline's SER significantly below the floor: the estate is the suspect
    baseline_below_floor: Bools  # the baseline's observed SER below the floor (excuses a canary floor FAIL)

    def pass_statistics(self) -> Floats:
        """Every PASS-side statistic, (..., 2(K+1)): failures then setup delay."""
        return np.concatenate([self.failures_pass, self.srd_pass], axis=-1)


def _with_pooled(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.concatenate([x, x.sum(axis=-1, keepdims=True)], axis=-1)


def statistics(t: Totals, policy: SequentialPolicy) -> Statistics:
    """Every test's log e-values for these totals."""
    fc, nc = _with_pooled(t.canary_failures), _with_pooled(t.canary_trials)
    fb, nb = _with_pooled(t.baseline_failures), _with_pooled(t.baseline_trials)
    k = t.canary_trials.shape[-1]
    fail = evidence.two_sample(fc, nc, fb, nb, policy.failure_tolerance, Side.AT_MOST)
    # the regression that matters is larger for one number alone than for all numbers together
    per_number = evidence.two_sample(fc[..., :k], nc[..., :k], fb[..., :k], nb[..., :k],
                                     policy.number_failure_increase, Side.AT_LEAST)
    pooled = evidence.two_sample(fc[..., k:], nc[..., k:], fb[..., k:], nb[..., k:],
                                 policy.failure_increase, Side.AT_LEAST)
    passing = np.concatenate([per_number, pooled], axis=-1)
    pairs, above, below = _with_pooled(t.pairs), _with_pooled(t.above_harmless), _with_pooled(t.below_shift)
    # sign tests: with no shift, a pair's difference exceeds a non-negative threshold at most half
    # the time (canary and baseline delays exchangeable); crossing says the median shift is larger
    srd_fail = evidence.one_sample(above, pairs, 0.5, Side.AT_MOST)
    srd_pass = evidence.one_sample(below, pairs, 0.5, Side.AT_MOST)
    ceiling = 1.0 - policy.ser_floor  # the failure ratio the floor allows
    floor_fail = evidence.one_sample(t.canary_failures, t.canary_trials, ceiling, Side.AT_MOST)
    baseline_floor = evidence.one_sample(t.baseline_failures, t.baseline_trials, ceiling, Side.AT_MOST)
    below_floor = t.baseline_failures > ceiling * t.baseline_trials
    return Statistics(failures_fail=fail, failures_pass=passing, srd_fail=srd_fail, srd_pass=srd_pass,
                      floor_fail=floor_fail, baseline_floor=baseline_floor, baseline_below_floor=below_floor)


def decide(s: Statistics, passed: Bools, spent: Bools | bool, *, fail_boundary: float) -> Codes:
    """The stopping rule at a look, FAIL first:

    1. FAIL when a comparative test crosses its FAIL boundary, or the canary's floor test does
       while the baseline's observed SER is at or above the floor;
    2. INCONCLUSIVE when the baseline's own floor test crosses, or the canary's floor test does
       while the baseline is below the floor too: the estate, not the release, is the suspect;
    3. PASS when every comparative test has ruled out its regression (`passed`, latched; the
       floor is a safety net that can FAIL a gate but is not needed to PASS it);
    4. INCONCLUSIVE when the call/time budget is spent; else CONTINUE."""
    comparative = (s.failures_fail >= fail_boundary).any(axis=-1) | (s.srd_fail >= fail_boundary).any(axis=-1)
    floor = s.floor_fail >= fail_boundary
    excused = floor & s.baseline_below_floor
    fail = comparative | (floor & ~excused).any(axis=-1)
    estate = (s.baseline_floor >= fail_boundary).any(axis=-1) | excused.any(axis=-1)
    done = passed.all(axis=-1)
    code = np.where(fail, FAIL, np.where(estate, INCONCLUSIVE, np.where(
        done, PASS, np.where(spent, INCONCLUSIVE, CONTINUE))))
    return np.asarray(code, dtype=np.int8)
