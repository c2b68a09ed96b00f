"""How many calls and seconds the gate needs to decide, per fault class (issue #4).

Brings up its own lab (loopback prefix 198.18.95), builds a release per fault class from the
stock release, installs it on one site kept drained (as a rollout does), runs the gate
with the default policy, records verdict, deciding stage, calls and seconds, rolls back.
A benchmark, not a test: figures go to benchmarks/results/gate_faults.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import callfleet, write
from orchestrator.lab import variants

BASE = "198.18.95"
FAULTS: list[tuple[str, str, Callable[[Path], None] | None]] = [
    ("good release", "5.6.0-good", None),
    ("breaks after the reconnection drill (2021)", "5.6.0-reconnect", variants.breaks_after_reconnect),
    ("one number broken: 17 (Optus 2025)", "5.6.0-no17", variants.breaks_number("17")),
    ("4% random 503s", "5.6.0-503", variants.random_503(4)),
    ("+100 ms setup delay, no failure", "5.6.0-slow", variants.added_delay(100)),
    ("memory grows per call", "5.6.0-leak", variants.leaks_memory),
    ("counter cap after 1500 calls (Intrado 2014)", "5.6.0-cap", variants.counter_cap(1500)),
]


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="cfbench-"))
    sd = ["--state-dir", str(state)]
    up = callfleet("lab", "up", *sd, "--base", BASE)
    if up.returncode != 0:
        print(up.stderr, file=sys.stderr)
        return 4
    inv = str(state / "inventory.yml")
    store = state / "bundles"
    rows = []
    try:
        for label, version, mutate in FAULTS:
            variants.make_release(store, version, mutate)
            t0 = time.monotonic()
            installed = callfleet("site", "upgrade", "site2", "--to", version, "--store", str(store),
                                  "--keep-drained", "-i", inv)
            if installed.returncode != 0:
                rows.append({"fault": label, "verdict": f"install failed ({installed.returncode})"})
                continue
            gate = callfleet("gate", "--site", "site2", "-i", inv, "--json")
            result = json.loads(gate.stdout)
            deciding = result["stages"][-1]
            rows.append({"fault": label, "verdict": result["verdict"], "decided at": deciding["stage"],
                         "calls": result["calls"], "gate seconds": result["seconds"],
                         "reason": (result["reasons"] or ["-"])[0][:90],
                         "install+gate seconds": round(time.monotonic() - t0, 1)})
            print(rows[-1], flush=True)
            callfleet("site", "rollback", "site2", "-i", inv)
    finally:
        callfleet("lab", "down", *sd)
    write("gate_faults", params={"policy": "policies/default.yml", "site": "site2", "baseline": "1 site"},
          rows=rows, columns=["fault", "verdict", "decided at", "calls", "gate seconds", "reason"],
          title="Gate: calls and seconds to decide, per fault class",
          notes="Calls count canary and baseline probes together. The gate stops at the first stage "
                "that does not PASS; a good release runs all three synthetic stages.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
