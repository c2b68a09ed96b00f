"""What the sequential judge consumes (one second of increments) and returns (a look)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

POOLED = "all"  # the scope of the tests over every number together


class Frozen(BaseModel):
    """Immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Decision(StrEnum):
    """A look's answer. CONTINUE: look again next second; the other three stop the gate."""

    CONTINUE = "CONTINUE"
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


class CheckKind(StrEnum):
    """The three sequential tests (see `evidence` and docs/POLICIES.md)."""

    FAILURES = "failures"  # canary failure ratio against the baseline's, per number and pooled
    SRD_SHIFT = "srd_shift"  # canary setup delay against the baseline's, per number and pooled
    SER_FLOOR = "ser_floor"  # the canary's SER against the absolute floor, per number


class ArmSecond(Frozen):
    """One arm's (canary's or baseline's) new calls to one number in one second.

    `failed` counts the ineffective attempts that count against a release (ISA: 408, 5xx,
    timeouts; not 3xx redirects, which are `redirected` and outside SER's denominator).
    The failure tests use completed outcomes, `answered + failed`; `srd_ms` holds the setup
    delays of the answered calls in the order they were placed (pairing relies on that order,
    never on the values)."""

    attempted: int = Field(default=0, ge=0)
    answered: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    redirected: int = Field(default=0, ge=0)
    srd_ms: tuple[float, ...] = ()

    @model_validator(mode="after")
    def _delays(self) -> ArmSecond:
        if len(self.srd_ms) > self.answered:
            raise ValueError("more setup delays than answered calls")
        if any(not (d >= 0 and d < float("inf")) for d in self.srd_ms):
            raise ValueError("setup delays are finite, non-negative milliseconds")
        return self


class NumberSecond(Frozen):
    """One number's new calls in one second, both arms."""

    canary: ArmSecond = ArmSecond()
    baseline: ArmSecond = ArmSecond()


class Second(Frozen):
    """One second of increments (SIPp's per-second statistics and per-call response times);
    a number missing this second had no new calls."""

    numbers: dict[str, NumberSecond] = Field(default_factory=dict)


class CheckEvidence(Frozen):
    """One test at one look: its statistics against their boundaries (the report's evidence)."""

    kind: CheckKind
    scope: str  # an emergency number, or POOLED
    counts: dict[str, int]  # what the statistics were computed from, named
    # failures: canary-minus-baseline failure ratio; srd_shift: share of pairs above the harmless
    # shift; ser_floor: the canary's SER
    estimate: float | None
    log_e_fail: float  # log e-value against "no regression"; FAIL at `fail_boundary`
    fail_boundary: float
    log_e_pass: float | None = None  # log e-value against "a regression that matters"; PASS at `pass_boundary`
    pass_boundary: float | None = None
    crossed_fail: bool = False
    passed: bool = False  # latched: once the regression is ruled out it stays ruled out
    # ser_floor only: the baseline's own floor test; at `fail_boundary` the estate is the suspect
    log_e_baseline: float | None = None


class Look(Frozen):
    """The judge's answer after one more second, with every test's evidence."""

    second: int
    decision: Decision
    reasons: tuple[str, ...]
    tests: tuple[CheckEvidence, ...]
    canary_calls: int
    baseline_calls: int


class NumberTotals(Frozen):
    """Everything the tests need about one number so far (sufficient statistics)."""

    canary_trials: int = 0
    canary_failures: int = 0
    baseline_trials: int = 0
    baseline_failures: int = 0
    pairs: int = 0  # canary/baseline setup-delay pairs
    above_harmless: int = 0  # pairs with canary - baseline > srd_harmless_ms
    below_shift: int = 0  # pairs with canary - baseline < srd_shift_ms
    canary_pending: tuple[float, ...] = ()  # delays not yet paired (the other arm was behind)
    baseline_pending: tuple[float, ...] = ()


class JudgeState(Frozen):
    """The judge's memory between looks."""

    second: int = 0
    canary_calls: int = 0
    baseline_calls: int = 0
    totals: dict[str, NumberTotals] = Field(default_factory=dict)
    passed: frozenset[str] = frozenset()  # ids of tests whose PASS side has crossed (latched)
    decision: Decision = Decision.CONTINUE
