"""Live metrics in the lab: Prometheus scrapes the edge and the hosts; the provider sees
every site's calls, counts a stopped host's failures against its site only, agrees
with the public's own count, and is an error (never a zero) when Prometheus is down."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from orchestrator import procs
from orchestrator.errors import RemoteError
from orchestrator.lab.state import LabState
from orchestrator.metrics.prometheus import PrometheusProvider, provider_for
from orchestrator.metrics.provider import LiveWindow
from tests.conftest import cli
from tests.lab.conftest import LAB_BASE, Lab, host_service

T = TypeVar("T")
WINDOW_S = 8.0


def _eventually(probe: Callable[[], T | None], *, timeout: float, interval: float = 0.5) -> T:
    """Poll `probe` until it returns something (bounded); fail with its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(interval)


def _windows(provider: PrometheusProvider, lab: Lab) -> dict[str, LiveWindow]:
    end = time.time()  # one window for every site
    return {s.name: provider.site_window(site=s.name, window_s=WINDOW_S, end=end) for s in lab.estate.sites}


def _totals(provider: PrometheusProvider) -> dict[str, float]:
    return {name: sum(v for _, v in provider.query(f"sum(kamailio_edge_{name}_total)"))
            for name in ("invites", "answered", "failed")}


def _ctl(lab: Lab, host: str, action: str) -> None:
    host_service(lab, host, action)


@pytest.fixture()
def caller(lab: Lab) -> Iterator[Callable[[int], None]]:
    """Starts the public (20 calls/s for a given time); stopped at teardown in any case."""

    def start(duration_s: int) -> None:
        proc = cli("lab", "traffic", "start", "--rate", "20", "--duration", str(duration_s),
                   "--state-dir", str(lab.state_dir), "--json")
        assert proc.returncode == 0, proc.stderr

    try:
        yield start
    finally:
        cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir))


def _stop_caller(lab: Lab) -> dict[str, int]:
    proc = cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    report: dict[str, int] = json.loads(proc.stdout)
    return report


def test_prometheus_runs_and_scrapes_the_edge_and_every_host(lab: Lab) -> None:
    assert lab.estate.metrics_url == f"http://{LAB_BASE}.3:9090"
    status = json.loads(cli("lab", "status", "--state-dir", str(lab.state_dir), "--json").stdout)
    assert {c["name"]: c["status"] for c in status["components"]}["prometheus"] == "running"

    def all_up() -> list[dict[str, str]] | None:
        with urllib.request.urlopen(f"{lab.estate.metrics_url}/api/v1/targets", timeout=5) as resp:
            targets = json.load(resp)["data"]["activeTargets"]
        up = len(targets) == 1 + len(lab.estate.hosts) and all(t["health"] == "up" for t in targets)
        return targets if up else None

    targets = _eventually(all_up, timeout=10)
    assert {t["scrapePool"] for t in targets} == {"callfleet-edge", "callfleet-callservers"}
    provider = provider_for(lab.estate)
    provider.check()  # every site has edge series, even before its first call
    # the call servers' own statistics, labelled with their site and host
    shm = provider.query('kamailio_shmem_used_size{job="callfleet-callservers"}')
    assert {s["host"] for s, v in shm if v > 0} == {h.name for h in lab.estate.hosts}


def _all_sites_busy(provider: PrometheusProvider, lab: Lab) -> Callable[[], dict[str, LiveWindow] | None]:
    def probe() -> dict[str, LiveWindow] | None:
        try:
            w = _windows(provider, lab)
        except RemoteError:  # a Prometheus started a second ago has one sample: no increase yet
            return None
        return w if all(x.attempts > 0 and x.srd_p95_ms is not None for x in w.values()) else None

    return probe


def test_live_windows_see_every_site_healthy_and_agree_with_the_public(
        lab: Lab, caller: Callable[[int], None]) -> None:
    """Acceptance: over a window every site shows attempts > 0, no failure and an SRD
    p95; once the public stops, Prometheus' counters equal its own figures exactly
    (each call counted once: no double-counted 200 retransmission, nothing lost)."""
    provider = provider_for(lab.estate)
    before = _totals(provider)
    caller(8)
    healthy = _eventually(_all_sites_busy(provider, lab), timeout=15)
    for w in healthy.values():
        assert w.failed == 0 and w.failure_ratio == 0.0, w
        assert w.srd_p95_ms is not None and 0 < w.srd_p95_ms < 500, w
        assert set(w.codes) == {"200"}, w

    def caller_done() -> bool | None:  # it places its 160 calls in 8 s, then stops by itself
        proc = cli("lab", "traffic", "report", "--state-dir", str(lab.state_dir), "--json")
        return True if json.loads(proc.stdout)["state"] == "stopped" else None

    _eventually(caller_done, timeout=30)
    public = _stop_caller(lab)
    assert public["attempted"] >= 140 and public["failed"] == 0, public
    seen = {"invites": public["attempted"], "answered": public["answered"], "failed": 0}

    def agree() -> dict[str, float] | None:
        after = _totals(provider)
        delta = {k: after[k] - before[k] for k in after}
        return delta if delta == seen else None

    _eventually(agree, timeout=10)


def test_a_stopped_host_fails_its_site_only(lab: Lab, caller: Callable[[int], None]) -> None:
    """A host whose Kamailio stops makes its site's failures (the edge's own 408s after
    fr_timer, 4 s) rise, and no other site's; every call gets exactly one final answer."""
    provider = provider_for(lab.estate)
    before = _totals(provider)
    caller(40)
    _eventually(_all_sites_busy(provider, lab), timeout=15)
    victim = "site4-cs1"
    _ctl(lab, victim, "stop")
    try:
        def site4_failing() -> dict[str, LiveWindow] | None:
            w = _windows(provider, lab)
            return w if w["site4"].failed >= 3 and w["site4"].codes.get("408", 0) >= 3 else None

        failing = _eventually(site4_failing, timeout=20)
    finally:
        _ctl(lab, victim, "start")
    site4 = failing["site4"]
    assert site4.failure_ratio is not None and site4.failure_ratio > 0.1, site4
    assert site4.srd_p95_ms is not None and site4.srd_p95_ms > 1000, site4  # the 4 s timeouts
    for name, w in failing.items():
        if name != "site4":
            assert w.failed == 0 and w.attempts > 0, w

    public = _stop_caller(lab)
    assert public["failed"] > 0, public

    def settled() -> dict[str, float] | None:
        after = _totals(provider)
        delta = {k: after[k] - before[k] for k in after}
        done = delta["invites"] == public["attempted"] and delta["answered"] + delta["failed"] == delta["invites"]
        return delta if done else None

    delta = _eventually(settled, timeout=10)
    # The public may also lose a call answered just before the stop (its BYE dies with
    # the host): the edge's failed INVITEs are a subset of the public's failures.
    assert 3 <= delta["failed"] <= public["failed"], (delta, public)


def test_prometheus_down_or_wrong_url_is_an_error_and_lab_up_restarts_it(lab: Lab) -> None:
    wrong = PrometheusProvider(base_url=f"http://{LAB_BASE}.3:9", estate=lab.estate, timeout=2)
    with pytest.raises(RemoteError, match="unreachable"):
        wrong.check()
    state = LabState.load(lab.state_dir)
    assert state is not None
    comp = state.components["prometheus"]
    procs.stop_pid(comp.current_pid(), expect="prometheus")
    provider = provider_for(lab.estate)
    with pytest.raises(RemoteError, match="unreachable"):
        provider.check()
    with pytest.raises(RemoteError, match="unreachable"):
        provider.site_window(site="site1", window_s=WINDOW_S)
    status = cli("lab", "status", "--state-dir", str(lab.state_dir), "--json")
    assert status.returncode == 4
    assert {c["name"]: c["status"] for c in json.loads(status.stdout)["components"]}["prometheus"] == "crashed"
    up = cli("lab", "up", "--state-dir", str(lab.state_dir), "--base", LAB_BASE)
    assert up.returncode == 0, up.stderr

    def checked() -> bool | None:
        try:
            provider.check()
        except RemoteError:
            return None
        return True

    _eventually(checked, timeout=10)
