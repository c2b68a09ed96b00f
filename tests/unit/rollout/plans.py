"""Small valid plans for the rollout unit tests (digest computed, so `Plan` accepts them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
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


# One wave of a run, phase by phase, from its preparation to its bake.
WAVE_TO_BAKE = (Phase.PREPARING, Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING,
                Phase.STEPPING, Phase.BAKING)


def wave_moves(wave: int, *, upto: Phase = Phase.BAKING) -> list[tuple[Phase, int | None]]:
    """The moves of wave `wave` from its preparation to `upto`, for `journal_run`."""
    phases = WAVE_TO_BAKE[: WAVE_TO_BAKE.index(upto) + 1]
    return [(p, wave if p == Phase.PREPARING else None) for p in phases]


def journal_run(path: Path, plan: Plan, moves: Sequence[tuple[Phase, int | None]]) -> tuple[Journal, str]:
    """A new SQLite journal at `path` holding a run of `plan` (lease taken) moved through `moves`
    ((phase, wave or None), each legal in turn): a run already part-way, for the executor to drive."""
    j = Journal(path, create=True)
    run = j.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target=plan.target, inventory="i",
                       policy="p")
    j.take_lease(run.id)
    for phase, wave in moves:
        j.transition(run.id, phase, wave=wave)
    return j, run.id
