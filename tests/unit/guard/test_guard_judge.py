"""The fleet guard's pure judgement: culprits named fast, never on a good release, never the last site."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.guard.judge import LIVE, GuardFacts, Tally, judge
from orchestrator.policy.guard import GuardPolicy

POLICY = GuardPolicy()
NUMBERS = ("112", "15", "17", "18")
SCOPES = (*NUMBERS, LIVE)
# per round and site, at the lab's rates: 4 probe calls per number, ~16 live calls
PER_ROUND = {**dict.fromkeys(NUMBERS, 4), LIVE: 16}


def _rounds(sites: dict[str, list[float]], *, first: int = 1) -> list[Tally]:
    """Tallies for rounds first.., each site failing the given share of its calls in each round."""
    out = []
    for site, shares in sites.items():
        for i, share in enumerate(shares):
            for scope, n in PER_ROUND.items():
                out.append(Tally(site=site, scope=scope, round=first + i, calls=n, failed=round(n * share)))
    return out


def test_a_bug_waking_after_an_hour_of_good_calls_is_named_in_the_first_failing_round() -> None:
    """Site1 (the canary) good for 700 rounds, then failing every call: culprit at once."""
    good = [0.0] * 700
    tallies = _rounds({"site1": [*good, 1.0], "site2": [*good, 0.0], "site3": [*good, 0.0], "site4": [*good, 0.0]})
    facts = GuardFacts(upgraded=("site1", "site2"), untouched=("site3", "site4"), scopes=SCOPES,
                       tallies=tuple(tallies))
    verdict = judge(facts, POLICY)
    assert verdict.fired
    assert [c.site for c in verdict.culprits] == ["site1"]
    culprit = verdict.culprits[0]
    assert culprit.since_round == 701  # the counts from the wake, not diluted by the hour before
    assert "site1:" in culprit.reason and "since guard round 701" in culprit.reason
    assert verdict.drain == ("site1",)
    assert verdict.rollback_order == ("site1", "site2")  # culprit first, then the others newest first


def test_the_same_fault_needing_many_calls_to_appear_is_named_once_it_shows() -> None:
    # a leak: fine for 30 rounds, then 1 call in 4 fails, then every call
    shares = [0.0] * 30 + [0.25, 1.0]
    tallies = _rounds({"site2": shares, "site1": [0.0] * 32, "site3": [0.0] * 32})
    verdict = judge(GuardFacts(upgraded=("site1", "site2"), untouched=("site3",), scopes=SCOPES,
                               tallies=tuple(tallies)), POLICY)
    assert [c.site for c in verdict.culprits] == ["site2"]
    assert verdict.rollback_order == ("site2", "site1")


def test_a_fault_of_the_whole_estate_is_not_the_release() -> None:
    """Every site failing alike (a PSAP down): nothing to drain, nothing to roll back."""
    tallies = _rounds({s: [0.5] * 10 for s in ("site1", "site2", "site3", "site4")})
    verdict = judge(GuardFacts(upgraded=("site1", "site2"), untouched=("site3", "site4"), scopes=SCOPES,
                               tallies=tuple(tallies)), POLICY)
    assert not verdict.fired
    assert verdict.drain == () and verdict.rollback_order == ()


def test_with_no_untouched_site_the_floor_judges() -> None:
    tallies = _rounds({"site1": [0.0] * 5, "site2": [0.0] * 4 + [0.75]})
    verdict = judge(GuardFacts(upgraded=("site1", "site2"), untouched=(), scopes=SCOPES, tallies=tuple(tallies)),
                    POLICY)
    assert [c.site for c in verdict.culprits] == ["site2"]
    assert verdict.culprits[0].baseline_calls is None and "the SER floor" in verdict.culprits[0].reason


def test_never_the_last_site_taking_calls() -> None:
    """Both sites failing, the other one already drained: the culprit keeps serving, named."""
    tallies = _rounds({"site1": [0.0, 1.0], "site2": [0.0, 1.0]})
    facts = GuardFacts(upgraded=("site1", "site2"), untouched=(), drained=frozenset({"site2"}), scopes=SCOPES,
                       tallies=tuple(tallies))
    verdict = judge(facts, POLICY)
    assert {c.site for c in verdict.culprits} == {"site1", "site2"}
    assert verdict.drain == ()
    assert verdict.kept_live == ("site1",)
    # with a third site serving, both culprits go
    more = GuardFacts(upgraded=("site1", "site2"), untouched=("site3",), scopes=SCOPES,
                      tallies=(*tallies, *_rounds({"site3": [0.0, 0.0]})))
    assert set(judge(more, POLICY).drain) == {"site1", "site2"}


def test_a_site_with_no_calls_yet_is_not_judged() -> None:
    verdict = judge(GuardFacts(upgraded=("site1",), untouched=("site2",), scopes=SCOPES,
                               tallies=tuple(_rounds({"site2": [0.0]}))), POLICY)
    assert not verdict.fired
    assert not judge(GuardFacts(upgraded=("site1",), untouched=(), scopes=SCOPES), POLICY).fired


def test_more_failures_than_calls_is_refused() -> None:
    with pytest.raises(ValidationError, match="5 failures in 4 calls"):
        Tally(site="site1", scope="112", round=1, calls=4, failed=5)


def test_good_releases_with_background_failures_and_a_look_every_round_stay_within_the_budget() -> None:
    """200 good runs of 20 rounds, 1% of calls failing everywhere, judged every round, at a
    deliberately large budget (20%) so that an invalid boundary would show."""
    policy = GuardPolicy(false_trigger_budget=0.2, failure_tolerance=0.0)
    rng = np.random.default_rng(14)
    fired = 0
    for _ in range(200):
        tallies = [Tally(site=site, scope=LIVE, round=r, calls=16, failed=int(rng.binomial(16, 0.01)))
                   for r in range(1, 21) for site in ("site1", "site2", "site3")]
        for r in range(1, 21):
            facts = GuardFacts(upgraded=("site1",), untouched=("site2", "site3"), scopes=(LIVE,),
                               tallies=tuple(t for t in tallies if t.round <= r))
            if judge(facts, policy).fired:
                fired += 1
                break
    print(f"false triggers: {fired} of 200 good runs (budget 20%)")
    assert fired / 200 <= 0.2
