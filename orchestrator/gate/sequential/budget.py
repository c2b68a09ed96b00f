"""One false-FAIL budget per rollout, split (Bonferroni) over waves, stages and tests.

A good release may be FAILed by any of its tests in any gate of any wave; the union bound says
the chance of at least one such false FAIL is at most the sum of the tests' levels. Splitting the
budget evenly is the simplest split with that guarantee, needs no assumption on how the tests
depend on each other (the same calls feed the per-number and the pooled tests), and costs little:
a sequential test's calls to a decision grow with log(1/alpha), so dividing alpha by 100 adds
about log(100) = 4.6 nats of evidence to gather, not a hundred times the calls.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.policy.sequential import SequentialPolicy


class BudgetSplit(BaseModel):
    """The levels of one rollout, from the whole rollout down to one test of one gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout: float = Field(gt=0, lt=1)
    waves: int = Field(ge=1)
    stages_per_wave: int = Field(ge=1)
    tests_per_gate: int = Field(ge=1)

    @property
    def per_wave(self) -> float:
        """Each wave's share."""
        return self.rollout / self.waves

    @property
    def per_gate(self) -> float:
        """Each sequentially judged gate's share (a stage of a wave)."""
        return self.per_wave / self.stages_per_wave

    @property
    def per_test(self) -> float:
        """Each FAIL-capable test's level inside a gate."""
        return self.per_gate / self.tests_per_gate

    @property
    def fail_boundary(self) -> float:
        """The log e-value at which a test FAILs: log(1/per_test)."""
        return -math.log(self.per_test)


def tests_per_gate(numbers: int) -> int:
    """FAIL-capable tests in one gate: per number the failure comparison, the setup-delay shift and
    the SER floor; over all numbers together the failure comparison and the setup-delay shift.

    The baseline's own floor test is not counted: it can only make a gate INCONCLUSIVE, never FAIL it."""
    if numbers < 1:
        raise ValueError("a gate judges at least one number")
    return 3 * numbers + 2


def split(policy: SequentialPolicy, *, waves: int, numbers: int) -> BudgetSplit:
    """The rollout's budget for a plan of `waves` waves probing `numbers` emergency numbers."""
    if waves < 1:
        raise ValueError("a rollout has at least one wave")
    return BudgetSplit(rollout=policy.false_fail_budget, waves=waves, stages_per_wave=policy.stages_per_wave,
                       tests_per_gate=tests_per_gate(numbers))
