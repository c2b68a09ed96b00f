"""Builders for the watch core's facts: a six-site estate of two hosts, four numbers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orchestrator.policy.watch import WatchPolicy
from orchestrator.watch.incidents import step
from orchestrator.watch.model import Blind, IncidentEvent, LiveSample, ProbeSample, RoundFacts, WatchState

SITES = ("site1", "site2", "site3", "site4", "site5", "site6")
NUMBERS = ("15", "17", "18", "112")
T0 = 1_700_000_000.0  # the injected clock's origin: nothing here reads a real clock
POLICY = WatchPolicy(interval_s=10, window_s=30, calls_per_number=10, min_probe_calls=10, open_after=2,
                     resolve_after=3, min_live_calls=20, max_drained=2)


def sample(site: str, number: str, *, at: float, host: int = 1, calls: int = 5, failed: int = 0,
           cause: str = "503", delay_ms: float = 20.0, redirected: int = 0) -> ProbeSample:
    """`calls` probe calls through host `site-csH`, `failed` of them failing with `cause`."""
    answered = calls - failed - redirected
    causes = {cause: failed} if failed else {}
    if redirected:
        causes["302"] = redirected
    return ProbeSample(site=site, host=f"{site}-cs{host}", number=number, at=at, attempted=calls, answered=answered,
                       failed=failed + redirected, redirected=redirected, srd_ms=(delay_ms,) * answered, causes=causes)


def site_probes(site: str, *, at: float, bad_hosts: Sequence[int] = (), numbers: Iterable[str] = NUMBERS,
                bad_numbers: Sequence[str] | None = None, delay_ms: float = 20.0) -> list[ProbeSample]:
    """One round through both hosts: hosts in `bad_hosts` fail every call of `bad_numbers` (all by default)."""
    out = []
    for n in numbers:
        for h in (1, 2):
            bad = h in bad_hosts and (bad_numbers is None or n in bad_numbers)
            out.append(sample(site, n, at=at, host=h, failed=5 if bad else 0,
                              cause="unreachable" if bad else "503", delay_ms=delay_ms))
    return out


def live(site: str, *, at: float, attempts: float = 60, answered: float | None = None,
         srd_p95_ms: float | None = 25.0) -> LiveSample:
    """A site's live window."""
    ans = attempts if answered is None else answered
    return LiveSample(site=site, at=at, attempts=attempts, answered=ans, failed=attempts - ans, srd_p95_ms=srd_p95_ms)


def round_facts(at: float, *, bad: dict[str, Sequence[int]] | None = None, blind: Sequence[Blind] = (),
                live_for: Sequence[LiveSample] = (), bad_numbers: Sequence[str] | None = None) -> RoundFacts:
    """A whole round: every site probed, the sites in `bad` failing through the listed hosts."""
    bad = bad or {}
    probes = [p for s in SITES for p in site_probes(s, at=at, bad_hosts=bad.get(s, ()), bad_numbers=bad_numbers)]
    return RoundFacts(at=at, probes=tuple(probes), live=tuple(live_for), blind=tuple(blind))


def run_rounds(rounds: Sequence[RoundFacts], *, policy: WatchPolicy = POLICY,
               state: WatchState | None = None) -> tuple[WatchState, list[list[IncidentEvent]]]:
    """Feed rounds to the core; the events of each round."""
    st = state or WatchState()
    per_round = []
    for facts in rounds:
        st, _, events = step(st, facts, sites=SITES, numbers=NUMBERS, policy=policy)
        per_round.append(list(events))
    return st, per_round
