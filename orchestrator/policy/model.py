"""The rollout policy: gate parameters (and, for the rollout engine, order, bakes, approvals).

Every field has a default suited to the lab; production policies raise the counts and
bakes. One site in flight at a time is a hard limit of the engine, not a policy value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.policy.sequential import SequentialPolicy


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyntheticPolicy(_Strict):
    """Stage 1: synthetic calls to every number through the drained site (each host)."""

    calls_per_number: int = Field(default=200, ge=1, le=100_000)
    rate: float = Field(default=100.0, gt=0, le=1000, description="calls/s per number for the site")
    min_calls_per_number: int = Field(default=100, ge=1, le=100_000,
                                      description="fewer answered attempts: INCONCLUSIVE")
    ser_min: float = Field(default=0.99, ge=0, le=1, description="absolute floor of SER per number")
    srd_p95_max_ms: float = Field(default=300.0, gt=0, le=60_000, description="absolute ceiling of SRD p95")

    @model_validator(mode="after")
    def _enough(self) -> SyntheticPolicy:
        if self.min_calls_per_number > self.calls_per_number:
            raise ValueError("min_calls_per_number exceeds calls_per_number: every gate would be INCONCLUSIVE")
        return self


class CanaryPolicy(_Strict):
    """Stage 2: the same probe in the same window against untouched baseline sites."""

    baseline_sites: int = Field(default=1, ge=1, le=5)
    alpha: float = Field(default=0.01, gt=0, lt=0.5, description="significance of the one-sided tests")
    srd_shift_ms: float = Field(default=50.0, ge=0, le=60_000,
                                description="smallest setup-delay increase that matters")


class DrillPolicy(_Strict):
    """Stage 3: routine operational commands on the site's hosts (Fabric), then probe again.

    `{root}` is the host's call-server root, `{ctl}` its kamcmd prefix, `{epoch}` a number
    unique to this drill."""

    commands: tuple[str, ...] = (
        "{ctl} cfg.seti callfleet trunk_generation {epoch}",
        "{ctl} cfg.seti core debug 2",
    )
    calls_per_number: int = Field(default=100, ge=1, le=100_000)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)


class SoakPolicy(_Strict):
    """Stage 4: sustained synthetic load while memory is sampled on the hosts."""

    duration_s: float = Field(default=20.0, gt=0, le=7 * 24 * 3600)
    rate: float = Field(default=100.0, gt=0, le=1000, description="calls/s for the site, over all numbers")
    sample_every_s: float = Field(default=5.0, gt=0, le=3600)
    settle_s: float = Field(default=6.0, ge=0, le=3600, description=(
        "the wait after load for transactions to clear; memory is read as soon as none is left "
        "(kamcmd tm.stats), at most this plus 20 s"))
    # Ceilings past any real call's footprint: a huge value would silently disable the check.
    max_shm_bytes_per_call: float = Field(default=64.0, ge=0, le=1_048_576)
    max_rss_bytes_per_call: float = Field(default=2048.0, ge=0, le=16_777_216)


class LiveStepsPolicy(_Strict):
    """Stage 5: undrain in weight steps with a bake per step, watching live metrics."""

    weights: tuple[int, ...] = (1, 10, 100)
    bake_s: float = Field(default=5.0, ge=0, le=7 * 24 * 3600)
    max_failure_ratio: float = Field(default=0.01, ge=0, le=1)
    srd_p95_max_ms: float = Field(default=300.0, gt=0, le=60_000)
    min_live_calls: int = Field(default=20, ge=0, le=10_000_000)
    metrics_lag_s: float = Field(default=2.0, ge=0, le=300,
                                 description="wait for the metrics backend to have scraped a step before judging it")
    evidence_wait_s: float = Field(default=30.0, ge=0, le=7 * 24 * 3600,
                                   description="at full weight, how much longer to bake while fewer than "
                                               "min_live_calls were seen, before INCONCLUSIVE")

    @model_validator(mode="after")
    def _steps(self) -> LiveStepsPolicy:
        w = list(self.weights)
        if not w or any(x < 1 or x > 100 for x in w) or w != sorted(set(w)) or w[-1] != 100:
            raise ValueError("weights must rise strictly within 1..100 and end at 100 (the full share)")
        return self


class GatePolicy(_Strict):
    """All gate stages."""

    synthetic: SyntheticPolicy = SyntheticPolicy()
    canary: CanaryPolicy = CanaryPolicy()
    drill: DrillPolicy = DrillPolicy()
    soak: SoakPolicy = SoakPolicy()
    live_steps: LiveStepsPolicy = LiveStepsPolicy()
    sequential: SequentialPolicy = SequentialPolicy()
