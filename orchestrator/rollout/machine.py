"""The rollout state machine: phases as an Enum, legal moves as data, illegal moves raise.

A run is (phase, wave). Per wave: [awaiting approval | waiting for the fleet bake] ->
preparing (install + `kamailio -c`, nothing live) -> draining -> switching ->
post-checking -> gating -> stepping (live weight steps) -> baking -> wave done.
Any failure after the drain goes through rolling back to halted. A fleet rollback (the
fleet guard firing, or `rollout undo`) takes every site the run upgraded back to its
from-release, one at a time, from any phase of a running run, or from a finished one
(the run is reopened), and ends halted.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.errors import CallfleetError


class Phase(StrEnum):
    """Where a run is."""

    PENDING = "pending"
    PREFLIGHT = "preflight"
    AWAITING_APPROVAL = "awaiting_approval"
    WAITING_FLEET_BAKE = "waiting_fleet_bake"
    PREPARING = "preparing"
    DRAINING = "draining"
    SWITCHING = "switching"
    POSTCHECKING = "postchecking"
    GATING = "gating"
    STEPPING = "stepping"
    BAKING = "baking"
    WAVE_DONE = "wave_done"
    ROLLING_BACK = "rolling_back"
    FLEET_ROLLING_BACK = "fleet_rolling_back"
    HALTED = "halted"
    COMPLETED = "completed"
    ABORTED = "aborted"


P = Phase
_WAVE_START = frozenset({P.AWAITING_APPROVAL, P.WAITING_FLEET_BAKE, P.PREPARING})

_FLEET = P.FLEET_ROLLING_BACK
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.PENDING: frozenset({P.PREFLIGHT, P.ABORTED}),
    P.PREFLIGHT: _WAVE_START | {P.COMPLETED, P.HALTED, P.ABORTED},
    P.AWAITING_APPROVAL: frozenset({P.WAITING_FLEET_BAKE, P.PREPARING, P.ABORTED, _FLEET}),
    P.WAITING_FLEET_BAKE: frozenset({P.PREPARING, P.HALTED, P.ABORTED, _FLEET}),
    # preparing changes nothing live: a failure there halts without a rollback
    P.PREPARING: frozenset({P.DRAINING, P.HALTED, P.ABORTED, _FLEET}),
    # A site in flight may have been changed: every way out (a failure, an abort) is its
    # rollback. No move from here to ABORTED: an abort is recorded when the rollback ends.
    P.DRAINING: frozenset({P.SWITCHING, P.ROLLING_BACK, _FLEET}),
    P.SWITCHING: frozenset({P.POSTCHECKING, P.ROLLING_BACK, _FLEET}),
    P.POSTCHECKING: frozenset({P.GATING, P.ROLLING_BACK, _FLEET}),
    P.GATING: frozenset({P.STEPPING, P.ROLLING_BACK, _FLEET}),
    P.STEPPING: frozenset({P.BAKING, P.ROLLING_BACK, _FLEET}),
    P.BAKING: frozenset({P.WAVE_DONE, P.ROLLING_BACK, _FLEET}),
    P.WAVE_DONE: _WAVE_START | {P.COMPLETED, P.ABORTED, _FLEET},
    P.ROLLING_BACK: frozenset({P.HALTED, P.ABORTED, _FLEET}),
    # one site at a time, each back on its from-release; it ends halted, whatever asked for it
    P.FLEET_ROLLING_BACK: frozenset({P.HALTED}),
    # a finished run is reopened only for its fleet rollback (`rollout undo`)
    P.HALTED: frozenset({_FLEET}),
    P.COMPLETED: frozenset({_FLEET}),
    P.ABORTED: frozenset({_FLEET}),
}

TERMINAL = frozenset({P.HALTED, P.COMPLETED, P.ABORTED})
# Phases during which the wave's site may be changed: an abort or a failure must roll it back.
SITE_IN_FLIGHT = frozenset({P.DRAINING, P.SWITCHING, P.POSTCHECKING, P.GATING, P.STEPPING, P.BAKING,
                            P.ROLLING_BACK, P.FLEET_ROLLING_BACK})


class IllegalTransition(CallfleetError):
    """A move the state machine does not allow (a bug, or a tampered journal)."""


def check(src: Phase, dst: Phase) -> None:
    """Raise IllegalTransition unless src -> dst is in the table."""
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(f"illegal rollout transition {src} -> {dst}")
