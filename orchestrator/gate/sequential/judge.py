"""The sequential judge of one gate: one second of increments in, a typed look out. Pure.

The judge holds no state of its own: `look(state, second)` returns the next state with the look,
so the caller (a gate stage, a test, a replay of a journal) owns time and storage.

    judge = SequentialJudge(numbers=("15", "17", "18", "112", "114"), alpha=split.per_gate)
    state = judge.start()
    while state.decision is Decision.CONTINUE:
        state, look = judge.look(state, next_second())
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.gate.sequential import rules
from orchestrator.gate.sequential.budget import tests_per_gate
from orchestrator.gate.sequential.model import (
    POOLED,
    CheckEvidence,
    CheckKind,
    Decision,
    JudgeState,
    Look,
    NumberSecond,
    NumberTotals,
    Second,
)
from orchestrator.policy.sequential import SequentialPolicy


class SequentialJudge(BaseModel):
    """A gate's sequential tests over a set of emergency numbers, at the gate's share of the budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    numbers: tuple[str, ...] = Field(min_length=1)
    alpha: float = Field(gt=0, lt=0.5, description="this gate's false-FAIL budget (BudgetSplit.per_gate)")
    policy: SequentialPolicy = SequentialPolicy()

    @model_validator(mode="after")
    def _numbers(self) -> SequentialJudge:
        if len(set(self.numbers)) != len(self.numbers) or POOLED in self.numbers:
            raise ValueError(f"numbers must be distinct and not {POOLED!r}")
        return self

    @property
    def alpha_per_test(self) -> float:
        """Bonferroni inside the gate: every FAIL-capable test gets an equal share."""
        return self.alpha / tests_per_gate(len(self.numbers))

    @property
    def fail_boundary(self) -> float:
        """log(1/alpha_per_test): a test FAILs when its log e-value reaches it."""
        return -math.log(self.alpha_per_test)

    @property
    def pass_boundary(self) -> float:
        """log(1/(1-power)): a regression is ruled out when its log e-value reaches it."""
        return -math.log(1.0 - self.policy.power)

    def pass_ids(self) -> tuple[str, ...]:
        """The PASS-side tests, in the order of `Statistics.pass_statistics`."""
        scopes = (*self.numbers, POOLED)
        return (*(f"{CheckKind.FAILURES}:{s}" for s in scopes), *(f"{CheckKind.SRD_SHIFT}:{s}" for s in scopes))

    def start(self) -> JudgeState:
        """The state before the first second."""
        return JudgeState(totals={n: NumberTotals() for n in self.numbers})

    def look(self, state: JudgeState, second: Second) -> tuple[JudgeState, Look]:
        """Add one second of increments and judge every test on everything seen so far."""
        if state.decision is not Decision.CONTINUE:
            raise ValueError(f"the gate is already decided ({state.decision}): start a new state")
        unknown = sorted(set(second.numbers) - set(self.numbers))
        if unknown:
            raise ValueError(f"numbers not judged by this gate: {', '.join(unknown)}")
        idle = NumberSecond()
        totals = {n: _accumulate(state.totals[n], second.numbers.get(n, idle), self.policy) for n in self.numbers}
        canary_calls = state.canary_calls + sum(x.canary.attempted for x in second.numbers.values())
        baseline_calls = state.baseline_calls + sum(x.baseline.attempted for x in second.numbers.values())
        now = state.second + 1

        arrays = rules.Totals(**{f: np.array([getattr(totals[n], f) for n in self.numbers], dtype=np.int64)
                                 for f in ("canary_trials", "canary_failures", "baseline_trials",
                                           "baseline_failures", "pairs", "above_harmless", "below_shift")})
        stats = rules.statistics(arrays, self.policy)
        ids = self.pass_ids()
        crossed = stats.pass_statistics() >= self.pass_boundary
        passed = state.passed | frozenset(i for i, c in zip(ids, crossed, strict=True) if c)
        cap = self.policy.max_calls_per_arm
        spent = now >= self.policy.max_seconds or (cap is not None and canary_calls >= cap)
        code = rules.decide(stats, np.array([i in passed for i in ids]), spent, fail_boundary=self.fail_boundary)
        decision = rules.CODES[int(code)]

        tests = self._evidence(totals, stats, passed)
        look = Look(second=now, decision=decision, reasons=self._reasons(decision, tests, spent, now, canary_calls),
                    tests=tests, canary_calls=canary_calls, baseline_calls=baseline_calls)
        new_state = JudgeState(second=now, canary_calls=canary_calls, baseline_calls=baseline_calls, totals=totals,
                               passed=frozenset(passed), decision=decision)
        return new_state, look

    def _evidence(self, totals: dict[str, NumberTotals], s: rules.Statistics,
                  passed: frozenset[str]) -> tuple[CheckEvidence, ...]:
        scopes = (*self.numbers, POOLED)
        fb, pb = self.fail_boundary, self.pass_boundary

        def summed(scope: str, field: str) -> int:
            chosen = self.numbers if scope == POOLED else (scope,)
            return sum(int(getattr(totals[n], field)) for n in chosen)

        out: list[CheckEvidence] = []
        for i, scope in enumerate(scopes):
            fc, nc = summed(scope, "canary_failures"), summed(scope, "canary_trials")
            fbl, nbl = summed(scope, "baseline_failures"), summed(scope, "baseline_trials")
            estimate = fc / nc - fbl / nbl if nc and nbl else None
            out.append(CheckEvidence(
                kind=CheckKind.FAILURES, scope=scope, estimate=estimate,
                counts={"canary_failures": fc, "canary_trials": nc, "baseline_failures": fbl, "baseline_trials": nbl},
                log_e_fail=float(s.failures_fail[i]), fail_boundary=fb, crossed_fail=bool(s.failures_fail[i] >= fb),
                log_e_pass=float(s.failures_pass[i]), pass_boundary=pb,
                passed=f"{CheckKind.FAILURES}:{scope}" in passed))
        for i, scope in enumerate(scopes):
            pairs, above = summed(scope, "pairs"), summed(scope, "above_harmless")
            out.append(CheckEvidence(
                kind=CheckKind.SRD_SHIFT, scope=scope, estimate=above / pairs if pairs else None,
                counts={"pairs": pairs, "above_harmless": above, "below_shift": summed(scope, "below_shift")},
                log_e_fail=float(s.srd_fail[i]), fail_boundary=fb, crossed_fail=bool(s.srd_fail[i] >= fb),
                log_e_pass=float(s.srd_pass[i]), pass_boundary=pb,
                passed=f"{CheckKind.SRD_SHIFT}:{scope}" in passed))
        for i, n in enumerate(self.numbers):
            t = totals[n]
            out.append(CheckEvidence(
                kind=CheckKind.SER_FLOOR, scope=n,
                estimate=1 - t.canary_failures / t.canary_trials if t.canary_trials else None,
                counts={"canary_failures": t.canary_failures, "canary_trials": t.canary_trials,
                        "baseline_failures": t.baseline_failures, "baseline_trials": t.baseline_trials},
                log_e_fail=float(s.floor_fail[i]), fail_boundary=fb, crossed_fail=bool(s.floor_fail[i] >= fb),
                log_e_baseline=float(s.baseline_floor[i])))
        return tuple(out)

    def _reasons(self, decision: Decision, tests: tuple[CheckEvidence, ...], spent: bool, now: int,
                 calls: int) -> tuple[str, ...]:
        floor = self.policy.ser_floor
        reasons: list[str] = []
        for t in tests:
            c = t.counts
            if t.kind is CheckKind.FAILURES and t.crossed_fail:
                reasons.append(f"{t.scope}: failures {c['canary_failures']}/{c['canary_trials']} above baseline "
                               f"{c['baseline_failures']}/{c['baseline_trials']} "
                               f"(log e {t.log_e_fail:.1f} >= {t.fail_boundary:.1f})")
            elif t.kind is CheckKind.SRD_SHIFT and t.crossed_fail:
                reasons.append(f"{t.scope}: setup delay over baseline by more than {self.policy.srd_harmless_ms:g} ms "
                               f"in {c['above_harmless']}/{c['pairs']} pairs "
                               f"(log e {t.log_e_fail:.1f} >= {t.fail_boundary:.1f})")
            elif t.kind is CheckKind.SER_FLOOR:
                base_below = c["baseline_failures"] > (1 - floor) * c["baseline_trials"]
                if t.crossed_fail:
                    who = ", but baseline below the floor too: estate unhealthy" if base_below else ""
                    reasons.append(f"{t.scope}: SER {t.estimate:.2%} significantly below floor {floor:.0%} "
                                   f"(log e {t.log_e_fail:.1f} >= {t.fail_boundary:.1f}){who}")
                if t.log_e_baseline is not None and t.log_e_baseline >= t.fail_boundary:
                    reasons.append(f"{t.scope}: baseline SER significantly below floor {floor:.0%}: estate unhealthy")
        if decision is Decision.PASS:
            reasons.append(f"every regression that matters ruled out with power {self.policy.power:.0%} "
                           f"after {now} s and {calls} canary calls")
        elif decision is Decision.INCONCLUSIVE and spent and not reasons:
            open_tests = [f"{t.kind}:{t.scope}" for t in tests if t.kind is not CheckKind.SER_FLOOR and not t.passed]
            reasons.append(f"budget spent ({now} s, {calls} canary calls) before deciding: "
                           f"{', '.join(open_tests)} still open")
        return tuple(reasons)


def _accumulate(t: NumberTotals, inc: NumberSecond, policy: SequentialPolicy) -> NumberTotals:
    """Add one second to a number's totals; pair setup delays first in, first out.

    Pairs are formed by arrival order only, never by value, so under "no shift" each pair's
    difference is as likely positive as negative. Unpaired delays wait for the other arm; past
    `pending_delays_max` the oldest are dropped (again regardless of value), which bounds memory
    when one arm is far faster."""
    c, b = inc.canary, inc.baseline
    cq, bq = t.canary_pending + c.srd_ms, t.baseline_pending + b.srd_ms
    k = min(len(cq), len(bq))
    diff = np.asarray(cq[:k], dtype=np.float64) - np.asarray(bq[:k], dtype=np.float64)
    cap = policy.pending_delays_max
    return NumberTotals(
        canary_trials=t.canary_trials + c.answered + c.failed, canary_failures=t.canary_failures + c.failed,
        baseline_trials=t.baseline_trials + b.answered + b.failed, baseline_failures=t.baseline_failures + b.failed,
        pairs=t.pairs + k, above_harmless=t.above_harmless + int((diff > policy.srd_harmless_ms).sum()),
        below_shift=t.below_shift + int((diff < policy.srd_shift_ms).sum()),
        canary_pending=cq[k:][-cap:], baseline_pending=bq[k:][-cap:])
