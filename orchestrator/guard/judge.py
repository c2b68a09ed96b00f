"""Judge the upgraded sites against the untouched ones: culprits, drains, the rollback order.

Each upgraded site's failures, per number and over the live counters, are compared with the
untouched sites' pooled on the same scope, by the anytime-valid two-sample e-process of the
gate (`gate.sequential.evidence.two_sample`, null: the site fails no more than the untouched
sites plus `failure_tolerance`). With no untouched site left to compare with (the last
waves), a site is judged against the absolute SER floor instead (`one_sample`), as the bake's
probe is.

A latent bug wakes late: counts since the guard began would dilute its first failures in
hours of good calls. So the guard runs one e-process per possible start (each round j: the
counts since j) and fires when any crosses its own boundary, log(1/alpha) + log(j(j+1)):
the weights 1/(j(j+1)) sum to 1, so the union bound keeps the chance of a false trigger on
a good release within the run's `false_trigger_budget` (split, Bonferroni, over every site
and scope it could judge), however long the run and however often it looks. A bug that
wakes at round 60 costs log(3660) = 8 more nats than one present from the start.

A site failing as much as the untouched sites is not a culprit, however badly both fail: the
estate, not the release, is then the suspect, and draining would only remove capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from orchestrator.frozen import Frozen
from orchestrator.gate.sequential.evidence import Side, one_sample, two_sample
from orchestrator.policy.guard import GuardPolicy

LIVE = "*"  # the scope of the edge's live counters (they carry no number label)


class Tally(Frozen):
    """A site's calls and failures on one scope (a number, or LIVE) in one guard round."""

    site: str
    scope: str
    round: int = Field(ge=1, description="the guard round, 1 for the first")
    calls: int = Field(ge=0)
    failed: int = Field(ge=0)

    @model_validator(mode="after")
    def _at_most_calls(self) -> Tally:
        if self.failed > self.calls:
            raise ValueError(f"{self.site}/{self.scope}/round {self.round}: {self.failed} failures in "
                             f"{self.calls} calls")
        return self


class GuardFacts(Frozen):
    """What the guard knows at one round."""

    upgraded: tuple[str, ...] = Field(description="sites this run put on the new release, in upgrade order")
    untouched: tuple[str, ...] = Field(description="sites of the plan still on their from-release")
    drained: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = Field(min_length=1, description="the numbers probed, and LIVE")
    tallies: tuple[Tally, ...] = ()


class Culprit(Frozen):
    """An upgraded site that fails more than the untouched sites, beyond doubt."""

    site: str
    scope: str
    since_round: int = Field(description="the start whose counts crossed: the fault showed from here")
    calls: int
    failed: int
    baseline_calls: int | None = Field(description="the untouched sites' calls on the scope (None: the floor)")
    baseline_failed: int | None
    log_e: float
    boundary: float

    @property
    def reason(self) -> str:
        """One line for the halt reason, the evidence and the alert."""
        scope = "live calls" if self.scope == LIVE else f"number {self.scope}"
        against = (f"untouched sites {self.baseline_failed}/{self.baseline_calls}" if self.baseline_calls is not None
                   else "the SER floor")
        return (f"{self.site}: {scope}: {self.failed}/{self.calls} failed since guard round {self.since_round} "
                f"against {against} (evidence {self.log_e:.1f} >= {self.boundary:.1f} nats)")


class GuardVerdict(Frozen):
    """The round's decision: culprits (strongest first), what to drain now, what to roll back."""

    culprits: tuple[Culprit, ...]
    drain: tuple[str, ...] = Field(description="culprits to take out of traffic now")
    kept_live: tuple[str, ...] = Field(description="culprits left serving: the last sites taking calls")
    rollback_order: tuple[str, ...] = Field(description="every upgraded site, culprits first")

    @property
    def fired(self) -> bool:
        """Whether some upgraded site is a culprit."""
        return bool(self.culprits)


def boundary(policy: GuardPolicy, *, sites: int, scopes: int) -> float:
    """log(1/alpha) of one site and scope, before the start's own log(j(j+1))."""
    return -math.log(policy.false_trigger_budget / (max(sites, 1) * max(scopes, 1)))


def judge(facts: GuardFacts, policy: GuardPolicy) -> GuardVerdict:
    """This round's culprits among the upgraded sites, and what to do about them."""
    rounds = max((t.round for t in facts.tallies), default=0)
    per = _increments(facts.tallies, rounds)
    level = boundary(policy, sites=len(facts.upgraded) + len(facts.untouched), scopes=len(facts.scopes))
    worst: dict[str, Culprit] = {}
    for site in facts.upgraded:
        for scope in facts.scopes:
            culprit = _judge_one(site, scope, per, facts.untouched, policy, level, rounds)
            if culprit is not None and (site not in worst or culprit.log_e - culprit.boundary >
                                        worst[site].log_e - worst[site].boundary):
                worst[site] = culprit
    culprits = tuple(sorted(worst.values(), key=lambda c: (-(c.log_e - c.boundary), c.site)))
    drain, kept = _drains(culprits, facts)
    named = [c.site for c in culprits]
    rest = [s for s in reversed(facts.upgraded) if s not in worst]
    return GuardVerdict(culprits=culprits, drain=drain, kept_live=kept,
                        rollback_order=tuple(named + rest) if culprits else ())


Ints = npt.NDArray[np.int64]


def _increments(tallies: Sequence[Tally], rounds: int) -> dict[tuple[str, str], tuple[Ints, Ints]]:
    """(site, scope) -> per-round calls and failures, index 0 for round 1."""
    out: dict[tuple[str, str], tuple[Ints, Ints]] = {}
    for t in tallies:
        calls, failed = out.setdefault((t.site, t.scope), (np.zeros(rounds, np.int64), np.zeros(rounds, np.int64)))
        calls[t.round - 1] += t.calls
        failed[t.round - 1] += t.failed
    return out


def _since(x: Ints) -> Ints:
    """Counts since each start j (index j-1): suffix sums."""
    return np.asarray(np.cumsum(x[::-1])[::-1], dtype=np.int64)


def _judge_one(site: str, scope: str, per: dict[tuple[str, str], tuple[Ints, Ints]], untouched: Sequence[str],
               policy: GuardPolicy, level: float, rounds: int) -> Culprit | None:
    if (site, scope) not in per or rounds == 0:
        return None
    calls, failed = (_since(x) for x in per[(site, scope)])
    base = [per[(s, scope)] for s in untouched if (s, scope) in per]
    base_calls = _since(sum((b[0] for b in base), np.zeros(rounds, np.int64)))
    base_failed = _since(sum((b[1] for b in base), np.zeros(rounds, np.int64)))
    starts = np.arange(1, rounds + 1, dtype=np.float64)
    thresholds = level + np.log(starts * (starts + 1))
    compared = base_calls > 0
    log_e = np.where(compared,
                     two_sample(failed, calls, base_failed, base_calls, policy.failure_tolerance, Side.AT_MOST),
                     one_sample(failed, calls, 1.0 - policy.ser_floor, Side.AT_MOST))
    log_e = np.where(calls > 0, log_e, -np.inf)
    margin = log_e - thresholds
    j = int(np.argmax(margin))
    if margin[j] < 0:
        return None
    return Culprit(site=site, scope=scope, since_round=j + 1, calls=int(calls[j]), failed=int(failed[j]),
                   baseline_calls=int(base_calls[j]) if compared[j] else None,
                   baseline_failed=int(base_failed[j]) if compared[j] else None,
                   log_e=float(log_e[j]), boundary=float(thresholds[j]))


def _drains(culprits: Sequence[Culprit], facts: GuardFacts) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Never the last site taking calls: a failing site still answers some, an empty edge none.
    serving = [s for s in (*facts.upgraded, *facts.untouched) if s not in facts.drained]
    drain: list[str] = []
    kept: list[str] = []
    for c in culprits:
        if c.site in facts.drained:
            continue
        if len([s for s in serving if s not in drain]) > 1:
            drain.append(c.site)
        else:
            kept.append(c.site)
    return tuple(drain), tuple(kept)
