"""Watch HA: the leader-lease core (pure), then leadership, fencing and once-only actions on
both backends, including watcher processes racing on one store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.store.lease import Decision, Holder, Verdict
from orchestrator.watch.journal import NotLeader, WatchJournal
from orchestrator.watch.leader import Change, Role, action_key, lease_fits, step, takeover_bound_s
from tests.conftest import REPO

A = Holder(host="watch-a", pid=1, start=1)
B = Holder(host="watch-b", pid=2, start=2)


def granted(token: int, who: Holder = A) -> Decision:
    return Decision(verdict=Verdict.GRANTED, token=token, expires=10, holder=who)


def test_a_grant_makes_a_leader_that_reloads_state_first() -> None:
    got = step(Role.STANDBY, granted(3))
    assert (got.role, got.change, got.token) == (Role.LEADER, Change.BECAME_LEADER, 3)


def test_a_renewal_keeps_leading_without_reloading() -> None:
    got = step(Role.LEADER, Decision(verdict=Verdict.RENEWED, token=3, expires=20, holder=A))
    assert (got.role, got.change) == (Role.LEADER, Change.NONE)


def test_a_refusal_demotes_a_leader_and_names_the_new_one() -> None:
    refused = Decision(verdict=Verdict.REFUSED, token=4, expires=30, holder=B, remaining_s=5)
    got = step(Role.LEADER, refused)
    assert (got.role, got.change, got.token, got.leader) == (Role.STANDBY, Change.LOST_LEADERSHIP, None, B)
    assert step(Role.STANDBY, refused).change is Change.NONE


def test_a_lapsed_and_regranted_lease_reloads_state() -> None:
    assert step(Role.LEADER, granted(5)).change is Change.BECAME_LEADER


def test_takeover_bound_and_lease_sizing() -> None:
    assert takeover_bound_s(lease_s=30, interval_s=10) == 40
    assert lease_fits(lease_s=20, interval_s=10) and not lease_fits(lease_s=15, interval_s=10)
    assert action_key(incident="i1", kind="drain", site="site3") == "i1/drain/site3"


def test_exactly_one_watcher_leads_and_a_takeover_fences_the_old_leader(store_url: str) -> None:
    a, b = WatchJournal(store_url), WatchJournal(store_url)
    lead_a = a.lead(me=A, ttl_s=30)
    assert lead_a.verdict is Verdict.GRANTED
    refused = b.lead(me=B, ttl_s=30)
    assert refused.verdict is Verdict.REFUSED and refused.holder == A
    key = action_key(incident="i1", kind="drain", site="site3")
    assert a.act_once(key, me=A, token=lead_a.token)
    assert not a.act_once(key, me=A, token=lead_a.token)  # never twice, even by the same leader
    with a.store.write() as conn:  # A stops renewing: its lease lapses (by the database's clock)
        conn.exec_driver_sql("UPDATE callfleet_leases SET expires = 0")
    lead_b = b.lead(me=B, ttl_s=30)
    assert lead_b.verdict is Verdict.GRANTED and lead_b.token == lead_a.token + 1
    assert not b.act_once(key, me=B, token=lead_b.token)  # the old leader's drain is not redone
    with pytest.raises(NotLeader):
        a.act_once(action_key(incident="i1", kind="failover", site="site3"), me=A, token=lead_a.token)
    with pytest.raises(NotLeader):
        a.record("drain_before", round_no=1, leader_token=lead_a.token)
    with pytest.raises(NotLeader):  # nor its round's statistics, nor failed callers
        a.add_tallies([], live_until={"site3": 1.0}, leader_token=lead_a.token)
    with pytest.raises(NotLeader):
        a.keep_failed_calls([], retention_s=60, leader_token=lead_a.token)
    assert a.live_cursor() == {}
    b.record("drain_before", round_no=1, leader_token=lead_b.token)
    b.resign(me=B, token=lead_b.token)
    assert a.lead(me=A, ttl_s=30).verdict is Verdict.GRANTED  # a clean stop hands over at once


WATCHER = """
import os, sys, time
from orchestrator.store.lease import Holder, Verdict
from orchestrator.watch.journal import NotLeader, WatchJournal
from orchestrator.watch.leader import Role, action_key, step
url, name, lease_s, interval_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
me = Holder(host=name, pid=os.getpid(), start=None)
j = WatchJournal(url)
role = Role.STANDBY
while True:
    got = step(role, j.lead(me=me, ttl_s=lease_s))
    if got.role is Role.LEADER:
        if role is Role.STANDBY:
            print(f"leader {time.time()}", flush=True)
        try:
            # the failing site: drained once per incident, whoever leads
            if j.act_once(action_key(incident="i1", kind="drain", site="site3"), me=me, token=got.token):
                j.record("drain_after", round_no=0, site="site3", incident="i1", data={"by": name},
                         leader_token=got.token)
        except NotLeader:
            pass
    role = got.role
    time.sleep(interval_s)
"""


def test_two_watcher_processes_one_leads_the_other_takes_over_within_the_bound(store_url: str) -> None:
    """Two watcher processes drive the store's leadership directly (the real watch needs the lab):
    kill -9 the leader; the standby leads within lease + interval, and site3 is drained once."""
    WatchJournal(store_url)
    lease_s, interval_s = 3.0, 0.5
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {name: subprocess.Popen([sys.executable, "-c", WATCHER, store_url, name, str(lease_s), str(interval_s)],
                                    env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("watch-a", "watch-b")}
    try:
        deadline = time.monotonic() + 60
        journal = WatchJournal(store_url)
        while not journal.events(kind="drain_after"):
            assert time.monotonic() < deadline, {n: p.poll() for n, p in procs.items()}
            time.sleep(0.1)
        leader_name = journal.events(kind="drain_after")[0].data["by"]
        leader, standby = procs[leader_name], procs[next(n for n in procs if n != leader_name)]
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed = time.time()
        assert standby.stdout is not None
        line = standby.stdout.readline()
        assert line.startswith("leader "), (line, standby.stderr.read() if standby.stderr else "")
        took_over_after = float(line.split()[1]) - killed
        # bound: lease + interval, plus scheduling slack on a loaded 2-core machine
        assert took_over_after <= takeover_bound_s(lease_s=lease_s, interval_s=interval_s) + 2.0
        time.sleep(3 * interval_s)
        assert len(journal.events(kind="drain_after")) == 1  # not drained again by the new leader
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_the_watch_journal_path_is_still_a_file(tmp_path: Path) -> None:
    j = WatchJournal(tmp_path / "w.sqlite")
    assert j.path == tmp_path / "w.sqlite" and j.path.exists()
