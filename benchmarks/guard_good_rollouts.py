"""False triggers of the fleet guard: good releases rolled out one after another (issue #14).

Ten six-site rollouts of good releases (the stock release rebuilt under new versions, each
rollout taking every site from the previous one's release to the next), the guard on with its
default policy (a round every 5 s, probes every third round, false-trigger budget 0.1% a run),
the public calling at 20 calls/s through the edge the whole time. The gate and bakes are the
lab tests' sizes (policies/lab-tests.yml) so that ten rollouts fit in about 45 minutes; the
guard's own settings are the defaults.

A false trigger is a run the guard fired on (`progress.guard`): all ten must complete, exit 0,
with no guard verdict. Per run: exit code, seconds, the guard's verdict (none), public calls
lost. Own lab on 198.18.92; figures to benchmarks/results/guard_good_rollouts.{json,md}.

    .venv/bin/python benchmarks/guard_good_rollouts.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import REPO, callfleet, write
from orchestrator.lab import variants
from orchestrator.policy.guard import GuardPolicy
from orchestrator.rollout.journal import Journal

BASE = "198.18.92"
# The lab tests' policy (tests/lab/test_rollout/): short gate and bakes, guard defaults.
POLICY = REPO / "policies" / "lab-tests.yml"


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through the `finally` that takes the lab down


def lab_up(*args: str) -> bool:
    """`lab up`, again up to twice (a loaded machine can miss a readiness wait)."""
    for attempt in range(3):
        if callfleet("lab", "up", *args).returncode == 0:
            return True
        if attempt < 2:
            time.sleep(5)
    return False


def public(sd: list[str]) -> dict[str, Any]:
    return dict(json.loads(callfleet("lab", "traffic", "report", *sd, "--json").stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="good rollouts in a row (default 10)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    state = Path(tempfile.mkdtemp(prefix="cfguard-"))
    sd = ["--state-dir", str(state)]
    if not lab_up(*sd, "--base", BASE):
        callfleet("lab", "down", *sd)
        print("lab up failed", file=sys.stderr)
        return 4
    inv, store, journal = state / "inventory.yml", state / "bundles", state / "journal.sqlite"
    policy = POLICY
    rows: list[dict[str, Any]] = []
    try:
        started = callfleet("lab", "traffic", "start", "--rate", "20", "--duration", "7200", *sd)
        if started.returncode != 0:
            raise RuntimeError(f"traffic start: {started.stderr.strip()}")
        for n in range(1, args.runs + 1):
            version = f"5.6.0-good{n}"
            variants.make_release(store, version)
            before = public(sd)
            t0 = time.monotonic()
            proc = callfleet("upgrade", "--to", version, "--yes", "--json", "--store", str(store), "--policy",
                             str(policy), "--journal", str(journal), "-i", str(inv), timeout=1800)
            wall = time.monotonic() - t0
            after = public(sd)
            try:
                out = json.loads(proc.stdout)
            except ValueError:
                out = {"message": proc.stderr.strip()[-300:]}
            run = Journal(journal, read_only=True).run(out["run"]) if "run" in out else None
            fired = run.progress.guard if run is not None else None
            row = {"run": n, "release": version, "exit": proc.returncode, "seconds": round(wall, 1),
                   "guard fired": "yes: " + "; ".join(fired.reasons) if fired else "no",
                   "public lost": after["failed"] - before["failed"],
                   "public calls": after["attempted"] - before["attempted"],
                   "outcome": str(out.get("message", ""))[:120]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        callfleet("lab", "traffic", "stop", *sd)
        callfleet("lab", "down", *sd)
    triggers = sum(1 for r in rows if r["guard fired"] != "no")
    completed = sum(1 for r in rows if r["exit"] == 0)
    guard = GuardPolicy()
    write("guard_good_rollouts",
          params={"runs": len(rows), "completed": completed, "false guard triggers": triggers,
                  "sites": 6, "hosts per site": 2, "background calls/s": 20,
                  "guard interval s": guard.interval_s, "guard budget per run": guard.false_trigger_budget,
                  "policy": "policies/lab-tests.yml (guard defaults)"},
          rows=rows, columns=["run", "release", "exit", "seconds", "guard fired", "public lost", "public calls",
                              "outcome"],
          title="Fleet guard: good releases rolled out in a row, false triggers",
          notes="Each run takes all six sites from the previous run's release to the next (canary first, the "
                "reserve after its fleet bake) with the fleet guard watching every upgraded site against the "
                "untouched ones from its live steps to the end of the run. A false trigger is a run the guard "
                "fired on (`progress.guard` in the journal).")
    print(f"{completed}/{len(rows)} completed, {triggers} false guard trigger(s)")
    return 0 if completed == len(rows) and triggers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
