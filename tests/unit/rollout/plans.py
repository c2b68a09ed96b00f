"""Small valid plans for the rollout unit tests (digest computed, so `Plan` accepts them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.rollout.plan import Plan, plan_digest


def plan_doc(estate: str, sites: Sequence[str] = ("site1",)) -> dict[str, Any]:
    """A plan of one wave per site (the first the canary), 5.5.0 -> 5.6.0, as the journal stores it.

    `estate` names the estate claim, which is host-wide: give each test a name of its own."""
    waves = [{"index": i, "site": s, "role": "canary" if i == 1 else "wave", "from_releases": ["5.5.0"],
              "to_release": "5.6.0", "traffic_steps": [{"weight": 100, "bake_s": 1.0}], "bake_s": 1.0,
              "approval_required": False, "not_before_fleet_bake_s": 0.0} for i, s in enumerate(sites, 1)]
    body: dict[str, Any] = {"target": "5.6.0", "policy": "default", "estate": estate, "waves": waves,
                            "skipped": [], "reserve": []}
    return {**body, "digest": plan_digest(body)}


def plan(estate: str, sites: Sequence[str] = ("site1",)) -> Plan:
    """The same, validated."""
    return Plan.model_validate(plan_doc(estate, sites))
