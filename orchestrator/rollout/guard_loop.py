"""The fleet guard's loop: a thread beside the executor while it drives a run.

Every `interval_s` it asks the journal where the run is (`decide.guarded_sites`: the sites on
the new release taking live calls, the sites not yet touched), collects one round of tallies
(`guard.observe`), and judges them (`guard.judge`, pure). When a culprit is named it drains it
at once (never the last site taking calls: the judge says which), records the verdict in the
run's progress and the journal, and alerts. The executor's next decision then turns the run to
its fleet rollback (`decide`), which takes every site the run upgraded back, culprits first.

It runs on a thread because the executor may be inside a long effect (the next wave's gate,
a minute or more) when the fault wakes: the drain must not wait for it.

`attribute` is the executor's question when a gate could not tell its candidate from the
baseline: a few rounds at once, each with probes, to see whether an upgraded site explains it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from orchestrator.guard.judge import LIVE, GuardFacts, Tally, judge
from orchestrator.guard.observe import GuardObserver
from orchestrator.policy.guard import GuardPolicy
from orchestrator.rollout.decide import RunView, guarded_sites
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import TERMINAL, Phase
from orchestrator.rollout.plan import Plan
from orchestrator.rollout.state import GuardFired
from orchestrator.traffic.steering import TrafficSteering

# Rounds kept in memory: beyond this the oldest are folded away (a run of days at 5 s).
MAX_ROUNDS = 20_000


class FleetGuard:
    """Watches the upgraded sites of one run until stopped."""

    def __init__(self, *, journal: Journal, run_id: str, plan: Plan, policy: GuardPolicy, observer: GuardObserver,
                 steering: TrafficSteering, numbers: tuple[str, ...], clock: Callable[[], float], lag_s: float,
                 say: Callable[[str], None], alert: Callable[[str, str, str], None]) -> None:
        self.j, self.run_id, self.plan, self.policy = journal, run_id, plan, policy
        self.observer, self.steering, self.clock, self.lag_s = observer, steering, clock, lag_s
        self.scopes = (*numbers, LIVE)
        self.say, self.alert = say, alert
        self.tallies: list[Tally] = []
        self.rounds = 0
        self.last_end: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one round at a time: the thread's, or an attribution's
        self._thread = threading.Thread(target=self._loop, name=f"fleet-guard-{run_id}", daemon=True)

    def start(self) -> None:
        """Begin watching (a round every interval)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round in progress, if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(30.0, 3 * self.policy.interval_s))

    def _loop(self) -> None:
        while not self._stop.wait(self.policy.interval_s):
            try:
                with self._lock:
                    fired = self.round()
                if fired:
                    return
            except Exception as exc:  # the guard must never take the rollout down with it
                self.say(f"fleet guard: round failed: {str(exc)[:200]}")

    def attribute(self) -> bool:
        """Up to `attribute_rounds` rounds at once, each with probes: True when they name a culprit
        (recorded, drained and alerted as any round's), False when no upgraded site explains it."""
        with self._lock:
            for _ in range(self.policy.attribute_rounds):
                if self.round(probe=True):
                    return self.j.run(self.run_id).progress.guard is not None
        return False

    def round(self, *, probe: bool = False) -> bool:
        """One round (with probes when asked, or when their turn has come); True when the guard
        has fired (or the run no longer needs it)."""
        run = self.j.run(self.run_id)
        if run.phase in TERMINAL or run.phase == Phase.FLEET_ROLLING_BACK or run.progress.guard is not None:
            return True
        view = RunView(id=run.id, phase=run.phase, wave=run.wave, progress=run.progress, outcome=run.outcome)
        upgraded, untouched = guarded_sites(view, self.plan)
        until = self.clock() - self.lag_s
        if not upgraded:
            self.last_end = until  # nothing takes live calls on the new release yet
            return False
        since = self.last_end if self.last_end is not None else until - self.policy.interval_s
        self.last_end = until
        self.rounds += 1
        probe = probe or (self.rounds - 1) % self.policy.probe_every_rounds == 0
        self.tallies.extend(self.observer.round(sites=(*upgraded, *untouched), number=self.rounds, since=since,
                                                until=until, probe=probe))
        if self.rounds > MAX_ROUNDS:
            self.tallies = [t for t in self.tallies if t.round > self.rounds - MAX_ROUNDS]
        drained = frozenset(s for s, st in self.steering.state().items() if st.drained)
        facts = GuardFacts(upgraded=upgraded, untouched=untouched, drained=drained, scopes=self.scopes,
                           tallies=tuple(self.tallies))
        verdict = judge(facts, self.policy)
        if not verdict.fired:
            return False
        culprits = tuple(c.site for c in verdict.culprits)
        reasons = tuple(c.reason for c in verdict.culprits)
        fired = GuardFired(at=self.clock(), culprits=culprits, drained=verdict.drain, reasons=reasons)
        # Recorded before the drain: killed in between, the resumed run's fleet rollback drains
        # the culprit first anyway; the other order would leave a drain nobody knows about.
        self.j.update_progress(self.run_id, {"guard": fired})
        self.j.record(self.run_id, "guard", site=culprits[0], data=_evidence(verdict.model_dump(mode="json"),
                                                                              self.rounds, upgraded, untouched))
        for site in verdict.drain:
            self.steering.drain(site)
        drained_text = f"drained {', '.join(verdict.drain)}" if verdict.drain else "nothing drained (last sites)"
        self.say(f"fleet guard: {'; '.join(reasons)}; {drained_text}; fleet rollback next")
        self.alert("fleet_guard", culprits[0], f"fleet guard round {self.rounds}: {'; '.join(reasons)}; "
                   f"{drained_text}; every site this run upgraded goes back, {culprits[0]} first")
        return True


def _evidence(verdict: dict[str, Any], rounds: int, upgraded: tuple[str, ...],
              untouched: tuple[str, ...]) -> dict[str, Any]:
    return {"round": rounds, "upgraded": list(upgraded), "untouched": list(untouched), **verdict}
