"""Overhead: what a gated, canary-first rollout costs in wall time, and how much of it is the
orchestrator itself (issue #8).

A good release (the stock release rebuilt under a new version) rolled out with `callfleet
upgrade` across the six sites of its own lab, with the background caller running, under
policies/demo.yml (the default gate with short soaks and bakes). The wall time of the
command is split with the journal's events (every effect is journalled before and after
it runs, every phase change is a transition event):

  - Ansible runs: the preflight/install and switch playbooks (effects preflight, switch);
  - gate calls: the synthetic, canary, drill and soak stages and the post-bake health probe
    (effects gate, health);
  - live steps: the configured live-traffic steps and their bakes (effect live-steps);
  - configured bakes: the time in the baking phase (health probe excluded) and the reserve's
    wait for the fleet bake;
  - drain and host checks: waiting for calls in flight after the drain, testinfra post-checks,
    the reachability preflight;
  - the orchestrator: everything else (start-up, observing each host's release over SSH,
    planning, journal writes, scheduling).

For scale, the same release is then rolled out with playbooks/naive-rolling.yml (one site at
a time, readiness wait, no gate). Own lab on 198.18.98; figures to benchmarks/results/overhead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, callfleet, write
from orchestrator.ansible import runner
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.ssh import ssh_trust
from orchestrator.lab import variants
from orchestrator.rollout.journal import Event, Journal

BASE = "198.18.98"
STOCK = "5.6.0-lab1"
GOOD = "5.6.0-good"
NEXT = "5.6.0-good2"
POLICY = REPO / "policies" / "demo.yml"
NAIVE = REPO / "playbooks" / "naive-rolling.yml"
# A loaded two-core lab (see blast_radius.SLOW_MACHINE): gate call rates lowered, setup-delay
# ceilings raised; all else as in demo.yml.
SLOW_MACHINE = {"synthetic": {"srd_p95_max_ms": 5000, "rate": 25}, "soak": {"rate": 50},
                "live_steps": {"srd_p95_max_ms": 5000}}

CATEGORY = {"preflight": "ansible", "switch": "ansible", "rollback": "ansible",
            "gate": "gate calls", "health": "gate calls", "live-steps": "live steps",
            "drain": "drain and host checks", "post-check": "drain and host checks",
            "reachability": "drain and host checks", "restore traffic": "drain and host checks"}
ORDER = ["ansible", "gate calls", "live steps", "configured bakes", "drain and host checks", "orchestrator"]
UNAVOIDABLE = ("ansible", "gate calls", "live steps", "configured bakes")

def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through the `finally` that takes the lab down


def lab_up(*args: str) -> subprocess.CompletedProcess[str]:
    """`lab up`, again up to twice: on a loaded machine a call server can miss its 5 s readiness
    wait, and `lab up` again only starts what is not running."""
    up = callfleet("lab", "up", *args)
    for _ in range(2):
        if up.returncode == 0:
            break
        time.sleep(5)
        up = callfleet("lab", "up", *args)
    return up



def split(events: list[Event]) -> tuple[dict[str, float], float]:
    """Seconds per category from the journal, and the run's span (first to last event)."""
    out: dict[str, float] = defaultdict(float)
    open_effects: dict[tuple[str, str | None], float] = {}
    for e in events:
        if e.kind == "before":
            open_effects[(e.data["effect"], e.site)] = e.ts
        elif e.kind == "after":
            started = open_effects.pop((e.data["effect"], e.site), None)
            if started is not None:
                out[CATEGORY.get(e.data["effect"], "orchestrator")] += e.ts - started
    transitions = [e for e in events if e.kind == "transition"]
    for i, t in enumerate(transitions[:-1]):
        if t.phase == "waiting_fleet_bake":
            out["configured bakes"] += transitions[i + 1].ts - t.ts
        elif t.phase == "baking":
            health = [e for e in events if e.kind == "before" and e.data.get("effect") == "health"
                      and t.ts <= e.ts <= transitions[i + 1].ts]
            out["configured bakes"] += (health[0].ts if health else transitions[i + 1].ts) - t.ts
    return dict(out), events[-1].ts - events[0].ts


def rollout_good(state: Path, policy: Path) -> tuple[float, dict[str, Any], int]:
    """`callfleet upgrade` to GOOD: wall seconds, its JSON outcome, the attempt that completed."""
    inv, store, journal = state / "inventory.yml", state / "bundles", state / "journal.sqlite"
    for attempt in range(1, 5):
        t0 = time.monotonic()
        proc = callfleet("upgrade", "--to", GOOD, "--yes", "--json", "--store", str(store), "--policy",
                         str(policy), "--journal", str(journal), "-i", str(inv), timeout=3600)
        wall = time.monotonic() - t0
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = {"message": proc.stderr.strip()[-300:]}
        if proc.returncode == 0:
            return wall, out, attempt
        # a good release halted: the lab failed (a call server missing its readiness wait, delays
        # of a loaded machine); put every site back on the stock release and measure again
        print(f"attempt {attempt}: exit {proc.returncode}: {out.get('message')}", file=sys.stderr, flush=True)
        runner.run(inventory=inv, trust=ssh_trust(load_inventory(inv)), playbook=NAIVE,
                           private_dir=state / "naive-ansible",
                   extra_vars={"callserver_target_release": STOCK, "naive_serial": "100%",
                               "callserver_bundle_dir": str(store / f"callserver-{STOCK}")})
    raise RuntimeError(f"upgrade exit {proc.returncode}: {out}")


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    state = Path(tempfile.mkdtemp(prefix="cfover-"))
    sd = ["--state-dir", str(state)]
    up = lab_up(*sd, "--base", BASE)
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        callfleet("lab", "down", *sd)
        return 4
    inv = state / "inventory.yml"
    store = state / "bundles"
    journal = state / "journal.sqlite"
    rows: list[dict[str, Any]] = []
    try:
        variants.make_release(store, GOOD)
        doc = yaml.safe_load(POLICY.read_text())
        for section, values in SLOW_MACHINE.items():
            doc["gate"].setdefault(section, {}).update(values)
        policy = state / "policy.yml"
        policy.write_text(yaml.safe_dump(doc, sort_keys=False))
        variants.make_release(store, NEXT)
        callfleet("lab", "traffic", "start", "--rate", "20", "--duration", "3600", *sd)
        wall, out, attempt = rollout_good(state, policy)
        events = Journal(journal).events(out["run"])
        parts, span = split(events)
        parts["orchestrator"] = wall - sum(parts.values())
        public = json.loads(callfleet("lab", "traffic", "report", *sd, "--json").stdout)
        t1 = time.monotonic()
        naive = runner.run(inventory=inv, trust=ssh_trust(load_inventory(inv)), playbook=NAIVE,
                           private_dir=state / "naive-ansible",
                           extra_vars={"callserver_target_release": NEXT, "naive_serial": "2",
                                       "callserver_bundle_dir": str(store / f"callserver-{NEXT}")})
        naive_wall = time.monotonic() - t1
        naive_public = json.loads(callfleet("lab", "traffic", "stop", *sd, "--json").stdout)
    finally:
        callfleet("lab", "traffic", "stop", *sd)
        callfleet("lab", "down", *sd)
    for name in ORDER:
        seconds = parts.get(name, 0.0)
        rows.append({"part": name, "seconds": round(seconds, 1), "share": f"{100 * seconds / wall:.1f}%",
                     "kind": "cannot be avoided" if name in UNAVOIDABLE else "callfleet adds"})
    unavoidable = sum(parts.get(n, 0.0) for n in UNAVOIDABLE)
    added = wall - unavoidable
    rows.append({"part": "total (callfleet upgrade, 6 sites)", "seconds": round(wall, 1), "share": "100%",
                 "kind": f"journal span {span:.1f} s"})
    rows.append({"part": "naive rolling playbook, same estate (no gate)", "seconds": round(naive_wall, 1),
                 "share": f"{100 * naive_wall / wall:.1f}%",
                 "kind": f"ansible rc {naive.rc}; public calls lost "
                         f"{naive_public['failed'] - public['failed']}"})
    ratio = {"added_over_unavoidable": round(added / unavoidable, 3),
             "orchestrator_only_over_total": round(parts["orchestrator"] / wall, 3),
             "callfleet_over_naive": round(wall / naive_wall, 2)}
    print(json.dumps({"rows": rows, "ratio": ratio}, indent=1))
    write("overhead",
          params={"release": "good (stock rebuilt)", "sites": 6, "hosts per site": 2,
                  "policy": "policies/demo.yml with SLOW_MACHINE (see the script)",
                  "background calls/s": 20, "public calls lost": public["failed"],
                  "public calls": public["attempted"], "attempts": attempt, **ratio},
          rows=rows, columns=["part", "seconds", "share", "kind"],
          title="Overhead: a good release across six sites",
          notes="Split from the journal's before/after events of each effect and its phase transitions "
                "(orchestrator/rollout/journal.py). *Cannot be avoided*: the Ansible runs, the gate's calls, the "
                "configured live steps and bakes. *callfleet adds*: draining and waiting for calls in flight, "
                "testinfra post-checks and reachability, and the orchestrator itself (start-up, observing "
                "releases over SSH, planning, journal, scheduling: the wall time not inside any journalled "
                f"effect or bake). Ratio of what callfleet adds to what cannot be avoided: "
                f"{ratio['added_over_unavoidable']}; the orchestrator alone is "
                f"{100 * ratio['orchestrator_only_over_total']:.1f}% of the wall time. The naive "
                "playbook (one run over the six sites) is faster because it does none of it; callfleet's Ansible "
                "time is larger than the naive run because it runs two playbooks per site (preflight/install, "
                "then switch), each with its own start-up and connections. Neither lost a call with a good "
                "release; the difference is what happens with a bad one (blast_radius).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
