"""Scale: how wave time, orchestrator CPU and memory grow with hosts per site and sites
(issues #8 and #16).

For each shape (sites x hosts per site) a lab of that shape is brought up on 198.18.97 (its own
temporary state directory, taken down after), the background caller started (20 calls/s), and
a good release rolled out with `callfleet upgrade` under the lab tests' policy
(policies/lab-tests.yml: 100 calls per number, 3 s soak, two live steps, 2 s bakes).
Measured per shape:

  - median wave s: the median wave from the journal (benchmarks/waves.py), and the median of
    its parts that could grow with hosts (switch, post-check, gate stages); *x 1 host*: the
    median wave over the 1-host shape's (issue #16 bounds 8 hosts at 1.5);
  - rollout s: the upgrade command's wall time;
  - orchestrator CPU s: user+system time of the orchestrator process itself (/proc/PID/stat,
    read until it exits);
  - CPU s with children: user+system time of the command and everything it waited for
    (ansible-playbook, ssh, SIPp, testinfra): resource.getrusage(RUSAGE_CHILDREN), before/after;
  - peak MB: the orchestrator process's peak resident memory (VmHWM).

Usage: python benchmarks/scale.py [SITESxHOSTS ...]   (default 3x1 3x2 3x4 3x8)
Every host is its own machine, so any shape up to 12 x 8 runs (benchmarks/lab_size.py
measures the lab itself at 12 x 8).
Figures to benchmarks/results/scale.{json,md}.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.blast_radius import lab_up
from benchmarks.common import REPO, callfleet, write
from benchmarks.waves import Physical, waves
from orchestrator.ansible import runner
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.ssh import ssh_trust
from orchestrator.lab import variants
from orchestrator.policy.load import load_policy
from orchestrator.rollout.journal import Journal

BASE = "198.18.97"
STOCK = "5.6.0-lab1"
NAIVE = REPO / "playbooks" / "naive-rolling.yml"
GOOD = "5.6.0-scale"
SHAPES = [(3, 1), (3, 2), (3, 4), (3, 8)]
GROWING = ("switch", "post-check", "synthetic+canary", "drill", "soak")
POLICY = REPO / "policies" / "lab-tests.yml"
TICK = os.sysconf("SC_CLK_TCK")

def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through the `finally` that takes the lab down


def _proc_figures(pid: int) -> tuple[float, int] | None:
    """CPU seconds (user+system) and VmHWM in kB of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        hwm = next(int(ln.split()[1]) for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if ln.startswith("VmHWM:"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return (int(stat[11]) + int(stat[12])) / TICK, hwm


def measured_upgrade(args: list[str], timeout: float) -> tuple[int, str, float, float, float, float]:
    """Run `python -m orchestrator ARGS`: exit code, stdout, wall s, own CPU s, CPU s with children, peak MB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=REPO, text=True, stdout=out_file,
                                stderr=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C.UTF-8"})
        own_cpu, hwm = 0.0, 0
        while proc.poll() is None and time.monotonic() - t0 < timeout:
            figures = _proc_figures(proc.pid)
            if figures is not None:
                own_cpu, hwm = figures[0], max(hwm, figures[1])
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out_file.seek(0)
        out = out_file.read()
    total_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rc, out, wall, own_cpu, total_cpu, hwm / 1024


def one_shape(sites: int, hosts: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="cfscale-"))
    sd = ["--state-dir", str(state)]
    row: dict[str, Any] = {"sites": sites, "hosts per site": hosts, "hosts": sites * hosts}
    try:
        t0 = time.monotonic()
        up = lab_up(*sd, "--base", BASE, "--sites", str(sites), "--hosts-per-site", str(hosts))
        row["lab up s"] = round(time.monotonic() - t0, 1)
        if up.returncode != 0:
            row["outcome"] = f"lab up failed: {up.stderr.strip()[-200:]}"
            return row
        store = state / "bundles"
        variants.make_release(store, GOOD)
        policy = POLICY
        callfleet("lab", "traffic", "start", "--rate", "20", "--duration", "3600", *sd)
        for attempt in range(1, 3):
            rc, out, wall, own_cpu, total_cpu, peak = measured_upgrade(
                ["upgrade", "--to", GOOD, "--yes", "--json", "--store", str(store), "--policy", str(policy),
                 "--journal", str(state / f"journal{attempt}.sqlite"), "-i", str(state / "inventory.yml")],
                timeout=3600)
            if rc == 0:
                break
            # a good release halted: the loaded lab, not the release; every site back to stock, again
            print(f"{sites}x{hosts} attempt {attempt}: exit {rc}: {out[-300:]}", file=sys.stderr, flush=True)
            runner.run(inventory=state / "inventory.yml", trust=ssh_trust(load_inventory(state / "inventory.yml")),
                       playbook=NAIVE, private_dir=state / "naive-ansible",
                       extra_vars={"callserver_target_release": STOCK, "naive_serial": "100%",
                                   "callserver_bundle_dir": str(store / f"callserver-{STOCK}")})
        row["attempts"] = attempt
        row.update(_wave_figures(state / f"journal{attempt}.sqlite", out))
        public = json.loads(callfleet("lab", "traffic", "stop", *sd, "--json").stdout)
        try:
            outcome = json.loads(out).get("kind", "?")
        except ValueError:
            outcome = "no JSON"
        row.update({"outcome": f"{outcome} (exit {rc})", "rollout s": round(wall, 1),
                    "s per site": round(wall / sites, 1), "orchestrator CPU s": round(own_cpu, 1),
                    "CPU s with children": round(total_cpu, 1), "peak MB": round(peak, 1),
                    "public calls lost": public["failed"]})
        return row
    finally:
        callfleet("lab", "traffic", "stop", *sd)
        callfleet("lab", "down", *sd)


def _wave_figures(journal: Path, out: str) -> dict[str, Any]:
    """The median wave of the run and the medians of the parts that could grow with hosts."""
    try:
        run_id = json.loads(out)["run"]
    except (ValueError, KeyError):
        return {}
    j = Journal(journal)
    run = j.run(run_id)
    # the ideal is not shown here (overhead.py does): its physical minima are not measured per shape
    times = waves(j.events(run_id), run.plan, load_policy(POLICY).gate, Physical(restart_s=0, wait_timer_s=0))
    if not times:
        return {}
    figures: dict[str, Any] = {"median wave s": round(statistics.median(t.seconds for t in times), 1)}
    for part in GROWING:
        figures[part] = round(statistics.median(t.parts[part] for t in times), 2)
    return figures


def report(rows: list[dict[str, Any]], shapes: list[tuple[int, int]]) -> None:
    """benchmarks/results/scale.{json,md}."""
    one = next((r.get("median wave s") for r in rows if r.get("hosts per site") == 1), None)
    for r in rows:
        if one and r.get("median wave s"):
            r["x 1 host"] = round(r["median wave s"] / one, 2)
    policy = "policies/lab-tests.yml"
    write("scale", params={"policy": policy,
                           "background calls/s": 20,
                           "shapes": " ".join(f"{s}x{h}" for s, h in shapes)},
          rows=rows, columns=["sites", "hosts per site", "hosts", "outcome", "median wave s", "x 1 host", *GROWING,
                              "rollout s", "s per site", "orchestrator CPU s", "CPU s with children", "peak MB",
                              "public calls lost", "attempts"],
          title="Scale: wave time, CPU and memory by estate shape",
          notes="One good release rolled out per shape on a lab of that shape (real Kamailio call servers, "
                "all on one machine with 2 cores shared with the lab itself, so wall times grow with the "
                "lab's own load too). *median wave s*: from each wave's `preparing` to its `wave_done` in the "
                "journal; the part columns are the medians of those parts over the waves; *x 1 host*: the median "
                "wave over the 1-host shape's. *orchestrator CPU s*: the callfleet process alone (/proc/PID/stat); "
                "*CPU s with children*: with the Ansible, SSH, SIPp and testinfra processes it ran "
                "(getrusage RUSAGE_CHILDREN); *peak MB*: the callfleet process's VmHWM.")


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    shapes: list[tuple[int, int]] = [(int(a.split("x")[0]), int(a.split("x")[1])) for a in argv] or SHAPES
    rows = []
    for sites, hosts in shapes:
        rows.append(one_shape(sites, hosts))
        print(json.dumps(rows[-1]), flush=True)
        report(rows, shapes)  # after each shape: a long run cut short still leaves its figures
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
