"""The `rollout.guard:` section of a policy: how the fleet guard watches upgraded sites."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GuardPolicy(BaseModel):
    """How often the guard looks, how much it probes, and how sure it must be to fire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="watch every upgraded site until the run ends")
    interval_s: float = Field(default=5.0, gt=0, le=3600, description="seconds between guard rounds")
    probe_calls_per_number: int = Field(default=2, ge=0, le=1000,
                                        description="synthetic calls per number and site (0: live counters only)")
    probe_every_rounds: int = Field(default=3, ge=1, le=1000, description="probe in one round of this many")
    attribute_rounds: int = Field(
        default=3, ge=1, le=100,
        description="rounds with probes run at once when a gate is inconclusive, to find an upgraded site to blame")
    false_trigger_budget: float = Field(
        default=0.001, gt=0, lt=0.5,
        description="chance that the guard fires on a good release in one run (all sites and numbers)")
    failure_tolerance: float = Field(
        default=0.01, ge=0, lt=1,
        description="failure ratio a site may exceed the untouched sites' by before it can be a culprit")
    ser_floor: float = Field(default=0.99, gt=0, lt=1,
                             description="with no untouched site to compare with: the SER floor per number")
