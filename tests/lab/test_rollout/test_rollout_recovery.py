"""Rollouts that survive their runners (issues #5, #14, #18): kill -9 at many points then
`rollout resume` from another runner, kill -9 during a site rollback and during a fleet
rollback, six runners starting one rollout and three advancing it. The runs are driven from
several runner identities ($CALLFLEET_HOLDER) through a shared PostgreSQL journal, as CI
runners on different machines would."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.schemas import validate
from tests.conftest import REPO, cli
from tests.lab.conftest import Lab
from tests.lab.releases import make_release, rejects_after
from tests.lab.test_rollout.rig import (
    FAST,
    LATE_S,
    Caller,
    Spawned,
    edge_all_full,
    kill9,
    known_runs,
    no_staged_copy_left,
    releases,
    rollout,
    runner,
    touched_sites,
    until_lease_expires,
    upgrade_args,
    wait_phase,
)

# Each test drives whole rollouts across six sites: minutes, not the suite's default 10.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.e2e_rollout]


def test_kill_9_during_the_fleet_rollback_then_resume_ends_on_the_known_good_release(
        lab: Lab, env: dict[str, str], traffic: Caller, spawn: Spawned) -> None:
    """The guard fired and the fleet rollback is under way when its process is killed (-9);
    `rollout resume` from another runner finishes it: every site back on its from-release,
    every weight full, the journal intact, exit 11."""
    journal = env["shared"]
    before = releases(lab)
    known = known_runs(journal)
    make_release(Path(env["store"]), "5.6.0-late-bug-2", rejects_after(LATE_S))
    proc = spawn(upgrade_args(lab, {**env, "journal": journal}, "5.6.0-late-bug-2"), holder="runner-a")
    run_id = wait_phase(journal, None, {Phase.FLEET_ROLLING_BACK}, known=known)
    time.sleep(1.0)  # inside the drain or the switch back of the first site
    kill9(proc)
    mid = Journal(journal, read_only=True).run(run_id)
    assert mid.phase == Phase.FLEET_ROLLING_BACK and mid.progress.fleet is not None
    print(f"killed with {len(mid.progress.fleet.queue)} site(s) still to take back, {mid.progress.fleet.done} done")
    until_lease_expires(journal, run_id)
    resumed = rollout("resume", run_id, "--store", env["store"], "--json", env=env, lab=lab, journal=journal,
                      holder="runner-b")
    assert resumed.returncode == 11, resumed.stderr[-3000:] + resumed.stdout[-2000:]
    j = Journal(journal, read_only=True)
    run = j.run(run_id)
    fleet = run.progress.fleet
    assert run.phase == Phase.HALTED and fleet is not None and fleet.queue == () and fleet.failed == ()
    touched = touched_sites(j, run_id)
    assert set(fleet.done) == touched
    assert j.integrity_ok()
    no_staged_copy_left(lab, j, run_id, "5.6.0-late-bug-2")
    assert releases(lab) == before
    assert edge_all_full(lab)


KILL_POINTS = [Phase.PREPARING, Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING,
               Phase.STEPPING, Phase.BAKING, Phase.SWITCHING, Phase.GATING, Phase.WAITING_FLEET_BAKE]


def test_kill_9_at_many_points_then_resume_ends_consistent(
        lab: Lab, env: dict[str, str], traffic: Caller, spawn: Spawned) -> None:
    """Each kill -9 is followed by `rollout resume` from another runner, through the shared
    PostgreSQL journal. Before the dead holder's lease expires the other runner is refused,
    naming the holder; once it has, it takes the run over. At the bake one holder is frozen
    (SIGSTOP) instead: a runner takes over, and when the frozen one wakes its next write is
    refused, it exits 9 saying so, and the run goes on unharmed."""
    journal = env["shared"]
    known = known_runs(journal)
    holders = (f"runner-{k}" for k in itertools.count())
    proc = spawn(upgrade_args(lab, {**env, "journal": journal}, "5.6.0-lab3"), holder=next(holders))
    run_id = None
    killed_at = []
    frozen: subprocess.Popen[str] | None = None

    def resume() -> subprocess.Popen[str]:
        assert run_id is not None
        return spawn(["rollout", "resume", run_id, "--journal", journal, "-i", str(lab.inventory),
                      "--store", env["store"]], holder=next(holders))

    for n, target in enumerate(KILL_POINTS):
        run_id = wait_phase(journal, run_id, {target}, known=known)
        if target is Phase.BAKING:
            os.killpg(proc.pid, signal.SIGSTOP)  # the holder and its children stall, alive
            frozen = proc
        else:
            kill9(proc)
        killed_at.append((Journal(journal, read_only=True).run(run_id).wave, target))
        if n == 0:
            early = rollout("resume", run_id, "--store", env["store"], env=env, lab=lab, journal=journal,
                            holder="runner-early")
            assert early.returncode == 9, early.stderr
            assert "being driven by process" in early.stderr and "on runner-0" in early.stderr, early.stderr
        until_lease_expires(journal, run_id)
        proc = resume()
        if frozen is not None and frozen.poll() is None:
            # the new holder has written (it moved on) before the old one wakes
            wait_phase(journal, run_id, set(Phase) - {Phase.BAKING})
            os.killpg(frozen.pid, signal.SIGCONT)
            assert frozen.wait(120) == 9, spawn.stderr(frozen)[-2000:]
            assert "lost its lease on the run" in spawn.stderr(frozen), spawn.stderr(frozen)[-2000:]
    assert proc.wait(900) == 0
    assert run_id is not None
    j = Journal(journal, read_only=True)
    run = j.run(run_id)
    assert run.phase == Phase.COMPLETED, run.outcome
    assert len(set(killed_at)) >= 10, killed_at
    assert j.integrity_ok()
    # never upgraded twice: each wave done exactly once; every gate re-run shows before its wave moved on
    dones = [e.wave for e in j.events(run_id) if e.kind == "transition" and e.phase == Phase.WAVE_DONE]
    assert dones == list(range(1, 7))
    gated = {e.wave for e in j.events(run_id) if e.kind == "gate"}
    assert gated == set(range(1, 7))
    assert all(r == {"5.6.0-lab3"} for r in releases(lab).values())
    assert edge_all_full(lab)


def test_kill_9_during_a_rollback_then_resume_restores_the_site(
        lab: Lab, env: dict[str, str], traffic: Caller, spawn: Spawned) -> None:
    journal = Path(env["journal"])
    before = releases(lab)
    known = known_runs(journal)
    proc = spawn(upgrade_args(lab, env, "5.6.0-reconnect-bug"))
    run_id = wait_phase(journal, None, {Phase.ROLLING_BACK}, known=known)
    time.sleep(0.5)  # inside the Ansible run
    kill9(proc)
    resumed = rollout("resume", run_id, "--store", env["store"], "--json", env=env, lab=lab)
    assert resumed.returncode == 6, resumed.stderr[-2000:]
    assert releases(lab) == before
    assert edge_all_full(lab)


BAKE_S = 6


def test_six_runners_start_one_rollout_and_three_runners_advance_it_to_the_end(
        lab: Lab, env: dict[str, str], tmp_path: Path, traffic: Caller) -> None:
    """Six CI runners start the same rollout on one shared PostgreSQL journal: exactly one
    proceeds, the five others exit 9 naming it. The run (three sites, --limit) is then driven
    by `rollout advance` from three other runners in turn, as scheduled jobs would: an
    advance during a bake changes nothing; each wave runs once, each gate once."""
    # the background caller gives the live steps their calls (none: INCONCLUSIVE)
    paced = {**FAST, "rollout": {"bake_s": BAKE_S, "canary_bake_s": BAKE_S,
                                 "reserve": {"sites": 1, "fleet_bake_s": 3}}}
    policy = tmp_path / "paced.yml"
    policy.write_text(yaml.safe_dump(paced))
    sites = [s.name for s in lab.estate.sites][:3]
    journal = env["shared"]
    args = upgrade_args(lab, {**env, "policy": str(policy), "journal": journal}, "5.6.0-lab2", "--no-wait",
                        "--limit", ",".join(sites))
    names = [f"starter-{k}" for k in range(6)]
    procs = {name: subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=REPO, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=runner(name))
             for name in names}
    results = {name: (p.wait(600), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "")
               for name, p in procs.items()}
    assert sorted(r[0] for r in results.values()) == [9, 9, 9, 9, 9, 10], results
    winner = next(name for name, r in results.items() if r[0] == 10)
    waiting = json.loads(results[winner][1])
    validate("outcome", waiting)
    assert waiting["phase"] == "baking"
    for name, (_, out, err) in results.items():
        if name != winner:
            validate("error", json.loads(out))  # --json: the refusal is one error document too
            assert waiting["run"] in err and "holds the rollout lock" in err and f"@{winner})" in err, err
    run_id = waiting["run"]
    j = Journal(journal, read_only=True)
    events_before = len(j.events(run_id))
    early = rollout("advance", run_id, "--store", env["store"], "--json", env=env, lab=lab, journal=journal,
                    holder="scheduler-0")
    assert early.returncode == 10, early.stderr
    assert "baking" in json.loads(early.stdout)["message"] and "left" in json.loads(early.stdout)["message"]
    assert len(j.events(run_id)) == events_before  # nothing written, nothing done
    advanced_by = []
    for k in itertools.count(1):
        assert k <= 12, "the run did not complete within 12 advances"
        time.sleep(BAKE_S)  # the job's schedule: after the wave's bake
        holder = f"scheduler-{k % 3}"
        seen = len(j.events(run_id))
        adv = rollout("advance", run_id, "--store", env["store"], "--json", env=env, lab=lab, journal=journal,
                      holder=holder)
        assert adv.returncode in (0, 10), adv.stderr[-3000:]
        if len(j.events(run_id)) > seen:
            advanced_by.append(holder)
        if adv.returncode == 0:
            assert json.loads(adv.stdout)["kind"] == "completed"
            break
    assert len(set(advanced_by)) == 3, advanced_by  # three runners each moved it on
    events = j.events(run_id)
    dones = [e.wave for e in events if e.kind == "transition" and e.phase == Phase.WAVE_DONE]
    assert dones == [1, 2, 3]
    gates = [e for e in events if e.kind == "gate"]  # the gate's verdict, then the live steps', per wave
    assert [e.site for e in gates if "stages" in e.data] == sites  # each gate once, in order
    assert [e.site for e in gates if e.data.get("stage") == "live-steps"] == sites
    after = releases(lab)
    assert all(after[s] == {"5.6.0-lab2"} for s in sites)
    assert all(after[s] != {"5.6.0-lab2"} for s in after if s not in sites)
    assert edge_all_full(lab)
    # a run waiting at its bake is aborted by another runner: it ends ABORTED, every weight back
    other = next(s.name for s in lab.estate.sites if s.name not in sites)
    started = cli(*upgrade_args(lab, {**env, "policy": str(policy), "journal": journal}, "5.6.0-lab2", "--no-wait",
                                "--limit", other), env=runner("starter-0"), timeout=900)
    assert started.returncode == 10, started.stderr[-3000:]
    ab = rollout("abort", json.loads(started.stdout)["run"], "--by", "test", "--store", env["store"], "--json",
                 env=env, lab=lab, journal=journal, holder="scheduler-1")
    assert ab.returncode == 0, ab.stderr
    validate("outcome", json.loads(ab.stdout))
    assert json.loads(ab.stdout)["kind"] == "aborted"
    assert edge_all_full(lab)
    assert traffic.stop()["failed"] == 0
