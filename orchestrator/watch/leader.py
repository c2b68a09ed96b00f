"""Which of several watchers on one store acts: the leader-lease decision core (pure).

Every watcher asks for the leader lease each round (orchestrator.store.lease decides,
on the database's clock). The one granted it leads; the others stand by, observing
without acting. A leader that dies or is cut off stops renewing: its lease expires at
most `lease_s` after its last renewal and a standby asks again within one `interval_s`,
so takeover is bounded by lease_s + interval_s. A new leader first reloads the saved
state (the incidents and the drains the watch owns) before acting. Each action carries
an idempotency key: a key already in the store (taken by an earlier leader, possibly
just before it died) is not taken again.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

from orchestrator.store.lease import Decision, Holder, Verdict


class Role(enum.StrEnum):
    """A watcher's role in a round."""

    LEADER = "leader"
    STANDBY = "standby"


class Change(enum.StrEnum):
    """What a round's lease decision changed."""

    NONE = "none"
    BECAME_LEADER = "became_leader"  # reload the saved state before acting
    LOST_LEADERSHIP = "lost_leadership"  # stop acting at once, before the next effect


class Leadership(BaseModel):
    """The outcome of one round's lease request."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: Role
    change: Change
    token: int | None  # the fencing token every action of this round names (leaders only)
    leader: Holder | None  # who leads (for a standby's status line)


def step(previous: Role, decision: Decision) -> Leadership:
    """The role for this round from the lease decision and the previous round's role."""
    if decision.verdict is Verdict.REFUSED:
        change = Change.LOST_LEADERSHIP if previous is Role.LEADER else Change.NONE
        return Leadership(role=Role.STANDBY, change=change, token=None, leader=decision.holder)
    # a GRANTED lease while we thought we led means it lapsed and was re-granted: another
    # watcher may have led in between, so the saved state is reloaded as on a first grant
    fresh = previous is Role.STANDBY or decision.verdict is Verdict.GRANTED
    return Leadership(role=Role.LEADER, change=Change.BECAME_LEADER if fresh else Change.NONE,
                      token=decision.token, leader=decision.holder)


def takeover_bound_s(*, lease_s: float, interval_s: float) -> float:
    """The longest a dead leader's estate goes without a leader."""
    return lease_s + interval_s


def lease_fits(*, lease_s: float, interval_s: float) -> bool:
    """A leader renews once a round: its lease must outlive a round with room for a slow one."""
    return lease_s >= 2 * interval_s


def action_key(*, incident: str, kind: str, site: str) -> str:
    """The idempotency key of a steering action: one drain (or failover, undrain) per site per incident."""
    return f"{incident}/{kind}/{site}"
