"""The parameters of sequential judgement: error rates, the smallest regressions that matter, budgets.

`gate.sequential` in a policy file. The bake's health probe judges its SER floor with it; the
other stages do not use it yet (issue 15). Every default is argued in docs/POLICIES.md,
"Sequential judgement".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SequentialPolicy(BaseModel):
    """Alpha, power, effect sizes and the call/time budget of one sequentially judged gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    false_fail_budget: float = Field(
        default=0.01, gt=0, lt=0.5,
        description="chance that a rollout of a good release is FAILed anywhere (all waves, stages, numbers)")
    stages_per_wave: int = Field(default=6, ge=1, le=100,
                                 description="sequentially judged gates per wave, sharing the wave's budget")
    power: float = Field(default=0.9, gt=0.5, lt=1,
                         description="chance of not PASSing a regression at least as large as the sizes below")
    number_failure_increase: float = Field(
        default=0.05, gt=0, lt=1,
        description="smallest increase of one number's failure ratio (canary minus baseline) that matters")
    failure_increase: float = Field(
        default=0.02, gt=0, lt=1,
        description="smallest increase of the failure ratio over all numbers together that matters")
    failure_tolerance: float = Field(
        default=0.0, ge=0, lt=1,
        description="canary-minus-baseline failure ratio a FAIL must exceed (0: any increase can FAIL)")
    srd_shift_ms: float = Field(default=30.0, gt=0, le=60_000,
                                description="smallest setup-delay increase that matters")
    srd_harmless_ms: float = Field(default=15.0, ge=0, le=60_000,
                                   description="setup-delay increase that never FAILs, however certain")
    ser_floor: float = Field(default=0.99, gt=0, lt=1,
                             description="absolute SER floor per number, judged by a one-sided sequential test")
    max_seconds: int = Field(default=60, ge=1, le=7 * 24 * 3600,
                             description="looks (one a second) before an undecided gate is INCONCLUSIVE")
    max_calls_per_arm: int | None = Field(default=None, ge=1, le=100_000_000,
                                          description="canary calls before an undecided gate is INCONCLUSIVE")
    pending_delays_max: int = Field(default=10_000, ge=1, le=1_000_000,
                                    description="unpaired delay samples kept per number and arm")

    @model_validator(mode="after")
    def _zones(self) -> SequentialPolicy:
        # FAIL needs a shift above `srd_harmless_ms`, PASS rules out `srd_shift_ms`: the two nulls
        # must leave a gap (the indifference zone) or one stream could both FAIL and PASS.
        if self.srd_harmless_ms >= self.srd_shift_ms:
            raise ValueError("srd_harmless_ms must be below srd_shift_ms")
        if self.failure_tolerance >= min(self.failure_increase, self.number_failure_increase):
            raise ValueError("failure_tolerance must be below failure_increase and number_failure_increase")
        return self
