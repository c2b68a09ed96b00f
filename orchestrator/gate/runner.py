"""Run the gate's stages in order, stopping at the first stage that does not PASS."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import InvalidInput
from orchestrator.estate.model import Estate
from orchestrator.gate import stages
from orchestrator.gate.stages import StageResult
from orchestrator.gate.verdict import Verdict
from orchestrator.policy.model import GatePolicy

StageName = Literal["synthetic+canary", "drill", "soak"]
SYNTHETIC_STAGES: tuple[StageName, ...] = ("synthetic+canary", "drill", "soak")


class GateResult(BaseModel):
    """The gate's verdict on a site, with every stage's evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    site: str
    releases: tuple[str, ...]
    baseline_sites: tuple[str, ...]
    verdict: Verdict
    reasons: tuple[str, ...]
    stages: tuple[StageResult, ...]
    calls: int
    seconds: float


def choose_baselines(estate: Estate, site: str, count: int, *, exclude: Sequence[str] = (),
                     prefer_release: str | None = None) -> list[str]:
    """Untouched sites to compare with: other sites, those on `prefer_release` first."""
    others = [s for s in estate.sites if s.name != site and s.name not in exclude]
    others.sort(key=lambda s: 0 if prefer_release and s.releases == frozenset({prefer_release}) else 1)
    if len(others) < count:
        raise InvalidInput(f"the gate needs {count} baseline site(s) besides {site}; the estate has {len(others)}")
    return [s.name for s in others[:count]]


def run_gate(*, estate: Estate, site: str, policy: GatePolicy, baselines: Sequence[str],
             releases: Sequence[str] = (), only: Sequence[StageName] = SYNTHETIC_STAGES,
             on_stage: Callable[[StageResult], None] | None = None) -> GateResult:
    """Run the synthetic stages (1-4) against a drained site. Live traffic steps (stage 5)
    change traffic and belong to the rollout; see gate/live.py."""
    t0 = time.monotonic()
    done: list[StageResult] = []
    runners: dict[StageName, Callable[[], StageResult]] = {
        "synthetic+canary": lambda: stages.synthetic_and_canary(estate=estate, site=site, baselines=baselines,
                                                                policy=policy),
        "drill": lambda: stages.drill(estate=estate, site=site, baselines=baselines, policy=policy),
        "soak": lambda: stages.soak(estate=estate, site=site, baselines=baselines, policy=policy),
    }
    for name in SYNTHETIC_STAGES:
        if name not in only:
            continue
        result = runners[name]()
        done.append(result)
        if on_stage:
            on_stage(result)
        if result.verdict != Verdict.PASS:
            break
    verdict = done[-1].verdict if done else Verdict.INCONCLUSIVE
    reasons = tuple(f"{r.stage}: {why}" for r in done for why in r.reasons) if verdict != Verdict.PASS else ()
    return GateResult(site=site, releases=tuple(releases), baseline_sites=tuple(baselines), verdict=verdict,
                      reasons=reasons, stages=tuple(done), calls=sum(r.calls for r in done),
                      seconds=round(time.monotonic() - t0, 3))
