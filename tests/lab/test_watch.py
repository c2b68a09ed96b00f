"""`callfleet watch` on the lab: one host of site3 loses its Kamailio while the public calls.

The watch (a real subprocess, 2 s rounds) must open an incident naming site3 within the
policy's window, drain site3 at the edge, tell a webhook receiver, then resolve and undrain
site3 once the host is back; the background caller's lost calls are reported and bounded.
Whatever happens, the lab is left as it was found: every host running, every site undrained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from orchestrator.traffic.steering import dispatcher_for
from orchestrator.watch.journal import WatchJournal
from tests.conftest import REPO, cli
from tests.integration_alerting.servers import HttpReceiver
from tests.lab.conftest import Lab, host_service, put_back
from tests.pg_server import PgServer

T = TypeVar("T")

SITE, HOST = "site3", "site3-cs2"
CALLER_RATE = 20.0
FR_TIMER_S = 4.0  # the edge's fr_timer: a call sent to the dead host fails this long after its INVITE
WATCH = {  # lab-sized: 2 s rounds, a 6 s window, 4 probe calls per number per site (2 per host)
    "interval_s": 2, "window_s": 6, "calls_per_number": 4, "probe_rate": 16, "parallel_sites": 6,
    "min_probe_calls": 4, "ser_min": 0.9, "srd_p95_max_ms": 1000, "min_live_calls": 10, "asr_min": 0.8,
    "open_after": 2, "resolve_after": 2, "auto_drain": True, "max_drained": 1, "release_refresh_s": 60,
    "substitute_numbers": ["0472000000"],
}
# `callfleet watch` through a local typer app: the test does not depend on main.py's registration.
RUNNER = ("import typer\nfrom orchestrator.cli.watch_cmd import watch\n"
          "app = typer.Typer(pretty_exceptions_enable=False)\napp.command()(watch)\napp()\n")


def _eventually(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(interval)


def _ctl(lab: Lab, action: str) -> None:
    host_service(lab, HOST, action)


class Watch:
    """The watch subprocess and its JSON Lines, read as they come (with arrival times)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                     env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})})
        self.rounds: list[tuple[float, dict[str, Any]]] = []
        self.stderr = ""
        self._out = threading.Thread(target=self._read, daemon=True)
        self._out.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.rounds.append((time.time(), json.loads(line)))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def event(self, kind: str) -> tuple[float, dict[str, Any]] | None:
        """The first round carrying `kind` for site3."""
        return next(((t, r) for t, r in list(self.rounds)
                     if any(e["kind"] == kind and e["site"] == SITE for e in r["events"])), None)

    def stop(self) -> int:
        """SIGTERM, as systemd stops the service; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self._out.join(timeout=5)
        self._err.join(timeout=5)
        return rc


@pytest.fixture()
def restore(lab: Lab) -> Iterator[None]:
    """Put the lab back whatever happened: the host running, no site drained, no caller."""
    yield
    put_back(lab, [HOST])


def watching(lab: Lab, args: list[str], *, caller_s: int) -> Watch:
    """The public calling (the background caller, for `caller_s` seconds), then `callfleet
    watch ARGS --json`, returned once it has judged two rounds healthy with no incident open
    (on a lab just up, Prometheus may not have scraped yet: a blind round opens one): the
    estate is OK before anything breaks. A watch that never gets there is stopped."""
    started = cli("lab", "traffic", "start", "--rate", str(int(CALLER_RATE)), "--duration", str(caller_s),
                  "--state-dir", str(lab.state_dir))
    assert started.returncode == 0, started.stderr
    watch = Watch([sys.executable, "-c", RUNNER, *args, "--json"])
    try:
        _eventually(lambda: True if sum(all(s["status"] == "ok" for s in r["sites"].values()) and not r["incidents"]
                                        for _, r in watch.rounds) >= 2 else None,
                    timeout=45, what=f"two healthy rounds (stderr: {watch.stderr})")
    except BaseException:
        watch.stop()
        raise
    return watch


def _files(tmp_path: Path, receiver: HttpReceiver) -> tuple[Path, Path]:
    policy = tmp_path / "policy.yml"
    policy.write_text(yaml.safe_dump({"name": "watch-lab", "watch": WATCH}))
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(yaml.safe_dump({
        "version": 1, "store": str(tmp_path / "alerts.sqlite"), "dedupe_window_s": 600,
        "retry": {"attempts": 3, "backoff_s": 0.1, "max_backoff_s": 0.5, "timeout_s": 2, "deadline_s": 8},
        "channels": {"ops": {"type": "webhook", "url": receiver.url("/hooks/ops"), "format": "json"}},
        "audiences": {"on_call": {"language": "en", "webhooks": ["ops"]}},
    }))
    return policy, alerts


def _hook(receiver: HttpReceiver, kind: str) -> dict[str, Any] | None:
    for hit in list(receiver.hits):
        alert = hit.body["alert"]
        if alert["kind"] == kind and SITE in alert["failing"]["sites"]:
            return dict(alert)
    return None


def test_watch_drains_a_broken_site_alerts_and_resolves(lab: Lab, tmp_path: Path, receiver: HttpReceiver,
                                                        restore: None) -> None:
    policy, alerts = _files(tmp_path, receiver)
    journal = tmp_path / "watch.sqlite"
    watch = watching(lab, ["--policy", str(policy), "--alerts", str(alerts), "--journal", str(journal),
                           "-i", str(lab.inventory), "--rounds", "45", "--duration", "85"], caller_s=300)
    try:
        t_break = time.time()
        _ctl(lab, "stop")
        t_open, opened = _eventually(lambda: watch.event("incident_opened"), timeout=30, what="incident opened")
        # Within the window: the first round after the break is bad, the open_after-th opens it;
        # a round may start just before the break and last up to one more interval.
        budget = (WATCH["open_after"] + 1) * WATCH["interval_s"] + max(r["elapsed_s"] for _, r in watch.rounds) + 2
        assert t_open - t_break <= budget, (t_open - t_break, budget)
        assert opened["sites"][SITE]["status"] == "fail" and opened["sites"][SITE]["drained"] is True
        incident = next(i for i in opened["incidents"] if i["site"] == SITE)
        assert incident["actions"] == ["drained"] and incident["failing_numbers"]
        assert all(i["site"] == SITE for i in opened["incidents"]), opened["incidents"]  # no false incident
        steering = dispatcher_for(lab.estate)
        assert steering.state()[SITE].drained
        flags = steering.live_flags()
        assert all(flags[h.sip_uri].startswith("I") for h in lab.estate.site(SITE).hosts), flags
        hook = _eventually(lambda: _hook(receiver, "incident_opened"), timeout=10, what="opening alert delivered")
        assert hook["severity"] == "critical" and "drained" in hook["actions"]
        assert hook["substitute_numbers"] == ["0472000000"]

        _ctl(lab, "start")
        _eventually(lambda: watch.event("incident_resolved"), timeout=40, what="incident resolved")
        assert not steering.state()[SITE].drained
        resolved = _eventually(lambda: _hook(receiver, "incident_resolved"), timeout=10, what="resolved alert")
        assert resolved["incident_id"] == hook["incident_id"] and "undrained" in resolved["actions"]
    finally:
        rc = watch.stop()
    public = json.loads(cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir), "--json").stdout)
    assert rc == 0, watch.stderr  # SIGTERM: a clean stop

    events = WatchJournal(journal).events()
    kinds = [e.kind for e in events]
    assert kinds.index("drain_before") < kinds.index("drain_after") < kinds.index("undrain_before") \
        < kinds.index("undrain_after") < kinds.index("stopped")
    t_drained = next(e.ts for e in events if e.kind == "drain_after")
    # The lost calls: what the edge sent the dead host (1 host of 12, equal weights) from the
    # break until the drain, with the calls in progress at the break; doubled for the edge's
    # uneven spreading over a few seconds, plus a few for calls at the instants of break and drain.
    share = 1 / len(lab.estate.hosts)
    bound = 2 * CALLER_RATE * share * (t_drained - t_break) + 5
    print(f"\nwatch: incident opened {t_open - t_break:.1f}s and site drained {t_drained - t_break:.1f}s after "
          f"the break; public: {public['attempted']} calls, {public['failed']} lost {public['failures']} "
          f"(bound {bound:.0f})")
    assert public["failed"] <= bound, public
    assert set(public["failures"]) <= {"408", "timeout"}, public  # only the dead host's calls


LEASE_S = 4.0  # the leader lease of the two-watcher test: takeover within LEASE_S + interval_s


def test_two_watchers_on_postgresql_the_standby_takes_over_from_a_killed_leader_and_drains_once(
        lab: Lab, tmp_path: Path, receiver: HttpReceiver, restore: None, pg_server: PgServer) -> None:
    """Two `callfleet watch` processes on one PostgreSQL journal, as two hosts would run them
    ($CALLFLEET_HOLDER): one leads, the other stands by placing no calls. The leader is killed
    (SIGKILL: no resignation) and site3 then loses a host: the standby leads within the lease
    bound, opens the incident and drains site3 once; one opening alert reaches the receiver."""
    policy, alerts = _files(tmp_path, receiver)
    policy.write_text(yaml.safe_dump({"name": "watch-ha-lab", "watch": {**WATCH, "leader_lease_s": LEASE_S}}))
    journal = pg_server.new_database()
    argv = [sys.executable, "-c", RUNNER, "--policy", str(policy), "--alerts", str(alerts), "--journal", journal,
            "-i", str(lab.inventory), "--rounds", "40", "--duration", "80", "--json"]
    started = cli("lab", "traffic", "start", "--rate", str(int(CALLER_RATE)), "--duration", "120",
                  "--state-dir", str(lab.state_dir))
    assert started.returncode == 0, started.stderr
    first = Watch(argv, env={"CALLFLEET_HOLDER": "runner-a"})
    second: Watch | None = None
    try:
        _eventually(lambda: True if sum(r["role"] == "leader" and all(s["status"] == "ok" for s in r["sites"].values())
                                        for _, r in first.rounds) >= 2 else None,
                    timeout=30, what=f"the first watcher leads two healthy rounds (stderr: {first.stderr})")
        second = Watch(argv, env={"CALLFLEET_HOLDER": "runner-b"})
        standby = _eventually(lambda: next((r for _, r in second.rounds if r["role"] == "standby"), None),
                              timeout=20, what=f"the second watcher stands by (stderr: {second.stderr})")
        assert "runner-a" in standby["leader"] and standby["sites"] == {}  # it places no calls
        assert not any(r["role"] == "leader" for _, r in second.rounds)

        first.proc.kill()  # the leader's host dies: no SIGTERM, no resignation
        t_kill = time.time()
        _ctl(lab, "stop")
        _eventually(lambda: next((t for t, r in second.rounds if r["role"] == "leader"), None),
                    timeout=30, what="the standby takes over")
        _, opened = _eventually(lambda: second.event("incident_opened"), timeout=30, what="incident opened")
        assert opened["sites"][SITE]["drained"] is True
        assert dispatcher_for(lab.estate).state()[SITE].drained
        _eventually(lambda: _hook(receiver, "incident_opened"), timeout=10, what="opening alert delivered")
    finally:
        first.proc.kill()
        rc = second.stop() if second is not None else None
        cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir))
    assert rc == 0, second.stderr if second is not None else ""
    events = WatchJournal(journal).events()
    assert [e.site for e in events if e.kind == "drain_after"] == [SITE]  # drained once, by one leader
    # A leader whose lease lapsed mid-round (a slow round on a loaded machine) is fenced and
    # leads again under the same token: still one leader, so count holders, not lines.
    leading = [e for e in events if e.kind == "leading"]
    holders = [e.data["holder"].split(" on ")[-1] for e in leading]
    assert [h for k, h in enumerate(holders) if k == 0 or holders[k - 1] != h] == ["runner-a", "runner-b"], holders
    assert len({e.data["token"] for e in leading if "runner-a" in e.data["holder"]}) == 1
    leading = [leading[0], next(e for e in leading if "runner-b" in e.data["holder"])]
    # Taken over (the moment the lease was granted, as journalled) within the configured bound:
    # the dead leader's lease runs out at most LEASE_S after its last renewal, and the standby
    # asks once a round; 1 s for the kill itself and the journal's write.
    bound = LEASE_S + WATCH["interval_s"] + 1
    assert leading[1].ts - t_kill <= bound, (leading[1].ts - t_kill, bound)
    opened_hooks = [h for h in receiver.hits if h.body["alert"]["kind"] == "incident_opened"]
    assert len(opened_hooks) == 1
