"""Incidents with hysteresis, table-driven on an injected clock: each round of site3 is
B (bad: a host down), G (good) or U (unknown: no probe reached it); the table says which
events each round raises."""

from __future__ import annotations

import pytest

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.incidents import collapse_blind, incident_id, record_action, record_hold, step
from orchestrator.watch.model import Blind, IncidentKind, RoundFacts, WatchState
from tests.unit.watch.helpers import NUMBERS, POLICY, SITES, T0, live, round_facts, run_rounds, site_probes

# A window of one round, so only the hysteresis decides (the window has its own tests).
ONE_ROUND = POLICY.model_copy(update={"window_s": 10.0})


def facts_for(pattern: str) -> list[RoundFacts]:
    out = []
    for i, ch in enumerate(pattern):
        at = T0 + 10 * i
        f = round_facts(at, bad={"site3": [2]} if ch == "B" else None)
        if ch == "U":
            f = f.model_copy(update={"probes": tuple(p for p in f.probes if p.site != "site3")})
        out.append(f)
    return out


def events_of(pattern: str, policy: WatchPolicy = ONE_ROUND) -> str:
    """One letter per round: o opened, r resolved, . nothing (site3's events only)."""
    _, per_round = run_rounds(facts_for(pattern), policy=policy)
    letters = []
    for events in per_round:
        mine = [e.kind for e in events if e.incident.site == "site3" and e.kind != "incident_updated"]
        letters.append({(): ".", ("incident_opened",): "o", ("incident_resolved",): "r"}[tuple(mine)])
    return "".join(letters)


TABLE = [
    # (rounds, events) with open_after=2, resolve_after=3
    ("G", "."),
    ("GGGG", "...."),
    ("B", "."),
    ("BB", ".o"),
    ("BGBGBG", "......"),          # never two bad rounds in a row: never opened
    ("BUB", "..o"),                # an unknown round breaks neither streak
    ("BBBBB", ".o..."),            # opened once, not every round
    ("BBGG", ".o.."),
    ("BBGGG", ".o..r"),
    ("BBGGBGGG", ".o.....r"),      # a bad round restarts the good streak
    ("BBGGUUG", ".o....r"),        # missing data neither resolves nor delays
    ("BBUUUUUU", ".o......"),      # missing data never resolves
    ("BBGGGBB", ".o..r.o"),        # a relapse is a new incident
]


@pytest.mark.parametrize(("pattern", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_hysteresis(pattern: str, expected: str) -> None:
    assert events_of(pattern) == expected


def test_open_after_one_and_resolve_after_one() -> None:
    quick = ONE_ROUND.model_copy(update={"open_after": 1, "resolve_after": 1})
    assert events_of("BGBG", quick) == "oror"


def test_sliding_window_delays_resolution_until_bad_samples_age_out() -> None:
    # window 30 s, rounds every 10 s: the bad round's samples weigh on the next two rounds.
    assert events_of("BBGGGGG", POLICY) == ".o....r"


def test_opened_incident_names_site_numbers_since_and_evidence() -> None:
    state, per_round = run_rounds(facts_for("BB"), policy=ONE_ROUND)
    (event,) = per_round[1]
    inc = event.incident
    assert inc.kind == IncidentKind.SITE_FAILING and inc.site == "site3"
    assert inc.failing_numbers == NUMBERS
    assert inc.since == T0 and inc.opened_at == T0 + 10  # since: the first bad round
    assert inc.id == incident_id("site:site3", T0) == "watch/site/site3/20231114T221320Z"
    assert inc.evidence["ser_15"] == 0.5
    assert state.incidents["site:site3"] == inc


def test_update_only_when_the_failing_numbers_change() -> None:
    rounds = [round_facts(T0, bad={"site3": [1, 2]}, bad_numbers=["112"]),
              round_facts(T0 + 10, bad={"site3": [1, 2]}, bad_numbers=["112"]),
              round_facts(T0 + 20, bad={"site3": [1, 2]}, bad_numbers=["112"]),
              round_facts(T0 + 30, bad={"site3": [1, 2]}, bad_numbers=["112", "18"])]
    _, per_round = run_rounds(rounds, policy=ONE_ROUND)
    assert [[e.kind for e in r] for r in per_round] == [[], ["incident_opened"], [], ["incident_updated"]]
    assert per_round[3][0].changes == ("now failing: 18",)
    assert per_round[3][0].incident.failing_numbers == ("18", "112")


def test_two_sites_make_two_incidents() -> None:
    rounds = [round_facts(T0 + 10 * i, bad={"site2": [1], "site5": [1, 2]}) for i in range(2)]
    state, per_round = run_rounds(rounds, policy=ONE_ROUND)
    assert sorted(e.incident.site or "" for e in per_round[1]) == ["site2", "site5"]
    assert set(state.incidents) == {"site:site2", "site:site5"}


def test_live_failure_alone_opens_an_incident_without_numbers() -> None:
    rounds = [round_facts(T0 + 10 * i, live_for=[live("site4", at=T0 + 10 * i, answered=10)]) for i in range(2)]
    state, _ = run_rounds(rounds, policy=ONE_ROUND)
    inc = state.incidents["site:site4"]
    assert inc.failing_numbers == () and inc.codes == ("live_asr",)


# --- supervision blind ---------------------------------------------------------------

def metrics_down(*sites: str) -> list[Blind]:
    return [Blind(source="metrics", site=s, message="Prometheus at http://x is unreachable") for s in sites]


def test_collapse_blind_all_sites_become_one_estate_entry() -> None:
    assert collapse_blind(metrics_down(*SITES), sites=SITES) == (
        Blind(source="metrics", site=None, message="Prometheus at http://x is unreachable"),)
    assert [b.site for b in collapse_blind(metrics_down("site2", "site2"), sites=SITES)] == ["site2"]


def test_metrics_outage_is_one_blind_incident_and_resolves() -> None:
    rounds = [round_facts(T0 + 10 * i, blind=metrics_down(*SITES) if i < 3 else []) for i in range(7)]
    state, per_round = run_rounds(rounds, policy=ONE_ROUND)
    kinds = [[(e.kind, e.incident.key) for e in r] for r in per_round]
    assert kinds == [[], [("incident_opened", "blind:metrics")], [], [], [],
                     [("incident_resolved", "blind:metrics")], []]
    opened = per_round[1][0].incident
    assert opened.kind == IncidentKind.SUPERVISION_BLIND and "unreachable" in opened.reasons[0]
    assert not state.incidents and not state.tracks.get("blind:metrics")


def test_one_site_without_metrics_is_its_own_blind_incident() -> None:
    rounds = [round_facts(T0 + 10 * i, blind=metrics_down("site6")) for i in range(2)]
    state, _ = run_rounds(rounds, policy=ONE_ROUND)
    assert set(state.incidents) == {"blind:metrics:site6"}
    assert state.incidents["blind:metrics:site6"].site == "site6"


def test_blind_site_key_is_neutral_while_the_whole_source_is_blind() -> None:
    rounds = [round_facts(T0, blind=metrics_down("site6")), round_facts(T0 + 10, blind=metrics_down("site6")),
              *[round_facts(T0 + 10 * i, blind=metrics_down(*SITES)) for i in range(2, 8)]]
    state, _ = run_rounds(rounds, policy=ONE_ROUND)
    assert set(state.incidents) == {"blind:metrics:site6", "blind:metrics"}  # the site's one did not resolve


def test_blind_probes_leave_the_site_unknown_not_healthy() -> None:
    state, _ = run_rounds(facts_for("BB"), policy=ONE_ROUND)
    blinded = [RoundFacts(at=T0 + 10 * i, probes=tuple(p for s in SITES if s != "site3"
                                                       for p in site_probes(s, at=T0 + 10 * i)),
                          blind=(Blind(source="probes", site="site3", message="sipp crashed"),))
               for i in range(2, 8)]
    state, _ = run_rounds(blinded, policy=ONE_ROUND, state=state)
    assert {"site:site3", "blind:probes:site3"} <= set(state.incidents)


def test_state_is_immutable_between_rounds() -> None:
    before = WatchState()
    after, _, _ = step(before, round_facts(T0, bad={"site3": [1]}), sites=SITES, numbers=NUMBERS, policy=POLICY)
    assert before.round == 0 and before.tracks == {} and after.round == 1


def test_record_action_and_hold() -> None:
    state, _ = run_rounds(facts_for("BB"), policy=ONE_ROUND)
    state = record_action(state, key="site:site3", action="drained", now=T0 + 15)
    state = record_action(state, key="site:site3", action="drained", now=T0 + 16)  # once only
    state = record_hold(state, key="site:site3", reason="max_drained reached")
    inc = state.incidents["site:site3"]
    assert inc.actions == ("drained",) and inc.updated_at == T0 + 15 and inc.held == "max_drained reached"
    assert record_action(state, key="site:nowhere", action="drained", now=T0) is state
