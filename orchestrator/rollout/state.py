"""The typed run state a rollout keeps between steps (the journal's `progress` column).

Written by the executor (weights, steps, bakes, halts) and by the CLI (approvals, abort
requests, the policy digest); every write is validated against this model, so a misspelt key
or a wrong type fails where it is written, not three waves later where it is read.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from orchestrator.errors import ExitCode
from orchestrator.frozen import Frozen
from orchestrator.rollout.machine import Phase

# Journals written before this model kept per-wave facts as flat keys: "wave3_step".
_LEGACY_WAVE_KEY = re.compile(r"^wave(\d+)_(step|bake_started)$")


class WaveProgress(Frozen):
    """Where one wave stands inside its site's live steps and bake."""

    step: int = Field(default=0, ge=0, description="the next live-traffic step to take")
    bake_started: float | None = Field(default=None, description="when the bake began (clock seconds)")


class FleetRollback(Frozen):
    """A fleet rollback under way: why, what is left, what is done."""

    reason: str
    queue: tuple[str, ...] = Field(description="sites still to take back, the next first")
    done: tuple[str, ...] = ()
    failed: tuple[str, ...] = Field(default=(), description="sites whose rollback failed (left drained)")
    culprits: tuple[str, ...] = Field(default=(), description="sites the fleet guard named")
    exit_code: ExitCode = ExitCode.FLEET_ROLLED_BACK


class GuardFired(Frozen):
    """The fleet guard named culprits: the run turns to its fleet rollback."""

    at: float = Field(description="when it fired (clock seconds)")
    culprits: tuple[str, ...] = Field(min_length=1)
    drained: tuple[str, ...] = Field(default=(), description="culprits it took out of traffic at once")
    reasons: tuple[str, ...] = ()


class Inconclusive(Frozen):
    """A gate or live step that could not tell the candidate from its baseline (the baseline
    failing too, the estate slow): before the candidate is blamed, the fleet guard is asked
    whether a site this run upgraded earlier explains it."""

    wave: int = Field(ge=1)
    phase: Phase = Field(description="the phase that was inconclusive: gating or stepping")
    reason: str
    checked: bool = Field(default=False, description="the guard was asked and named no upgraded site")


class Staged(Frozen):
    """A wave's site staged ahead of its turn: its release installed beside the current one."""

    digest: str | None = Field(description="the bundle digest staged (the run's verified bundle)")
    ready: bool = Field(default=False, description="preflight and install succeeded (false: begun, or failed)")
    seconds: float = Field(default=0.0, ge=0, description="how long staging took")
    removed: bool = Field(default=False, description="unstaged after the run ended short of it")
    taken: bool = Field(default=False, description="its wave's own turn reached the drain: from then the "
                        "site is the run's (its rollback, not unstaging, answers for it)")


class RunProgress(Frozen):
    """Everything a run records besides its phase and wave."""

    approvals: dict[int, str] = Field(default_factory=dict, description="wave -> who approved it")
    abort_requested: str | None = Field(default=None, description="who asked for an abort")
    undo_requested: str | None = Field(default=None, description="who asked for a fleet rollback")
    fleet: FleetRollback | None = Field(default=None, description="the fleet rollback, once begun")
    guard: GuardFired | None = Field(default=None, description="the fleet guard's verdict, once it fired")
    inconclusive: Inconclusive | None = Field(default=None, description="an inconclusive verdict being attributed")
    halt_reason: str | None = None
    exit_code: ExitCode | None = Field(default=None, description="the exit code of a halted run")
    original_weights: dict[str, int] = Field(default_factory=dict, description="site -> weight before the run")
    fleet_done_at: float | None = Field(default=None, description="when the last non-reserve wave ended")
    done_waves: tuple[int, ...] = ()
    waves: dict[int, WaveProgress] = Field(default_factory=dict)
    staged: dict[int, Staged] = Field(default_factory=dict, description="wave -> its site staged ahead of its turn")
    policy_digest: str | None = None
    bundle_digest: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold_legacy_wave_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(isinstance(k, str) and _LEGACY_WAVE_KEY.match(k) for k in data):
            return data
        out: dict[str, Any] = {}
        waves: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in (data.get("waves") or {}).items()}
        for key, value in data.items():
            m = _LEGACY_WAVE_KEY.match(key) if isinstance(key, str) else None
            if m:
                waves.setdefault(int(m.group(1)), {})[m.group(2)] = value
            elif key != "waves":
                out[key] = value
        out["waves"] = waves
        return out

    def wave(self, index: int) -> WaveProgress:
        """One wave's progress (a fresh one when nothing is recorded)."""
        return self.waves.get(index, WaveProgress())

    def wave_change(self, index: int, **fields: Any) -> dict[str, Any]:
        """The change that sets `fields` of one wave, for `Journal.update_progress`/`transition`."""
        updated = self.wave(index).model_copy(update=fields)
        return {"waves": {**self.waves, index: WaveProgress.model_validate(updated.model_dump())}}

    def merged(self, changes: dict[str, Any]) -> RunProgress:
        """This progress with `changes` (field -> value) applied, validated."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise ValueError(f"run progress has no field {', '.join(sorted(unknown))}")
        return type(self).model_validate({**self.model_dump(), **changes})
