"""The rollout engine against the lab (issue #5 acceptance): canary first, one site at a
time, 0 calls lost, then undone; a bug waking after the canary caught by the fleet guard;
a reconnection-triggered bug halted at the canary and alerted. The kill -9/resume and
concurrency cases are in test_rollout_recovery.py (the rig both share: rollout_rig.py)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.alerting.store import AlertStore
from orchestrator.policy.guard import GuardPolicy
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import TRANSITIONS, Phase
from orchestrator.schemas import validate
from tests.conftest import cli
from tests.integration_alerting.conftest import SECRETS, SMPP_PASSWORD, SMTP_PASSWORD, config_doc
from tests.integration_alerting.servers import BlackHole, HttpReceiver, SmppServer, SmtpServer
from tests.lab.conftest import Lab
from tests.lab.releases import counter_cap, make_release, rejects_after
from tests.lab.test_rollout.rig import (
    FAST,
    LATE_S,
    Caller,
    EdgeWatch,
    edge_all_full,
    no_staged_copy_left,
    releases,
    rollout,
    touched_sites,
    upgrade_args,
)

# Each test drives whole rollouts across six sites: minutes, not the suite's default 10.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.e2e_rollout]


def test_plan_then_a_good_release_canary_first_one_site_at_a_time_losing_nothing(
        lab: Lab, env: dict[str, str], traffic: Caller, tmp_path: Path) -> None:
    plan = cli("plan", "--to", "5.6.0-lab2", "--policy", env["policy"], "-i", str(lab.inventory), "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    with EdgeWatch(lab) as watch:
        proc = cli(*upgrade_args(lab, env, "5.6.0-lab2", "--expect-digest", planned["digest"][:16]), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    out = json.loads(proc.stdout)
    assert out["kind"] == "completed"
    j = Journal(Path(env["journal"]))
    run = j.run(out["run"])
    waves = run.plan["waves"]
    assert waves[0]["role"] == "canary" and waves[-1]["role"] == "reserve"
    # the journal: waves strictly in order, a wave starts only after the previous one is done
    transitions = [e for e in j.events(run.id) if e.kind == "transition"]
    starts = [e.wave for e in transitions if e.phase == Phase.DRAINING]
    dones = [e.wave for e in transitions if e.phase == Phase.WAVE_DONE]
    assert starts == dones == list(range(1, 7))
    for earlier, later in itertools.pairwise(transitions):
        assert Phase(later.phase) in TRANSITIONS[Phase(earlier.phase)]
    gates = [e.site for e in j.events(run.id, kind="gate")]
    assert gates[0] == waves[0]["site"]
    # each wave after the canary was staged while the one before it stepped and baked (the
    # reserve's staged release waited beside its current one through the fleet bake), so its
    # own turn began at the drain: only the canary prepared in its turn
    staged = [e.site for e in j.events(run.id, kind="stage") if e.data["state"] == "ready"]
    prepared = [e.site for e in j.events(run.id, kind="before") if e.data.get("effect") == "preflight"]
    assert staged == [w["site"] for w in waves[1:]], staged
    assert prepared == [waves[0]["site"]], prepared
    assert watch.samples > 100 and watch.worst == 1
    assert all(r == {"5.6.0-lab2"} for r in releases(lab).values())
    assert edge_all_full(lab)

    # `rollout undo` of the completed run: every site back on its from-release, one at a
    # time, the newest first, each drained and restored; the public still loses nothing. The
    # store no longer holds the release (withdrawn after the fact): a fleet rollback installs
    # nothing, so it does not need it.
    with EdgeWatch(lab) as watch:
        undone = rollout("undo", run.id, "--yes", "--by", "test", "--store", str(tmp_path / "withdrawn"), "--json",
                         env=env, lab=lab)
    assert undone.returncode == 11, undone.stderr[-3000:] + undone.stdout[-2000:]
    doc = json.loads(undone.stdout)
    validate("outcome", doc)
    assert doc["kind"] == "halted" and "undone by test" in doc["message"]
    fleet = j.run(run.id).progress.fleet
    assert fleet is not None and fleet.queue == () and fleet.failed == ()
    assert fleet.done == tuple(w["site"] for w in reversed(waves))
    assert releases(lab) == {w["site"]: {w["from_releases"][0]} for w in waves}
    assert edge_all_full(lab)
    assert watch.worst == 1  # never more than one site out of traffic at a time
    again = rollout("undo", run.id, "--yes", "--json", env=env, lab=lab)
    assert again.returncode == 2 and "already rolled back" in again.stdout, again.stdout
    public = traffic.stop()
    assert public["attempted"] > 500 and public["failed"] == 0, public


def _gate_calls_per_host(lab: Lab) -> float:
    """The calls the canary's own gate places on each of its hosts under FAST (synthetic, drill, soak)."""
    gate, numbers = FAST["gate"], len(lab.estate.numbers)
    hosts = len(lab.estate.sites[0].hosts)
    per_site = (gate["synthetic"]["calls_per_number"] + gate["drill"]["calls_per_number"]) * numbers \
        + 100 * gate["soak"]["duration_s"]  # the soak's default rate, 100 calls/s over all numbers
    return per_site / hosts  # type: ignore[no-any-return]


# A fault needing K calls on a host to appear (a counter with a cap, the Intrado kind): K above
# all the canary's gate places on a host, and above what its live steps, bake and health probe
# add (about 50 more); the public and the guard's probes (about 2 calls/s a host) take it there
# a wave or two after the canary's.
K_CALLS = 700


@pytest.mark.parametrize("fault", ["wakes-after-60s", "needs-700-calls-a-host"])
def test_a_bug_waking_after_the_canary_is_caught_by_the_fleet_guard_and_the_fleet_rolled_back(
        lab: Lab, env: dict[str, str], traffic: Caller, fault: str) -> None:
    """The 2021 shape: the canary passes everything, then fails every call (after a time, or
    after K calls a host). The guard names it within two rounds of its first failures, drains
    it, and the run takes every site it upgraded back (the canary first); the reserve never
    runs the release; exit 11."""
    before = releases(lab)
    if fault == "needs-700-calls-a-host":
        placed = _gate_calls_per_host(lab)
        print(f"fault: every call fails from call {K_CALLS} on a host; the canary's gate places {placed:.0f} a host")
        assert placed + 50 < K_CALLS
        version, mutate = "5.6.0-counter-cap", counter_cap(K_CALLS)
    else:
        version, mutate = "5.6.0-late-bug", rejects_after(LATE_S)
    make_release(Path(env["store"]), version, mutate)
    with EdgeWatch(lab) as watch:
        proc = cli(*upgrade_args(lab, env, version), timeout=900)
    assert proc.returncode == 11, proc.stderr[-3000:] + proc.stdout[-2000:]
    out = json.loads(proc.stdout)
    assert out["kind"] == "halted" and "fleet guard" in out["message"], out
    j = Journal(Path(env["journal"]))
    run = j.run(out["run"])
    waves = run.plan["waves"]
    canary, reserve = waves[0]["site"], waves[-1]["site"]
    fired, fleet = run.progress.guard, run.progress.fleet
    assert fired is not None and fired.culprits[0] == canary and canary in fired.drained, fired
    assert fleet is not None and fleet.done[0] == canary and fleet.failed == () and fleet.queue == ()
    touched = touched_sites(j, run.id)
    assert reserve not in touched  # the reserve never ran the release
    assert set(fleet.done) == touched  # every site the run touched went back
    assert len(touched) >= 2  # the canary's own waves passed: the fault woke after them
    no_staged_copy_left(lab, j, run.id, version)
    (event,) = j.events(run.id, kind="guard")
    culprit = next(c for c in event.data["culprits"] if c["site"] == canary)
    rounds = event.data["round"] - culprit["since_round"] + 1
    print(f"guard: {culprit['site']} named in round {event.data['round']}, its failures counted from round "
          f"{culprit['since_round']} ({rounds} round(s)); {culprit['failed']}/{culprit['calls']} failed; "
          f"{len(touched)} site(s) upgraded by then")
    # Within three rounds of its first failures, the window the public-loss bound below allows:
    # a fault needing K calls a host reaches one host before the other, so its first round may
    # hold too few failures to cross the boundary (once measured: 22 of 60 failed by round 3).
    assert rounds <= 3
    assert releases(lab) == before
    assert edge_all_full(lab)
    public = traffic.stop()
    guard = GuardPolicy()
    # the canary's share of the public (20 calls/s over six sites) for three rounds and the lag
    bound = 20 / 6 * (3 * guard.interval_s + 2 * FAST["gate"]["live_steps"]["metrics_lag_s"]) + 5  # type: ignore[index]
    print(f"public: {public['failed']} of {public['attempted']} calls failed (bound {bound:.0f})")
    assert public["failed"] <= bound, public
    assert watch.samples > 10


def test_a_reconnection_bug_is_halted_at_the_canary_rolled_back_and_alerted_on_every_channel(
        lab: Lab, env: dict[str, str], traffic: Caller, tmp_path: Path) -> None:
    before = releases(lab)
    http, smtp, smsc = HttpReceiver(), SmtpServer(user="callfleet", password=SMTP_PASSWORD), \
        SmppServer(password=SMPP_PASSWORD)
    dead = BlackHole()  # a fourth channel whose server accepts and never answers
    offset = time.time() - time.monotonic()  # the servers stamp time.monotonic(), the journal time.time()
    try:
        doc = config_doc(http_port=http.port, smtp_port=smtp.port, smpp_port=smsc.port,
                         store=tmp_path / "alerts.sqlite")
        doc["channels"]["dead-chat"] = {"type": "webhook", "url": f"http://127.0.0.1:{dead.port}/hook"}
        doc["audiences"]["crisis_cell"]["webhooks"].append("dead-chat")
        alerts = tmp_path / "alerts.yml"
        alerts.write_text(yaml.safe_dump(doc))
        proc = cli(*upgrade_args(lab, env, "5.6.0-reconnect-bug"), timeout=900,
                   env={"CALLFLEET_ALERTS": str(alerts), **SECRETS})
    finally:
        for server in (http, smtp, smsc, dead):
            server.close()
    assert proc.returncode == 6, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["kind"] == "halted" and out["wave"] == 1
    assert "drill" in out["message"] and "rolled back" in out["message"]
    j = Journal(Path(env["journal"]))
    run = j.run(out["run"])
    canary = run.plan["waves"][0]["site"]
    touched = touched_sites(j, run.id)
    assert touched == {canary}
    assert releases(lab) == before
    assert edge_all_full(lab)
    public = traffic.stop()
    assert public["failed"] == 0, public
    # The failed gate and the rollback reached all three channels, with the facts, before the
    # command returned; the dead channel was retried and marked failed and held back neither the
    # others nor the rollback (the gate's alert was on the webhook before the canary's traffic
    # came back); no channel secret is in the journal or the alert store.
    states = {(d.dedupe_key.rsplit(":", 1)[1], d.channel): d.state.value
              for d in AlertStore(path=tmp_path / "alerts.sqlite").deliveries()}
    assert states[("gate_failed", "dead-chat")] == "failed", states
    assert {states[("gate_failed", c)] for c in ("ops-chat", "mail", "sms")} <= {"sent", "acknowledged"}, states
    restored = next(e.ts for e in j.events(run.id) if e.kind == "after" and e.data.get("effect") == "restore traffic")
    assert min(h.at for h in http.hits) + offset < restored
    hooks = [json.dumps(h.body, ensure_ascii=False) for h in http.hits]
    assert len(hooks) == 2 and all(canary in h and "5.6.0-reconnect-bug" in h for h in hooks), hooks
    subjects = sorted(str(m["Subject"]) for _, m, _ in smtp.messages)
    assert len(subjects) == 2 and any("échec" in s for s in subjects), subjects
    assert all(canary in m.get_content() for _, m, _ in smtp.messages)
    assert {s.destination for s in smsc.state.submits} == {"33600000001", "33600000002"}
    for path in (Path(env["journal"]), tmp_path / "alerts.sqlite"):
        blob = path.read_bytes()
        assert not any(secret.encode() in blob for secret in SECRETS.values()), path
