"""The rollout's gate port: judge one wave's drained site against baselines the rollout picks.

The executor asks `WaveGate.judge`; `EstateWaveGate` is the production one (SIPp probes,
the drill, the soak, through `gate.runner`). Unit tests of the executor pass their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator.estate.model import Estate
from orchestrator.gate.runner import GateResult, choose_baselines, run_gate
from orchestrator.gate.stages import StageResult
from orchestrator.policy.model import GatePolicy


class WaveGate(Protocol):
    """The synthetic gate of one wave's site."""

    def judge(self, *, site: str, upgraded: Sequence[str], from_release: str, to_release: str,
              on_stage: Callable[[StageResult], None]) -> GateResult:
        """PASS, FAIL or INCONCLUSIVE for `site`, now on `to_release` (`upgraded`: the sites
        earlier waves put on it)."""
        ...


class EstateWaveGate:
    """The gate's stages against the estate, baselines chosen among the untouched sites."""

    def __init__(self, *, estate: Estate, policy: GatePolicy) -> None:
        self.estate = estate
        self.policy = policy

    def judge(self, *, site: str, upgraded: Sequence[str], from_release: str, to_release: str,
              on_stage: Callable[[StageResult], None]) -> GateResult:
        """Run the synthetic stages (see `gate.runner.run_gate`)."""
        count = self.policy.canary.baseline_sites
        others = len(self.estate.sites) - 1 - len(upgraded)
        # untouched sites first; the last waves (the reserve) compare with sites already
        # proven on the new release, since no untouched site is left
        baselines = choose_baselines(self.estate, site, count, exclude=upgraded if others >= count else (),
                                     prefer_release=from_release)
        return run_gate(estate=self.estate, site=site, policy=self.policy, baselines=baselines,
                        releases=(to_release,), on_stage=on_stage)
