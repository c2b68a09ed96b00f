"""Gate decisions, table-driven: facts in, verdict and reasons out."""

from __future__ import annotations

import random

import pytest

from orchestrator.gate.verdict import Verdict, combine, judge_probe
from orchestrator.policy.model import CanaryPolicy, SyntheticPolicy
from orchestrator.sipp.scenarios import CallStats

SYN = SyntheticPolicy()
CAN = CanaryPolicy()
NUMBERS = ("15", "17", "18", "112")


def calls(n: int = 200, *, failed: dict[str, int] | None = None, delay: float = 1.0, jitter: float = 1.0,
          seed: int = 1) -> CallStats:
    rnd = random.Random(seed)
    failures = failed or {}
    nfail = sum(failures.values())
    return CallStats(attempted=n, answered=n - nfail, failed=nfail, failures=failures,
                     srd_ms=tuple(max(0.0, delay + rnd.uniform(-jitter, jitter)) for _ in range(n - nfail)))


def probe(**overrides: CallStats) -> dict[str, CallStats]:
    return {n: overrides.get(f"n{n}", calls(seed=int(n))) for n in NUMBERS}


def judge(canary: dict[str, CallStats], baseline: dict[str, CallStats]):  # type: ignore[no-untyped-def]
    return judge_probe(canary, baseline, synthetic=SYN, canary_policy=CAN)


def test_a_healthy_canary_passes() -> None:
    j = judge(probe(), {n: calls(seed=100 + int(n)) for n in NUMBERS})
    assert j.verdict == Verdict.PASS, j.reasons
    assert j.calls == 1600


def test_good_release_never_fails_over_many_random_windows() -> None:
    """No false FAIL: 200 windows of the same healthy distributions, jitter and all."""
    for seed in range(200):
        canary = {n: calls(seed=seed * 10 + i, jitter=3) for i, n in enumerate(NUMBERS)}
        base = {n: calls(seed=seed * 10 + i + 5000, jitter=3) for i, n in enumerate(NUMBERS)}
        assert judge(canary, base).verdict == Verdict.PASS


def test_one_broken_number_fails_and_is_named() -> None:
    j = judge(probe(n17=calls(failed={"503": 200})), probe())
    assert j.verdict == Verdict.FAIL
    failing = [n.number for n in j.numbers if n.verdict == Verdict.FAIL]
    assert failing == ["17"]
    assert any(r.startswith("17: SER 0.0%") for r in j.reasons)


def test_a_few_percent_of_503s_fail() -> None:
    canary = {n: calls(failed={"503": 6}, seed=int(n)) for n in NUMBERS}  # 3%
    j = judge(canary, probe())
    assert j.verdict == Verdict.FAIL
    assert j.pooled_fisher_p is not None and j.pooled_fisher_p < 1e-6


def test_one_failure_in_two_hundred_is_tolerated() -> None:
    j = judge(probe(n15=calls(failed={"timeout": 1})), probe())
    assert j.verdict == Verdict.PASS, j.reasons


def test_added_setup_delay_fails_on_latency_without_any_failed_call() -> None:
    canary = {n: calls(delay=101, seed=int(n)) for n in NUMBERS}
    j = judge(canary, probe())
    assert j.verdict == Verdict.FAIL
    assert all("setup delay +" in " ".join(n.reasons) for n in j.numbers)
    assert all(n.canary_failed == 0 for n in j.numbers)


def test_a_tiny_significant_delay_is_not_a_failure() -> None:
    canary = {n: calls(delay=3, jitter=0.5, seed=int(n)) for n in NUMBERS}
    base = {n: calls(delay=1, jitter=0.5, seed=int(n) + 9) for n in NUMBERS}
    j = judge(canary, base)
    assert j.verdict == Verdict.PASS, j.reasons
    assert all(n.mannwhitney_p is not None and n.mannwhitney_p < 0.01 for n in j.numbers)


def test_baseline_failing_too_is_inconclusive_not_fail() -> None:
    j = judge(probe(n17=calls(failed={"408": 200})), probe(n17=calls(failed={"408": 200})))
    assert j.verdict == Verdict.INCONCLUSIVE
    assert any("baseline also failing" in r for r in j.reasons)


def test_too_little_data_is_inconclusive_never_pass() -> None:
    small = {n: calls(n=20, seed=int(n)) for n in NUMBERS}
    j = judge(small, probe())
    assert j.verdict == Verdict.INCONCLUSIVE
    assert any("too little data" in r for r in j.reasons)
    assert judge(probe(), {}).verdict == Verdict.INCONCLUSIVE


def test_ceiling_on_setup_delay() -> None:
    canary = {n: calls(delay=400, seed=int(n)) for n in NUMBERS}
    slow_base = {n: calls(delay=400, seed=int(n) + 3) for n in NUMBERS}
    assert judge(canary, probe()).verdict == Verdict.FAIL
    assert judge(canary, slow_base).verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize(("verdicts", "expected"), [
    ([], Verdict.INCONCLUSIVE), ([Verdict.PASS], Verdict.PASS),
    ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
    ([Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.PASS], Verdict.FAIL)])
def test_combine(verdicts: list[Verdict], expected: Verdict) -> None:
    assert combine(verdicts) == expected


def test_a_shift_inside_the_baseline_spread_is_noise_not_a_regression() -> None:
    """A loaded machine: baseline delays spread over ~300 ms; a 80 ms median shift is noise."""
    canary = {n: calls(delay=230, jitter=150, seed=int(n)) for n in NUMBERS}
    base = {n: calls(delay=150, jitter=150, seed=int(n) + 7) for n in NUMBERS}
    j = judge(canary, base)
    assert all("setup delay" not in r for r in j.reasons), j.reasons
    quiet = {n: calls(delay=81, jitter=1, seed=int(n)) for n in NUMBERS}
    assert judge(quiet, probe()).verdict == Verdict.FAIL  # the same shift on a quiet estate
