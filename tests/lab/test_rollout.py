"""The rollout engine against the lab (issue #5 acceptance): canary first, one site at a
time, 0 calls lost; a reconnection-triggered bug halted at the canary; kill -9 at many
points then resume; two rollouts at once; advance while baking. The kill/resume and
concurrency tests drive one run from several runner identities ($CALLFLEET_HOLDER) through
a shared PostgreSQL journal, as CI runners on different machines would (issue #18)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.alerting.store import AlertStore
from orchestrator.errors import InvalidInput
from orchestrator.policy.guard import GuardPolicy
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import TRANSITIONS, Phase
from orchestrator.schemas import validate
from orchestrator.traffic.edge import SshEdge
from tests.conftest import REPO, cli
from tests.integration_alerting.conftest import SECRETS, SMPP_PASSWORD, SMTP_PASSWORD, config_doc
from tests.integration_alerting.servers import BlackHole, HttpReceiver, SmppServer, SmtpServer
from tests.lab.conftest import Lab, edge_list_text, on_host, restore_stock
from tests.lab.releases import breaks_after_reconnect, counter_cap, make_release, rejects_after
from tests.pg_server import PgServer

# Each test drives whole rollouts across six sites: minutes, not the suite's default 10.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.e2e_rollout]

# The lab tests' policy: the default gate with the smallest windows, soaks and bakes (shared
# with benchmarks/guard_good_rollouts.py).
FAST = yaml.safe_load((REPO / "policies" / "lab-tests.yml").read_text())


# A runner's lease on a run: short, so a takeover after kill -9 costs seconds, not a minute.
LEASE_S = 5


@pytest.fixture(scope="module")
def env(lab: Lab, tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Releases, a fast policy, a SQLite journal and a shared PostgreSQL one for this module;
    at the end every site goes back to the stock release, as the lab tests that follow expect."""
    d = tmp_path_factory.mktemp("rollout")
    store = d / "store"
    make_release(store, "5.6.0-lab2")
    make_release(store, "5.6.0-lab3")
    make_release(store, "5.6.0-reconnect-bug", breaks_after_reconnect)
    policy = d / "policy.yml"
    policy.write_text(yaml.safe_dump(FAST))
    shared = pg_server.new_database()
    Journal(shared, create=True)
    yield {"store": str(store), "policy": str(policy), "journal": str(d / "journal.sqlite"), "shared": shared}
    restore_stock(lab)


def runner(name: str) -> dict[str, str]:
    """The environment of a CI runner called `name` (its holder identity), with a short lease."""
    return {**os.environ, "LC_ALL": "C.UTF-8", "CALLFLEET_HOLDER": name, "CALLFLEET_LEASE_S": str(LEASE_S)}


def upgrade_args(lab: Lab, env: dict[str, str], version: str, *extra: str) -> list[str]:
    return ["upgrade", "--to", version, "--yes", "--json", "--store", env["store"], "--policy", env["policy"],
            "--journal", env["journal"], "-i", str(lab.inventory), *extra]


def rollout(*args: str, env: dict[str, str], lab: Lab, journal: str | None = None,
            holder: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli("rollout", *args, "--journal", journal or env["journal"], "-i", str(lab.inventory), timeout=900,
               env=runner(holder) if holder else None)


class Caller:
    """The background caller (the public) for the length of a test."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.report: dict[str, int] | None = None

    def stop(self) -> dict[str, int]:
        if self.report is None:
            out = cli("lab", "traffic", "stop", "--state-dir", str(self.lab.state_dir), "--json")
            self.report = json.loads(out.stdout)
        return self.report


@pytest.fixture
def traffic(lab: Lab) -> Iterator[Caller]:
    start = cli("lab", "traffic", "start", "--rate", "20", "--duration", "900", "--state-dir", str(lab.state_dir))
    assert start.returncode == 0, start.stderr
    caller = Caller(lab)
    yield caller
    caller.stop()


class EdgeWatch:
    """Samples the edge's dispatcher list while a rollout runs: how many sites are drained
    or below their full weight at once."""

    def __init__(self, lab: Lab) -> None:
        assert lab.estate.edge is not None
        self.path = lab.estate.edge.dispatcher_list
        self.edge = SshEdge(lab.estate)  # one connection: a sample is one SSH channel
        self.worst = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            sites = {}
            for line in self.edge.read_file(self.path).splitlines():
                parts = line.split()
                if len(parts) == 5 and not line.startswith("#"):
                    attrs = dict(kv.split("=") for kv in parts[4].split(";"))
                    sites[attrs["site"]] = parts[2] == "1" or attrs["rweight"] != "100"
            self.worst = max(self.worst, sum(sites.values()))
            self.samples += 1

    def __enter__(self) -> EdgeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.edge.close()


def releases(lab: Lab) -> dict[str, set[str]]:
    st = json.loads(cli("lab", "status", "--state-dir", str(lab.state_dir), "--json").stdout)
    out: dict[str, set[str]] = {}
    for c in st["components"]:
        if c["kind"] == "callserver":
            out.setdefault(c["site"], set()).add(c["release"])
    return out


def edge_all_full(lab: Lab) -> bool:
    text = edge_list_text(lab)
    rows = [ln.split() for ln in text.splitlines() if ln and not ln.startswith("#")]
    return all(r[2] == "0" and "rweight=100" in r[4] for r in rows)


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
    # each wave after the canary was staged while the one before it stepped and baked, so its
    # own turn began at the drain; the reserve (behind its fleet bake) is prepared in its turn
    staged = [e.site for e in j.events(run.id, kind="stage") if e.data["state"] == "ready"]
    prepared = [e.site for e in j.events(run.id, kind="before") if e.data.get("effect") == "preflight"]
    assert staged == [w["site"] for w in waves[1:-1]], staged
    assert prepared == [waves[0]["site"], waves[-1]["site"]], prepared
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


def _touched(j: Journal, run_id: str) -> set[str]:
    """The sites a run changed (an effect on them), staged sites it only removed a copy from aside."""
    return {e.site for e in j.events(run_id) if e.kind == "before" and e.site and e.data.get("effect") != "unstage"}


def _no_staged_copy_left(lab: Lab, j: Journal, run_id: str, version: str) -> None:
    """A run that ended short of a site it had staged removed the staged release there: no host
    of a site the run never switched holds `version`."""
    staged = {e.site for e in j.events(run_id, kind="stage")}
    for site in staged - _touched(j, run_id):
        for host in lab.estate.site(site).hosts:
            left = on_host(lab, host.name, f"ls {host.root}/releases").split()
            assert version not in left, f"{host.name} still holds the staged {version}: {left}"
    print(f"staged: {sorted(staged)}; unstaged: {sorted(staged - _touched(j, run_id))}")


# The canary's restart to the end of its wave takes about 40 s under FAST: a bug waking 60 s
# after the restart has passed the canary's gate, live steps, bake and health probe.
LATE_S = 60


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
    touched = _touched(j, run.id)
    assert reserve not in touched  # the reserve never ran the release
    assert set(fleet.done) == touched  # every site the run touched went back
    assert len(touched) >= 2  # the canary's own waves passed: the fault woke after them
    _no_staged_copy_left(lab, j, run.id, version)
    (event,) = j.events(run.id, kind="guard")
    culprit = next(c for c in event.data["culprits"] if c["site"] == canary)
    rounds = event.data["round"] - culprit["since_round"] + 1
    print(f"guard: {culprit['site']} named in round {event.data['round']}, its failures counted from round "
          f"{culprit['since_round']} ({rounds} round(s)); {culprit['failed']}/{culprit['calls']} failed; "
          f"{len(touched)} site(s) upgraded by then")
    assert rounds <= 2
    assert releases(lab) == before
    assert edge_all_full(lab)
    public = traffic.stop()
    guard = GuardPolicy()
    # the canary's share of the public (20 calls/s over six sites) for three rounds and the lag
    bound = 20 / 6 * (3 * guard.interval_s + 2 * FAST["gate"]["live_steps"]["metrics_lag_s"]) + 5  # type: ignore[index]
    print(f"public: {public['failed']} of {public['attempted']} calls failed (bound {bound:.0f})")
    assert public["failed"] <= bound, public
    assert watch.samples > 10


def test_kill_9_during_the_fleet_rollback_then_resume_ends_on_the_known_good_release(
        lab: Lab, env: dict[str, str], traffic: Caller, spawn: Spawned) -> None:
    """The guard fired and the fleet rollback is under way when its process is killed (-9);
    `rollout resume` from another runner finishes it: every site back on its from-release,
    every weight full, the journal intact, exit 11."""
    journal = env["shared"]
    before = releases(lab)
    known = _known_runs(journal)
    make_release(Path(env["store"]), "5.6.0-late-bug-2", rejects_after(LATE_S))
    proc = spawn(upgrade_args(lab, {**env, "journal": journal}, "5.6.0-late-bug-2"), holder="runner-a")
    run_id = _wait_phase(journal, None, {Phase.FLEET_ROLLING_BACK}, known=known)
    time.sleep(1.0)  # inside the drain or the switch back of the first site
    _kill9(proc)
    mid = Journal(journal, read_only=True).run(run_id)
    assert mid.phase == Phase.FLEET_ROLLING_BACK and mid.progress.fleet is not None
    print(f"killed with {len(mid.progress.fleet.queue)} site(s) still to take back, {mid.progress.fleet.done} done")
    _until_lease_expires(journal, run_id)
    resumed = rollout("resume", run_id, "--store", env["store"], "--json", env=env, lab=lab, journal=journal,
                      holder="runner-b")
    assert resumed.returncode == 11, resumed.stderr[-3000:] + resumed.stdout[-2000:]
    j = Journal(journal, read_only=True)
    run = j.run(run_id)
    fleet = run.progress.fleet
    assert run.phase == Phase.HALTED and fleet is not None and fleet.queue == () and fleet.failed == ()
    touched = _touched(j, run_id)
    assert set(fleet.done) == touched
    assert j.integrity_ok()
    _no_staged_copy_left(lab, j, run_id, "5.6.0-late-bug-2")
    assert releases(lab) == before
    assert edge_all_full(lab)


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
    touched = _touched(j, run.id)
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


def _wait_phase(journal: Path | str, run_id: str | None, phases: set[Phase], *, timeout: float = 300,
                known: frozenset[str] = frozenset()) -> str:
    """Poll the journal until the run (or, with `run_id` None, the first run not in `known`:
    the one just spawned) reaches one of `phases`; returns the run id."""
    deadline = time.monotonic() + timeout
    j = _journal_once_created(journal, deadline)
    while time.monotonic() < deadline:
        if run_id is None:
            new = [r for r in j.runs(limit=5) if r.id not in known]
            run_id = new[0].id if new else None
        if run_id is not None:
            run = j.run(run_id)
            if run.phase in phases:
                return run.id
            if run.phase in (Phase.COMPLETED, Phase.HALTED, Phase.ABORTED):
                raise AssertionError(f"run ended in {run.phase} before reaching {phases}: {run.outcome}")
        time.sleep(0.02)
    raise AssertionError(f"never reached {phases}")


def _journal_once_created(journal: Path | str, deadline: float) -> Journal:
    """The journal, read-only, once the process just spawned has created it (a test run alone,
    with `-k`, may be the first to write a SQLite journal)."""
    while True:
        try:
            return Journal(journal, read_only=True)
        except InvalidInput:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _known_runs(journal: Path | str) -> frozenset[str]:
    if isinstance(journal, Path) and not journal.exists():
        return frozenset()
    return frozenset(r.id for r in Journal(journal, read_only=True).runs(limit=1000))


class Spawned:
    """Orchestrator processes a test started in their own session, each writing its stderr
    to a file of its own; any still alive at the end of the test are killed with their
    children, so a failed test never leaves a rollout running (and holding the lock)."""

    def __init__(self, logs: Path) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.logs = logs

    def __call__(self, args: list[str], *, holder: str | None = None) -> subprocess.Popen[str]:
        with (self.logs / f"{len(self.procs)}.stderr").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=REPO, text=True,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                    env=runner(holder) if holder else {**os.environ, "LC_ALL": "C.UTF-8"})
        self.procs.append(proc)
        return proc

    def stderr(self, proc: subprocess.Popen[str]) -> str:
        return (self.logs / f"{self.procs.index(proc)}.stderr").read_text()

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                _kill9(proc)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawned]:
    spawned = Spawned(tmp_path)
    yield spawned
    spawned.kill_all()


def _kill9(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and the ansible/sipp children it started
    proc.wait(10)


KILL_POINTS = [Phase.PREPARING, Phase.DRAINING, Phase.SWITCHING, Phase.POSTCHECKING, Phase.GATING,
               Phase.STEPPING, Phase.BAKING, Phase.SWITCHING, Phase.GATING, Phase.WAITING_FLEET_BAKE]


def _until_lease_expires(journal: str, run_id: str) -> None:
    """Sleep until the run's lease (its dead or frozen holder's) has expired."""
    expires = Journal(journal, read_only=True).run(run_id).lease_expires
    assert expires is not None
    time.sleep(max(0.0, expires - time.time()) + 0.3)


def test_kill_9_at_many_points_then_resume_ends_consistent(
        lab: Lab, env: dict[str, str], traffic: Caller, spawn: Spawned) -> None:
    """Each kill -9 is followed by `rollout resume` from another runner, through the shared
    PostgreSQL journal. Before the dead holder's lease expires the other runner is refused,
    naming the holder; once it has, it takes the run over. At the bake one holder is frozen
    (SIGSTOP) instead: a runner takes over, and when the frozen one wakes its next write is
    refused, it exits 9 saying so, and the run goes on unharmed."""
    journal = env["shared"]
    known = _known_runs(journal)
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
        run_id = _wait_phase(journal, run_id, {target}, known=known)
        if target is Phase.BAKING:
            os.killpg(proc.pid, signal.SIGSTOP)  # the holder and its children stall, alive
            frozen = proc
        else:
            _kill9(proc)
        killed_at.append((Journal(journal, read_only=True).run(run_id).wave, target))
        if n == 0:
            early = rollout("resume", run_id, "--store", env["store"], env=env, lab=lab, journal=journal,
                            holder="runner-early")
            assert early.returncode == 9, early.stderr
            assert "being driven by process" in early.stderr and "on runner-0" in early.stderr, early.stderr
        _until_lease_expires(journal, run_id)
        proc = resume()
        if frozen is not None and frozen.poll() is None:
            # the new holder has written (it moved on) before the old one wakes
            _wait_phase(journal, run_id, set(Phase) - {Phase.BAKING})
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
    known = _known_runs(journal)
    proc = spawn(upgrade_args(lab, env, "5.6.0-reconnect-bug"))
    run_id = _wait_phase(journal, None, {Phase.ROLLING_BACK}, known=known)
    time.sleep(0.5)  # inside the Ansible run
    _kill9(proc)
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
