"""The SER floor test of a fixed probe (the bake's health probe): never "any failed call"."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.gate.sequential.budget import split
from orchestrator.gate.sequential.floor import judge_floor
from orchestrator.policy.model import GatePolicy

FLOOR = 0.99
# The bake's level in a six-wave rollout of four numbers with the default policy.
ALPHA = split(GatePolicy().sequential, waves=6, numbers=4).per_test


def test_a_few_background_failures_are_not_a_broken_site() -> None:
    judged = judge_floor([("112", 20, 1), ("15", 20, 2), ("17", 80, 3), ("18", 20, 0)], floor=FLOOR, alpha=ALPHA)
    assert judged.healthy
    assert judged.below == ()


def test_a_dead_number_is_certain_after_a_handful_of_calls() -> None:
    judged = judge_floor([("112", 4, 4), ("15", 20, 0)], floor=FLOOR, alpha=ALPHA)
    assert not judged.healthy
    assert [c.number for c in judged.below] == ["112"]
    assert "112: 4/4 failed (SER 0.000 below the floor 0.99" in judged.describe(judged.below[0])


def test_a_number_the_probe_never_reached_is_unproven() -> None:
    judged = judge_floor([("112", 20, 0), ("15", 0, 0)], floor=FLOOR, alpha=ALPHA)
    assert [c.number for c in judged.below] == ["15"]
    assert judged.describe(judged.below[0]) == "15: no call placed"
    assert not judge_floor([], floor=FLOOR, alpha=ALPHA).healthy


def test_more_failures_than_calls_is_a_bug_not_a_verdict() -> None:
    with pytest.raises(ValueError, match="5 failures in 4 calls"):
        judge_floor([("112", 4, 5)], floor=FLOOR, alpha=ALPHA)


@pytest.mark.parametrize("calls", [20, 80])
def test_false_fail_rate_at_the_floor_stays_within_alpha(calls: int) -> None:
    """The worst good case (failure ratio exactly 1 - floor), 20,000 probes at alpha 1%."""
    rng = np.random.default_rng(15)
    failed = rng.binomial(calls, 1 - FLOOR, size=20_000)
    unhealthy = sum(not judge_floor([("112", calls, int(f))], floor=FLOOR, alpha=0.01).healthy for f in failed)
    print(f"calls {calls}: {unhealthy} of 20,000 good probes judged below the floor")
    assert unhealthy / 20_000 <= 0.01


def test_most_calls_failing_is_caught_by_a_bake_probe_of_twenty() -> None:
    rng = np.random.default_rng(16)
    failed = rng.binomial(20, 0.6, size=2_000)
    caught = sum(not judge_floor([("112", 20, int(f))], floor=FLOOR, alpha=ALPHA).healthy for f in failed)
    assert caught / 2_000 >= 0.99


def test_background_failures_no_longer_halt_good_rollouts_at_the_bake() -> None:
    """2,000 six-wave rollouts, each bake probing 4 numbers x 20 calls, 0.3% of calls failing
    everywhere on their own (issue 15's real network): "any failure" halted most of them."""
    rng = np.random.default_rng(17)
    failed = rng.binomial(20, 0.003, size=(2_000, 6, 4))
    any_failure = int((failed.sum(axis=(1, 2)) > 0).sum())
    halted = sum(any(not judge_floor([(str(n), 20, int(f)) for n, f in enumerate(wave)], floor=FLOOR,
                                     alpha=ALPHA).healthy for wave in rollout) for rollout in failed)
    print(f"good rollouts halted at a bake: any-failure rule {any_failure} of 2,000, floor test {halted}")
    assert any_failure > 1_000  # the old rule's false halts: what this test guards against
    assert halted == 0
