"""The `watch:` section of a policy file: what `callfleet watch` measures, when it raises an
incident, and what it may do about one (docs/WATCH.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# A substitute number the public can dial while the short number is down (as in alerts).
SubstituteNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{10}$")]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class WatchPolicy(BaseModel):
    """The continuous supervisor's thresholds, hysteresis, probe budget and permissions.

    Every round (each `interval_s`) probes every site and every emergency number with
    `calls_per_number` calls, reads the live window of each site, and judges each site over
    the last `window_s` seconds. `open_after` bad rounds in a row open an incident,
    `resolve_after` good rounds in a row resolve it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float = Field(default=30.0, ge=0.5, le=3600, allow_inf_nan=False,
                              description="seconds between the starts of two rounds")
    window_s: float = Field(default=120.0, gt=0, le=24 * 3600, allow_inf_nan=False,
                            description="sliding window of probe results and live metrics")
    calls_per_number: int = Field(default=10, ge=1, le=100, description="probe calls per number per site per round")
    probe_rate: float = Field(default=10.0, gt=0, le=200, allow_inf_nan=False,
                              description="probe calls/s per site, all numbers together")
    parallel_sites: int = Field(default=2, ge=1, le=16, description="sites probed at the same time")
    min_probe_calls: int = Field(default=10, ge=1, description="probe calls per number in the window for a verdict")
    ser_min: Ratio = Field(default=0.95, description="lowest SER per number (probes)")
    srd_p95_max_ms: float = Field(default=1000.0, gt=0, allow_inf_nan=False,
                                  description="highest setup delay p95 per number (probes)")
    live_metrics: bool = Field(default=True, description="read live metrics (needs the inventory's metrics URL)")
    min_live_calls: float = Field(default=20.0, ge=0, allow_inf_nan=False,
                                  description="live attempts in the window for a live verdict")
    asr_min: Ratio = Field(default=0.9, description="lowest live answer-seizure ratio of a site")
    live_srd_p95_max_ms: float = Field(default=2000.0, gt=0, allow_inf_nan=False,
                                       description="highest live setup delay p95 of a site")
    open_after: int = Field(default=2, ge=1, le=100, description="bad rounds in a row that open an incident")
    resolve_after: int = Field(default=3, ge=1, le=100, description="good rounds in a row that resolve it")
    auto_drain: bool = Field(default=True, description="drain a failing site")
    auto_failover: bool = Field(default=True, description="when every site of one release fails and sites of "
                                "another release are healthy, drain the failing release's sites")
    max_drained: int = Field(default=2, ge=0, le=1000, description="most sites drained at once, whoever drained them")
    min_active_sites: int = Field(default=1, ge=1, le=1000, description="sites that always stay active")
    release_refresh_s: float = Field(default=300.0, ge=0, le=24 * 3600, allow_inf_nan=False,
                                     description="how often each host's release is read over SSH (0: the inventory's)")
    substitute_numbers: tuple[SubstituteNumber, ...] = Field(
        default=(), description="10-digit numbers to publish while a short number is down (in the alerts)")

    @model_validator(mode="after")
    def _coherent(self) -> WatchPolicy:
        if self.window_s < self.interval_s:
            raise ValueError(f"window_s ({self.window_s:g}) is shorter than interval_s ({self.interval_s:g}): "
                             "the window would hold no round")
        rounds = max(1, int(self.window_s // self.interval_s))
        if self.min_probe_calls > self.calls_per_number * rounds:
            raise ValueError(f"min_probe_calls ({self.min_probe_calls}) exceeds the calls a window holds "
                             f"({self.calls_per_number} x {rounds} rounds): no verdict would ever be reached")
        return self
