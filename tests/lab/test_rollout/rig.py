"""The rig of the whole-rollout lab tests (test_rollout.py, test_rollout_recovery.py): the
lab tests' policy, the public caller, an edge watcher, spawned orchestrator processes and
their kills, and journal helpers (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from orchestrator.errors import InvalidInput
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.traffic.edge import SshEdge
from tests.conftest import REPO, cli
from tests.lab.conftest import Lab, edge_list_text, on_host

# The lab tests' policy: the default gate with the smallest windows, soaks and bakes (shared
# with benchmarks/guard_good_rollouts.py).
FAST = yaml.safe_load((REPO / "policies" / "lab-tests.yml").read_text())


# A runner's lease on a run: short, so a takeover after kill -9 costs seconds, not a minute.
LEASE_S = 5


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


def touched_sites(j: Journal, run_id: str) -> set[str]:
    """The sites a run changed (an effect on them), staged sites it only removed a copy from aside."""
    return {e.site for e in j.events(run_id) if e.kind == "before" and e.site and e.data.get("effect") != "unstage"}


def no_staged_copy_left(lab: Lab, j: Journal, run_id: str, version: str) -> None:
    """A run that ended short of a site it had staged removed the staged release there: no host
    of a site the run never switched holds `version`."""
    staged = {e.site for e in j.events(run_id, kind="stage")}
    for site in staged - touched_sites(j, run_id):
        for host in lab.estate.site(site).hosts:
            left = on_host(lab, host.name, f"ls {host.root}/releases").split()
            assert version not in left, f"{host.name} still holds the staged {version}: {left}"
    print(f"staged: {sorted(staged)}; unstaged: {sorted(staged - touched_sites(j, run_id))}")


# The canary's restart to the end of its wave takes about 40 s under FAST: a bug waking 60 s
# after the restart has passed the canary's gate, live steps, bake and health probe.
LATE_S = 60

def wait_phase(journal: Path | str, run_id: str | None, phases: set[Phase], *, timeout: float = 300,
                known: frozenset[str] = frozenset()) -> str:
    """Poll the journal until the run (or, with `run_id` None, the first run not in `known`:
    the one just spawned) reaches one of `phases`; returns the run id."""
    deadline = time.monotonic() + timeout
    j = journal_once_created(journal, deadline)
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


def journal_once_created(journal: Path | str, deadline: float) -> Journal:
    """The journal, read-only, once the process just spawned has created it (a test run alone,
    with `-k`, may be the first to write a SQLite journal)."""
    while True:
        try:
            return Journal(journal, read_only=True)
        except InvalidInput:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def known_runs(journal: Path | str) -> frozenset[str]:
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
                kill9(proc)


def kill9(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator and the ansible/sipp children it started
    proc.wait(10)


def until_lease_expires(journal: str, run_id: str) -> None:
    """Sleep until the run's lease (its dead or frozen holder's) has expired."""
    expires = Journal(journal, read_only=True).run(run_id).lease_expires
    assert expires is not None
    time.sleep(max(0.0, expires - time.time()) + 0.3)


