"""Sequential judgement of a gate (issue 15, the pure statistical core; the bake's floor test uses it).

Looks every second at the calls made so far and stops as soon as the evidence allows: FAIL when a
regression is certain at the gate's share of the rollout's false-FAIL budget, PASS when every
regression that matters is ruled out with the configured power, INCONCLUSIVE only when the
call/time budget is spent (or the baseline itself is below the SER floor). Anytime-valid: the
false-FAIL guarantee holds however often the gate looks.

- `evidence`: the e-processes (mixture likelihood over the null's maximum likelihood);
- `rules`: every test's statistic and the stopping rule, on arrays;
- `judge`: `SequentialJudge`, one gate, one look per second (pure: state in, state and look out);
- `batch`: many gates at once (simulations, benchmarks);
- `budget`: one false-FAIL budget per rollout, split over waves, stages and tests;
- `minimum`: the fixed-sample minimum for the same alpha and power (the yardstick);
- `floor`: the SER floor test of a fixed probe (the bake's health probe);
- `SequentialPolicy` (in `orchestrator.policy.sequential`): the parameters and their defaults.
"""

from orchestrator.gate.sequential.budget import BudgetSplit, split, tests_per_gate
from orchestrator.gate.sequential.judge import SequentialJudge
from orchestrator.gate.sequential.model import (
    POOLED,
    ArmSecond,
    CheckEvidence,
    CheckKind,
    Decision,
    JudgeState,
    Look,
    NumberSecond,
    Second,
)
from orchestrator.policy.sequential import SequentialPolicy

__all__ = [
    "POOLED",
    "ArmSecond",
    "BudgetSplit",
    "CheckEvidence",
    "CheckKind",
    "Decision",
    "JudgeState",
    "Look",
    "NumberSecond",
    "Second",
    "SequentialJudge",
    "SequentialPolicy",
    "split",
    "tests_per_gate",
]
