"""Sequential judgement, the pieces: e-values, budget split, fixed-sample minimum, and the judge's
edge cases (zero calls, all failures, budget spent) one look at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.gate.sequential import (
    POOLED,
    ArmSecond,
    CheckKind,
    Decision,
    NumberSecond,
    Second,
    SequentialJudge,
    SequentialPolicy,
    evidence,
    minimum,
    split,
)
from orchestrator.gate.sequential.evidence import Side

NUMBERS = ("15", "17", "18", "112", "114")
POLICY = SequentialPolicy()
BUDGET = split(POLICY, waves=6, numbers=len(NUMBERS))
JUDGE = SequentialJudge(numbers=NUMBERS, alpha=BUDGET.per_gate, policy=POLICY)


# --- evidence ---------------------------------------------------------------------------------

def test_the_mixture_does_not_depend_on_batching() -> None:
    """Per-second counts give the value call-by-call updating gives (predictive KT updates)."""
    outcomes = [1, 0, 0, 1, 1, 0, 0, 0, 0, 1]
    log_m, events = 0.0, 0
    for i, x in enumerate(outcomes):
        p_fail = (events + evidence.PRIOR_A) / (i + evidence.PRIOR_A + evidence.PRIOR_B)
        log_m += math.log(p_fail if x else 1 - p_fail)
        events += x
    assert float(evidence.log_mixture(sum(outcomes), len(outcomes))) == pytest.approx(log_m, abs=1e-12)


def test_the_null_maximum_matches_a_brute_force_grid() -> None:
    """The constrained maximum (closed form or bisection) is never below a fine grid's: an
    e-value is never overstated (which would make the test anti-conservative)."""
    rng = np.random.default_rng(7)
    grid = np.linspace(0, 1, 601)
    pc, pb = np.meshgrid(grid, grid, indexing="ij")
    for _ in range(60):
        nc, nb = (int(x) for x in rng.integers(0, 40, 2))
        fc, fb = int(rng.integers(0, nc + 1)), int(rng.integers(0, nb + 1))
        margin = float(rng.choice([0.0, 0.02, 0.05, 0.3]))
        side = Side.AT_MOST if rng.random() < 0.5 else Side.AT_LEAST
        inside = (pc - pb <= margin + 1e-12) if side is Side.AT_MOST else (pc - pb >= margin - 1e-12)
        ll = evidence.log_likelihood(fc, nc, pc) + evidence.log_likelihood(fb, nb, pb)
        grid_sup = float(np.max(np.where(inside, ll, -np.inf)))
        brute = float(evidence.log_mixture(fc, nc) + evidence.log_mixture(fb, nb)) - grid_sup
        got = float(evidence.two_sample(fc, nc, fb, nb, margin, side))
        assert got <= brute + 1e-9, (fc, nc, fb, nb, margin, side)
        assert got >= brute - 0.05, (fc, nc, fb, nb, margin, side)  # and not needlessly weak


def test_a_dead_canary_against_a_clean_baseline() -> None:
    """6 calls per arm give e = 208 (> 1/0.01): the sequential test is within a call of Fisher's 5."""
    assert float(evidence.two_sample(6, 6, 0, 6, 0.0, Side.AT_MOST)) == pytest.approx(math.log(208.4), abs=0.01)
    assert float(evidence.two_sample(0, 6, 6, 6, 0.0, Side.AT_MOST)) < 0  # a better canary: no evidence


def test_one_sample_against_a_floor() -> None:
    ceiling = 1 - POLICY.ser_floor
    assert float(evidence.one_sample(0, 0, ceiling, Side.AT_MOST)) == 0.0  # no data, no evidence
    assert float(evidence.one_sample(1, 1000, ceiling, Side.AT_MOST)) < 0
    assert float(evidence.one_sample(50, 1000, ceiling, Side.AT_MOST)) > 11


# --- budget and minimum -----------------------------------------------------------------------

def test_the_budget_splits_over_waves_stages_and_tests() -> None:
    assert BUDGET.tests_per_gate == 3 * 5 + 2
    assert BUDGET.per_gate == pytest.approx(0.01 / 36)
    assert BUDGET.per_test == pytest.approx(0.01 / 36 / 17)
    assert JUDGE.alpha_per_test == pytest.approx(BUDGET.per_test)
    assert JUDGE.fail_boundary == pytest.approx(BUDGET.fail_boundary) == pytest.approx(math.log(6 * 6 * 17 / 0.01))
    assert JUDGE.pass_boundary == pytest.approx(math.log(10))
    with pytest.raises(ValueError):
        split(POLICY, waves=0, numbers=5)


def test_fixed_sample_minimum_textbook_values() -> None:
    # one-sided alpha 0.01, power 0.9, 0% against 2%: (2.326*sqrt(2*.01*.99) + 1.2816*sqrt(.02*.98))^2 / .02^2
    assert minimum.two_proportions(0.0, 0.02, alpha=0.01, power=0.9) == 643
    assert minimum.one_proportion(0.01, 0.05, alpha=0.01, power=0.9) == 164
    assert minimum.sign_test(1.0, alpha=0.01, power=0.9) == 6  # z_alpha^2 = 5.4 pairs, all positive
    with pytest.raises(ValueError):
        minimum.two_proportions(0.02, 0.02, alpha=0.01, power=0.9)


# --- policy and inputs ------------------------------------------------------------------------

def test_policy_refuses_an_empty_indifference_zone() -> None:
    with pytest.raises(ValidationError):
        SequentialPolicy(srd_harmless_ms=30, srd_shift_ms=30)
    with pytest.raises(ValidationError):
        SequentialPolicy(failure_tolerance=0.05)
    with pytest.raises(ValidationError):
        SequentialPolicy(power=0.4)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValidationError):
        ArmSecond(attempted=1, answered=1, srd_ms=(1.0, 2.0))
    with pytest.raises(ValidationError):
        ArmSecond(attempted=1, answered=1, srd_ms=(float("nan"),))
    with pytest.raises(ValidationError):
        SequentialJudge(numbers=("15", "15"), alpha=0.01)
    with pytest.raises(ValueError, match="not judged"):
        JUDGE.look(JUDGE.start(), Second(numbers={"999": NumberSecond()}))


# --- the judge, one look at a time --------------------------------------------------------------

def arm(calls: int, failed: int = 0, delay: float = 3.0) -> ArmSecond:
    answered = calls - failed
    return ArmSecond(attempted=calls, answered=answered, failed=failed,
                     srd_ms=tuple(delay + (i % 5) * 0.5 for i in range(answered)))


def second(canary: dict[str, ArmSecond] | None = None, baseline: dict[str, ArmSecond] | None = None,
           calls: int = 30) -> Second:
    canary, baseline = canary or {}, baseline or {}
    return Second(numbers={n: NumberSecond(canary=canary.get(n, arm(calls)), baseline=baseline.get(n, arm(calls)))
                           for n in NUMBERS})


def run(judge: SequentialJudge, seconds: list[Second]) -> list[Decision]:
    state, out = judge.start(), []
    for s in seconds:
        state, look = judge.look(state, s)
        out.append(look.decision)
        if look.decision is not Decision.CONTINUE:
            break
    return out


def test_zero_calls_is_inconclusive_only_when_the_budget_is_spent() -> None:
    state = JUDGE.start()
    for _ in range(POLICY.max_seconds - 1):
        state, look = JUDGE.look(state, Second())
        assert look.decision is Decision.CONTINUE
        assert all(t.log_e_fail == 0.0 for t in look.tests)  # no data, no evidence either way
    state, look = JUDGE.look(state, Second())
    assert look.decision is Decision.INCONCLUSIVE and look.second == 60
    assert "budget spent (60 s, 0 canary calls)" in look.reasons[0]
    with pytest.raises(ValueError, match="already decided"):
        JUDGE.look(state, Second())


def test_a_call_budget_ends_an_undecided_gate() -> None:
    judge = SequentialJudge(numbers=NUMBERS, alpha=BUDGET.per_gate, policy=SequentialPolicy(max_calls_per_arm=100))
    state, look = judge.look(judge.start(), second(calls=10))  # 50 canary calls: too few to PASS
    assert look.decision is Decision.CONTINUE
    state, look = judge.look(state, second(calls=10))
    assert look.decision is Decision.INCONCLUSIVE and look.canary_calls == 100


def test_a_healthy_canary_passes_with_the_evidence_of_every_test() -> None:
    state, look = JUDGE.start(), None
    while state.decision is Decision.CONTINUE:
        state, look = JUDGE.look(state, second(calls=40))
    assert look is not None
    assert look.decision is Decision.PASS, look.reasons
    assert look.second <= 10
    assert len(look.tests) == 2 * (len(NUMBERS) + 1) + len(NUMBERS)
    comparative = [t for t in look.tests if t.kind is not CheckKind.SER_FLOOR]
    assert all(t.passed and not t.crossed_fail for t in comparative)
    assert all(t.log_e_pass is not None and t.pass_boundary is not None for t in comparative)
    pooled = next(t for t in look.tests if t.kind is CheckKind.FAILURES and t.scope == POOLED)
    assert pooled.counts["canary_trials"] == look.canary_calls
    assert "ruled out with power 90%" in look.reasons[-1]


def test_a_dead_number_fails_at_the_first_look_and_is_named() -> None:
    decisions = run(JUDGE, [second(canary={"17": arm(30, failed=30)})])
    assert decisions == [Decision.FAIL]
    _, look = JUDGE.look(JUDGE.start(), second(canary={"17": arm(30, failed=30)}))
    assert any(r.startswith("17: failures 30/30 above baseline 0/30") for r in look.reasons)
    assert any(r.startswith("17: SER 0.00% significantly below floor") for r in look.reasons)


def test_all_failures_on_both_arms_blame_the_estate_not_the_release() -> None:
    dead = {n: arm(30, failed=30) for n in NUMBERS}
    _, look = JUDGE.look(JUDGE.start(), second(canary=dead, baseline=dead))
    assert look.decision is Decision.INCONCLUSIVE
    assert any("estate unhealthy" in r for r in look.reasons)


def test_a_dead_baseline_is_inconclusive_even_with_a_healthy_canary() -> None:
    dead = {n: arm(30, failed=30) for n in NUMBERS}
    _, look = JUDGE.look(JUDGE.start(), second(baseline=dead))
    assert look.decision is Decision.INCONCLUSIVE
    assert any("baseline SER significantly below floor" in r for r in look.reasons)


def test_a_canary_below_the_floor_with_no_baseline_fails_on_the_floor_alone() -> None:
    bad = {n: arm(40, failed=4) for n in NUMBERS}  # SER 90%, floor 99%
    none = {n: ArmSecond() for n in NUMBERS}
    state, look = JUDGE.start(), None
    for _ in range(10):
        state, look = JUDGE.look(state, second(canary=bad, baseline=none))
        if state.decision is not Decision.CONTINUE:
            break
    assert look is not None and look.decision is Decision.FAIL
    assert all("below floor" in r for r in look.reasons)


def test_a_small_delay_shift_never_fails_a_large_one_fails_at_once() -> None:
    slower = {n: arm(30, delay=3.0 + 5) for n in NUMBERS}  # +5 ms: under srd_harmless_ms
    state = JUDGE.start()
    for _ in range(20):
        state, look = JUDGE.look(state, second(canary=slower))
        if state.decision is not Decision.CONTINUE:
            break
    assert state.decision is Decision.PASS
    much_slower = {n: arm(30, delay=3.0 + 30) for n in NUMBERS}
    _, look = JUDGE.look(JUDGE.start(), second(canary=much_slower))
    assert look.decision is Decision.FAIL
    assert any("setup delay over baseline by more than 15 ms in 30/30 pairs" in r for r in look.reasons)


def test_delays_pair_across_seconds_when_one_arm_lags() -> None:
    """The baseline's delays arrive a second late: they pair with the canary's waiting ones."""
    state, look = JUDGE.look(JUDGE.start(), second(canary={n: arm(20) for n in NUMBERS},
                                                   baseline={n: ArmSecond() for n in NUMBERS}))
    assert all(t.counts.get("pairs") == 0 for t in look.tests if t.kind is CheckKind.SRD_SHIFT)
    assert len(state.totals["15"].canary_pending) == 20
    state, look = JUDGE.look(state, second(canary={n: ArmSecond() for n in NUMBERS},
                                           baseline={n: arm(20) for n in NUMBERS}))
    assert state.totals["15"].pairs == 20 and not state.totals["15"].canary_pending
