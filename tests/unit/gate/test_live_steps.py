"""The live-steps stage against a scripted metrics backend and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.gate.live import run_steps
from orchestrator.gate.verdict import Verdict
from orchestrator.metrics.provider import LiveWindow
from orchestrator.policy.model import LiveStepsPolicy


@dataclass
class Clock:
    now: float = 1_000.0
    slept: list[float] = field(default_factory=list)

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


@dataclass
class Steering:
    """Records what the stage asked of the edge; its weight scales the fake traffic."""

    weight: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)

    def set_weight(self, site: str, weight: int) -> None:
        self.weight = weight
        self.calls.append(("set_weight", weight))

    def undrain(self, site: str) -> None:
        self.calls.append(("undrain", self.weight))


@dataclass
class Metrics:
    """`rate` live calls/s at full weight (100); at full weight `fail` of them fail."""

    steering: Steering
    rate: float
    fail: float = 0.0
    windows: list[tuple[float, float]] = field(default_factory=list)

    def check(self) -> None:
        return None

    def site_window(self, *, site: str, window_s: float, end: float | None = None) -> LiveWindow:
        self.windows.append((window_s, end or 0.0))
        attempts = self.rate * window_s * self.steering.weight / 100
        failed = attempts * self.fail if self.steering.weight == 100 else 0.0
        return LiveWindow(site=site, window_s=window_s, attempts=attempts, answered=attempts - failed,
                          failed=failed, failure_ratio=failed / attempts if attempts else None,
                          srd_p50_ms=50.0, srd_p95_ms=80.0, queries={})


def _run(policy: LiveStepsPolicy, rate: float, fail: float = 0.0) -> tuple[object, Clock, Metrics]:
    clock, steering = Clock(), Steering()
    metrics = Metrics(steering, rate=rate, fail=fail)
    result = run_steps(site="site1", full_weight=100, policy=policy, steering=steering,  # type: ignore[arg-type]
                       metrics=metrics, sleep=clock.sleep, clock=lambda: clock.now)
    return result, clock, metrics


POLICY = LiveStepsPolicy(weights=(10, 100), bake_s=3, min_live_calls=12, metrics_lag_s=1, evidence_wait_s=9)


def test_enough_traffic_passes_without_baking_longer() -> None:
    result, clock, metrics = _run(POLICY, rate=10)
    assert result.verdict == Verdict.PASS  # type: ignore[attr-defined]
    assert clock.slept == [4, 4]  # bake + lag per step, nothing more
    assert [w for w, _ in metrics.windows] == [3, 3]


def test_quiet_traffic_bakes_the_full_step_longer_until_the_evidence_is_there() -> None:
    # 1 call/s: 0.3 at 10%, 3 more per 3 s slice at 100%: 9 reached after 9 s of the last step
    result, clock, metrics = _run(POLICY.model_copy(update={"min_live_calls": 9}), rate=1)
    assert result.verdict == Verdict.PASS, result.reasons  # type: ignore[attr-defined]
    assert clock.slept == [4, 4, 3, 3]
    assert [w for w, _ in metrics.windows] == [3, 3, 6, 9]
    # each longer window still ends where the step's scraped bake ends, not at "now"
    assert [end for _, end in metrics.windows][-1] == 1_000 + 4 + 9  # the last step started after the first's 4 s
    assert result.calls == 9  # type: ignore[attr-defined]  # 0.3 + 9 -> int


def test_the_wait_for_evidence_is_bounded_and_then_inconclusive() -> None:
    result, clock, _ = _run(POLICY, rate=0.2)
    assert result.verdict == Verdict.INCONCLUSIVE  # type: ignore[attr-defined]
    assert sum(clock.slept) == 4 + 4 + 9  # evidence_wait_s, not a second more
    assert "too little live traffic" in result.reasons[0]  # type: ignore[attr-defined]


def test_failures_at_full_weight_fail_the_step_without_waiting_for_more_evidence() -> None:
    result, clock, _ = _run(POLICY, rate=1, fail=0.5)
    assert result.verdict == Verdict.FAIL  # type: ignore[attr-defined]
    assert clock.slept == [4, 4]
    assert result.reasons[0].startswith("at 100%: live failure ratio 50.0%")  # type: ignore[attr-defined]


def test_no_extension_when_the_policy_waits_zero() -> None:
    result, clock, _ = _run(POLICY.model_copy(update={"evidence_wait_s": 0}), rate=1)
    assert result.verdict == Verdict.INCONCLUSIVE  # type: ignore[attr-defined]
    assert clock.slept == [4, 4]
