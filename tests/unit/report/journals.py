"""Realistic rollout journals for the report's tests: the real Executor, Journal, gate stage
code, statistics, live-steps loop and alert port drive a run; only what touches machines
(Ansible, SIPp probes, steering, Prometheus, alert channels) is faked.

`halted_at_wave2`: the canary (wave 1) passes its gate, live steps and bake; wave 2 waits
for an approval, then fails its gate on 112 (a third of its calls refused with 503), is
rolled back with its traffic restored, and the run halts (exit 6) with alerts delivered
(one channel down)."""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import orchestrator.rollout.executor as executor_mod
import orchestrator.rollout.journal as journal_mod
import orchestrator.rollout.prober as prober_mod
import orchestrator.rollout.wave_gate as wave_gate_mod
from orchestrator.alerting import AlertStore, Notifier
from orchestrator.ansible.runner import HostResult, RunResult
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from orchestrator.gate import runner as gate_runner
from orchestrator.gate import stages
from orchestrator.hostcheck.checks import CheckResult
from orchestrator.metrics.provider import LiveWindow
from orchestrator.policy.load import load_policy
from orchestrator.probe import metrics
from orchestrator.probe.runner import ProbeReport
from orchestrator.rollout.alerts import RolloutAlerter
from orchestrator.rollout.executor import Executor, Outcome, Ports
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.plan import build_plan
from orchestrator.sipp.scenarios import CallStats
from orchestrator.traffic.steering import SiteTraffic
from tests.conftest import REPO
from tests.unit.alerting.conftest import doc, load
from tests.unit.alerting.test_alerting_dispatcher import FAST, FakeChannel

INVENTORY = REPO / "inventory" / "production.example.yml"
TARGET = "5.7.0"
FAILING_NUMBER = "112"


class Clock:
    """The run's clock: the executor's sleeps advance it, and every journal write takes a
    second, so the report's timeline has real-looking spans."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        self.now += 1.0
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSteering:
    """Weights and drains in memory."""

    sites: Sequence[str]
    weights: dict[str, int] = field(default_factory=dict)
    drained: set[str] = field(default_factory=set)

    def state(self) -> dict[str, SiteTraffic]:
        return {s: SiteTraffic(site=s, weight=self.weights.get(s, 100), drained=s in self.drained, share=0.0)
                for s in self.sites}

    def drain(self, site: str) -> None:
        self.drained.add(site)

    def undrain(self, site: str) -> None:
        self.drained.discard(site)

    def set_weight(self, site: str, weight: int) -> None:
        self.weights[site] = weight

    def in_flight(self, site: str) -> int:
        return 0


@dataclass
class FakeSiteOps:
    """Ansible plays that succeed on every host of the site."""

    estate: Estate
    steering: FakeSteering

    def _ok(self, site: str) -> RunResult:
        return RunResult(status="successful", rc=0,
                         hosts={h.name: HostResult(ok=3, changed=1) for h in self.estate.site(site).hosts})

    def preflight(self, site: str, version: str, bundle: Path | None) -> RunResult:
        return self._ok(site)

    def switch(self, site: str, version: str, *, digest: str | None = None) -> RunResult:
        return self._ok(site)

    def postcheck(self, site: str, version: str) -> list[CheckResult]:
        return [CheckResult(host=h.name, check="kamailio running", ok=True, detail="active")
                for h in self.estate.site(site).hosts]

    def drain(self, site: str) -> None:
        self.steering.drain(site)

    def undrain(self, site: str) -> None:
        self.steering.undrain(site)


class FakeMetrics:
    """The edge's live figures: every step answered, a few ms slower at full weight."""

    def check(self) -> None:
        return None

    def site_window(self, *, site: str, window_s: float, end: float | None = None) -> LiveWindow:
        return LiveWindow(site=site, window_s=window_s, attempts=60, answered=60, failed=0, failure_ratio=0.0,
                          srd_p50_ms=41.0, srd_p95_ms=88.0, queries={"attempts": "sum(increase(...))"},
                          codes={"200": 60}, end=end)


def _stats(calls: int, *, refused: int = 0, base_ms: float = 40.0) -> CallStats:
    answered = calls - refused
    return CallStats(attempted=calls, answered=answered, failed=refused,
                     failures={"503": refused} if refused else {},
                     srd_ms=tuple(base_ms + (i * 7919 % 31) for i in range(answered)))


def _report(estate: Estate, site: str, calls: int, bad: str | None) -> ProbeReport:
    """A probe of `site`; `bad` names it when it runs the faulty release (a third of 112 refused)."""
    stats = {n: _stats(calls, refused=calls // 3 if n == FAILING_NUMBER and site == bad else 0)
             for n in (e.number for e in estate.numbers)}
    numbers = tuple(metrics.number_result(site=site, host=None, number=n, stats=s) for n, s in stats.items())
    return ProbeReport(site=site, hosts=tuple(h.name for h in estate.site(site).hosts), calls_per_number=calls,
                       rate=100, numbers=numbers, per_host=numbers, stats=stats)


def drive_halted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, bad_site_wave: int = 2,
                     abort_by: str | None = None) -> tuple[Path, str, Path]:
    """A run halted at wave `bad_site_wave` by a failed gate, or (`abort_by`) aborted while wave 2
    waits for its approval; returns (journal, run id, alert store)."""
    clock = Clock()
    monkeypatch.setattr(journal_mod, "time", types.SimpleNamespace(time=clock.time, strftime=journal_mod.time.strftime))
    estate = load_inventory(INVENTORY)
    policy = load_policy(REPO / "policies" / "default.yml")
    policy = policy.model_copy(update={"rollout": policy.rollout.model_copy(update={"approvals": (2,)})})
    plan = build_plan(estate=estate, policy=policy, target=TARGET)
    bad = plan.waves[bad_site_wave - 1].site

    def probe_with_baseline(*, estate: Estate, site: str, baselines: Sequence[str], calls: int,
                            rate: float) -> tuple[ProbeReport, list[ProbeReport]]:
        # only the canary runs the new release: a baseline is healthy whatever its name
        return _report(estate, site, calls, bad), [_report(estate, b, calls, None) for b in baselines]

    def gate(**kw: Any) -> gate_runner.GateResult:
        # the synthetic+canary stage's real code (the drill and soak need hosts)
        return gate_runner.run_gate(**kw, only=("synthetic+canary",))

    healthy = _report(estate, plan.waves[0].site, 20, None)
    patches: dict[str, Any] = {
        "require_verified": lambda bundle: None, "bundle_digest": lambda bundle: "b" * 64,
        "require_unchanged": lambda bundle, expected: None,
    }
    for name, value in patches.items():
        monkeypatch.setattr(executor_mod, name, value)
    monkeypatch.setattr(wave_gate_mod, "run_gate", gate)
    monkeypatch.setattr(prober_mod, "check_reachable", lambda estate, hosts: None)
    monkeypatch.setattr(prober_mod, "probe_site", lambda **kw: healthy.model_copy(update={"site": kw["site"].name}))
    monkeypatch.setattr(stages, "probe_with_baseline", probe_with_baseline)

    steering = FakeSteering(sites=[s.name for s in estate.sites])
    fakes = {"chat": FakeChannel("chat", "webhook", fail=99), "mail": FakeChannel("mail", "smtp"),
             "sms": FakeChannel("sms", "smpp")}
    store_path = tmp_path / "alerts.sqlite"
    alerter = RolloutAlerter(Notifier(config=load(doc(retry=FAST), tmp_path), store=AlertStore(path=store_path),
                                      channels=fakes))
    ports = Ports(estate=estate, site_ops=FakeSiteOps(estate, steering),  # type: ignore[arg-type]
                  bundle=tmp_path / "bundle", metrics=FakeMetrics(),  # type: ignore[arg-type]
                  alert=alerter, clock=clock.clock, sleep=clock.sleep)
    journal = Journal(tmp_path / "journal.sqlite", create=True)
    run = journal.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target=TARGET,
                             inventory=str(INVENTORY), policy=str(REPO / "policies" / "default.yml"))

    def drive() -> Outcome:
        return Executor(journal=journal, run_id=run.id, policy=policy, ports=ports).drive()

    first = drive()
    assert first.kind == "waiting" and first.phase == "awaiting_approval", first
    if abort_by:
        # what `callfleet rollout abort` writes, then its drive: no site in flight, nothing to roll back
        journal.update_progress(run.id, {"abort_requested": abort_by})
        journal.record(run.id, "abort", data={"by": abort_by})
        aborted = drive()
        assert aborted.kind == "aborted", aborted
        return journal.path, run.id, store_path
    approve(journal, run.id, 2, "alice@noc")
    final = drive()
    assert final.kind == "halted" and final.exit_code == 6, final
    assert alerter.flush(timeout=10)
    return journal.path, run.id, store_path


def approve(journal: Journal, run_id: str, wave: int, by: str) -> None:
    """What `callfleet rollout approve` writes."""
    run = journal.run(run_id)
    site = run.plan["waves"][wave - 1]["site"]
    journal.approve(run_id, wave, by)
    journal.record(run_id, "approval", site=site, data={"wave": wave, "by": by})


Driver = Callable[[Path, pytest.MonkeyPatch], tuple[Path, str, Path]]

