"""The per-wave split and ideal of benchmarks/waves.py (issue #16's figures come from them)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.waves import Physical, summary, waves
from orchestrator.policy.model import GatePolicy
from orchestrator.rollout.journal import Event

GATE = GatePolicy.model_validate({"synthetic": {"calls_per_number": 100, "min_calls_per_number": 100, "rate": 50},
                                  "drill": {"calls_per_number": 100}, "soak": {"duration_s": 6},
                                  "live_steps": {"weights": [10, 100], "bake_s": 3, "metrics_lag_s": 2}})
PHYSICAL = Physical(restart_s=1.0, wait_timer_s=5.0)
STEPS = [{"weight": 10, "bake_s": 3.0}, {"weight": 100, "bake_s": 3.0}]
PLAN = {"waves": [{"index": 1, "site": "site1", "traffic_steps": STEPS, "bake_s": 20.0},
                  {"index": 2, "site": "site2", "traffic_steps": STEPS, "bake_s": 3.0}]}


class _Log:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, ts: float, kind: str, phase: str, wave: int, site: str | None,
            data: dict[str, Any] | None = None) -> None:
        self.events.append(Event(seq=len(self.events) + 1, run="r", ts=ts, kind=kind, phase=phase, wave=wave,
                                 site=site, data=data or {}))

    def effect(self, start: float, end: float, effect: str, phase: str, wave: int, site: str) -> None:
        self.add(start, "before", phase, wave, site, {"effect": effect})
        self.add(end, "after", phase, wave, site, {"effect": effect})


def _wave(log: _Log, t: float, wave: int, site: str, *, preflight: float, bake: float) -> float:
    log.add(t, "transition", "preparing", wave, site)
    if preflight:
        log.effect(t + 0.1, t + 0.1 + preflight, "preflight", "preparing", wave, site)
    t += 0.1 + preflight
    log.effect(t, t + 0.3, "drain", "draining", wave, site)
    log.effect(t + 0.3, t + 4.3, "switch", "switching", wave, site)
    log.effect(t + 4.3, t + 4.8, "post-check", "postchecking", wave, site)
    log.effect(t + 4.8, t + 24.8, "gate", "gating", wave, site)
    log.add(t + 24.8, "gate", "gating", wave, site, {"stages": [{"stage": "synthetic+canary", "seconds": 2.5},
                                                                {"stage": "drill", "seconds": 2.5},
                                                                {"stage": "soak", "seconds": 15.0}]})
    log.effect(t + 24.8, t + 34.8, "live-steps", "stepping", wave, site)
    if wave == 1:  # the next site staged beside this wave: never part of it
        log.add(t + 25.0, "stage", "stepping", wave, "site2", {"wave": 2, "state": "begun"})
        log.add(t + 33.0, "stage", "baking", wave, "site2", {"wave": 2, "state": "ready", "seconds": 8.0})
    log.add(t + 34.8, "transition", "baking", wave, site)
    log.effect(t + 34.8 + bake, t + 35.3 + bake, "health", "baking", wave, site)
    log.add(t + 35.5 + bake, "transition", "wave_done", wave, site)
    return t + 35.5 + bake


def test_a_wave_splits_into_its_journalled_parts_and_the_rest_is_the_orchestrators() -> None:
    log = _Log()
    end = _wave(log, 100.0, 1, "site1", preflight=9.0, bake=20.0)
    _wave(log, end + 1.0, 2, "site2", preflight=0.0, bake=3.0)
    first, second = waves(log.events, PLAN, GATE, PHYSICAL)
    assert first.parts["preflight"] == 9.0 and second.parts["preflight"] == 0.0
    assert second.parts["switch"] == 4.0 and second.parts["post-check"] == 0.5
    assert (second.parts["synthetic+canary"], second.parts["drill"], second.parts["soak"]) == (2.5, 2.5, 15.0)
    assert second.parts["steps"] == 10.0 and second.parts["bake"] == 3.0 and second.parts["health"] == 0.5
    assert second.seconds == pytest.approx(38.6)
    assert sum(second.parts.values()) == pytest.approx(second.seconds)
    assert second.parts["orchestrator"] == pytest.approx(0.3)
    # staging ran beside wave 1 and is reported on the wave it prepared, never added to one
    assert first.staged_s is None and second.staged_s == 8.0
    assert first.seconds == pytest.approx(0.1 + 9.0 + 35.5 + 20.0)


def test_the_ideal_wave_is_the_policys_windows_and_waits_plus_the_measured_minima() -> None:
    log = _Log()
    end = _wave(log, 0.0, 1, "site1", preflight=9.0, bake=20.0)
    _wave(log, end, 2, "site2", preflight=0.0, bake=3.0)
    first, second = waves(log.events, PLAN, GATE, PHYSICAL)
    # restart 1 + synthetic 100/50 + drill 100/50 + soak 6 + 2 x 5 + steps 2 x (3 + 2) + bake
    assert second.ideal_s == pytest.approx(1 + 2 + 2 + 16 + 10 + 3)
    assert first.ideal_s == pytest.approx(1 + 2 + 2 + 16 + 10 + 20)
    figures = summary([first, second])
    assert figures["waves"] == 2
    assert figures["worst wave ratio"] == round(max(first.ratio, second.ratio), 2)
    assert figures["ratio (sum of waves / sum of ideals)"] == round((first.seconds + second.seconds)
                                                                    / (first.ideal_s + second.ideal_s), 2)


def test_a_wave_that_never_finished_is_not_counted() -> None:
    log = _Log()
    end = _wave(log, 0.0, 1, "site1", preflight=9.0, bake=20.0)
    log.add(end + 1, "transition", "preparing", 2, "site2")
    log.effect(end + 1, end + 5, "preflight", "preparing", 2, "site2")
    assert [w.wave for w in waves(log.events, PLAN, GATE, PHYSICAL)] == [1]
    assert summary([]) == {}
