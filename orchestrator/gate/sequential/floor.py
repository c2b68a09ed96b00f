"""The SER floor of a fixed probe, judged statistically: the bake's health probe.

A site is unhealthy when its success ratio on some number is, beyond doubt at level alpha,
below the policy's SER floor: the one-sided e-process of `evidence.one_sample` against
H0 "failure ratio at most 1 - floor" reaches log(1/alpha). Not "any failed call": on a real
network emergency routes fail a few calls in a thousand on their own, and halting on one
failure would roll back good releases (issue 15). A dead number is still certain after a
handful of calls; a number the probe placed no call to is unproven, so it fails too.

Anytime-valid, so the same test serves a probe of any size and any later look.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.gate.sequential.evidence import Side, one_sample


class FloorCheck(BaseModel):
    """One number's calls, failures and evidence against the floor."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    number: str
    calls: int = Field(ge=0)
    failed: int = Field(ge=0)
    log_e: float = Field(description="log e-value against 'SER at least the floor'")

    @property
    def ser(self) -> float | None:
        """Success ratio of the probe, None without calls."""
        return (self.calls - self.failed) / self.calls if self.calls else None


class FloorJudgement(BaseModel):
    """Every number's check and the boundary they are held to."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    floor: float = Field(gt=0, lt=1)
    alpha: float = Field(gt=0, lt=1)
    checks: tuple[FloorCheck, ...]

    @property
    def boundary(self) -> float:
        """log(1/alpha): the evidence at which a number is below the floor."""
        return -math.log(self.alpha)

    @property
    def below(self) -> tuple[FloorCheck, ...]:
        """Numbers below the floor beyond doubt, and numbers the probe never reached."""
        return tuple(c for c in self.checks if c.calls == 0 or c.log_e >= self.boundary)

    @property
    def healthy(self) -> bool:
        """No number below the floor (and at least one number judged)."""
        return bool(self.checks) and not self.below

    def describe(self, check: FloorCheck) -> str:
        """One line for a halt reason or a report."""
        if check.calls == 0:
            return f"{check.number}: no call placed"
        return (f"{check.number}: {check.failed}/{check.calls} failed (SER {check.ser:.3f} below the floor "
                f"{self.floor:g}, evidence {check.log_e:.1f} >= {self.boundary:.1f} nats)")


def judge_floor(counts: Iterable[tuple[str, int, int]], *, floor: float, alpha: float) -> FloorJudgement:
    """Judge (number, calls, failed) triples against the SER floor at level alpha."""
    checks = []
    for number, calls, failed in counts:
        if not 0 <= failed <= calls:
            raise ValueError(f"{number}: {failed} failures in {calls} calls")
        log_e = float(one_sample(failed, calls, 1.0 - floor, Side.AT_MOST)) if calls else 0.0
        checks.append(FloorCheck(number=number, calls=calls, failed=failed, log_e=log_e))
    return FloorJudgement(floor=floor, alpha=alpha, checks=tuple(checks))
