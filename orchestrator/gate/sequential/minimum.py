"""The fixed-sample statistical minimum: how many calls a single test, planned in advance for
the same alpha and power and the true effect, would need. The yardstick for calls-to-decision.

Normal approximations (the textbook sample-size formulas); they are optimistic at rates near 0
or 1, which only makes the yardstick stricter.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def _z(alpha: float, power: float) -> tuple[float, float]:
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power are probabilities")
    return float(norm.isf(alpha)), float(norm.ppf(power))


def two_proportions(p_baseline: float, p_canary: float, *, alpha: float, power: float) -> int:
    """Calls per arm for a one-sided two-proportion z-test (pooled variance under H0) of
    p_canary > p_baseline at level alpha to have the given power."""
    if not p_canary > p_baseline:
        raise ValueError("the canary's rate must exceed the baseline's")
    za, zb = _z(alpha, power)
    mean = (p_baseline + p_canary) / 2
    spread = za * math.sqrt(2 * mean * (1 - mean)) + zb * math.sqrt(
        p_baseline * (1 - p_baseline) + p_canary * (1 - p_canary))
    return max(1, math.ceil((spread / (p_canary - p_baseline)) ** 2))


def one_proportion(p_null: float, p_true: float, *, alpha: float, power: float) -> int:
    """Trials for a one-sided one-proportion z-test of rate > p_null when it is p_true."""
    if not p_true > p_null:
        raise ValueError("the true rate must exceed the null rate")
    za, zb = _z(alpha, power)
    spread = za * math.sqrt(p_null * (1 - p_null)) + zb * math.sqrt(p_true * (1 - p_true))
    return max(1, math.ceil((spread / (p_true - p_null)) ** 2))


def sign_test(p_positive: float, *, alpha: float, power: float) -> int:
    """Pairs for a one-sided sign test when each pair is positive with chance `p_positive`."""
    return one_proportion(0.5, p_positive, alpha=alpha, power=power)
