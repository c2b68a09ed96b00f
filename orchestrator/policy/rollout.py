"""The rollout policy document (policies/*.yml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.policy.model import GatePolicy


class RolloutPolicy(BaseModel):
    """A whole policy file; the gate section drives `callfleet gate` and every rollout wave."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(default="default", min_length=1, max_length=64)
    description: str = ""
    gate: GatePolicy = GatePolicy()
