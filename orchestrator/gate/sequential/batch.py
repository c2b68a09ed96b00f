"""Judge many gates at once from arrays of per-second increments: simulations and benchmarks.

The same statistics and stopping rule as `SequentialJudge` (both call `rules`), evaluated for
every gate at every second in a few vectorised passes instead of one look at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.gate.sequential import rules
from orchestrator.gate.sequential.judge import SequentialJudge

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Streams:
    """Per-second increments, each (G gates, T seconds, K numbers in the judge's order).

    Trials are completed outcomes (answered + failed); the delay-pair counts are those the judge
    forms (first in, first out: by second t, min of the arms' cumulative delay samples)."""

    canary_attempted: Ints
    canary_trials: Ints
    canary_failures: Ints
    baseline_trials: Ints
    baseline_failures: Ints
    pairs: Ints
    above_harmless: Ints
    below_shift: Ints


@dataclass(frozen=True)
class Outcome:
    """Per gate: the decision code (`rules.CODES`) and the second it was reached (0: undecided)."""

    decision: npt.NDArray[np.int8]
    second: Ints


def replay(judge: SequentialJudge, streams: Streams, *, chunk: int = 2000) -> Outcome:
    """Every gate's first non-CONTINUE look, as `SequentialJudge.look` would give it."""
    decisions: list[npt.NDArray[np.int8]] = []
    seconds: list[Ints] = []
    gates = streams.canary_trials.shape[0]
    for start in range(0, gates, chunk):
        part = slice(start, start + chunk)
        d, s = _replay(judge, {k: np.cumsum(v[part], axis=1) for k, v in vars(streams).items()})
        decisions.append(d)
        seconds.append(s)
    return Outcome(decision=np.concatenate(decisions), second=np.concatenate(seconds))


def _replay(judge: SequentialJudge, cum: dict[str, Ints]) -> tuple[npt.NDArray[np.int8], Ints]:
    attempted = cum.pop("canary_attempted")
    stats = rules.statistics(rules.Totals(**cum), judge.policy)
    passed = np.logical_or.accumulate(stats.pass_statistics() >= judge.pass_boundary, axis=1)
    looks = attempted.shape[1]
    spent = np.broadcast_to(np.arange(1, looks + 1) >= judge.policy.max_seconds, attempted.shape[:2])
    cap = judge.policy.max_calls_per_arm
    if cap is not None:
        spent = spent | (attempted.sum(axis=-1) >= cap)
    codes = rules.decide(stats, passed, spent, fail_boundary=judge.fail_boundary)  # (G, T)
    decided = codes != rules.CONTINUE
    first = np.argmax(decided, axis=1)
    any_decided = decided.any(axis=1)
    decision = np.where(any_decided, codes[np.arange(codes.shape[0]), first], rules.CONTINUE).astype(np.int8)
    return decision, np.where(any_decided, first + 1, 0).astype(np.int64)
