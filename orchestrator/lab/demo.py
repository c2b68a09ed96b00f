"""The README's main job: on the lab, a good release rolled out canary-first across six
sites, then a faulty release (a reconnection-triggered bug, as in 2021) stopped at the
canary and rolled back, with the background caller's lost calls printed for each.

It runs the same `callfleet` commands a release engineer would, printing each one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator.lab.variants import breaks_after_reconnect, make_release
from orchestrator.policy.load import DEFAULT_POLICY

GOOD = "5.6.0-lab2"
FAULTY = "5.6.0-lab3-reconnect-bug"


def _callfleet(console: Console, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    console.print(f"[bold cyan]$ callfleet {' '.join(args)}[/]")
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], text=True, check=False,
                          stdout=subprocess.PIPE if capture else None)
    return proc


def run_demo(*, state_dir: Path, console: Console) -> int:
    """Bring the lab up, roll out a good then a faulty release; returns an exit code."""
    sd = ["--state-dir", str(state_dir)]
    if _callfleet(console, "lab", "up", *sd).returncode != 0:
        return 4
    _callfleet(console, "lab", "status", *sd)
    inventory = state_dir.resolve() / "inventory.yml"
    store = state_dir.resolve() / "bundles"
    console.print(f"building releases {GOOD} (good) and {FAULTY} (breaks after the PSAP-trunk reconnection)")
    make_release(store, GOOD)
    make_release(store, FAULTY, breaks_after_reconnect)
    policy = str(DEFAULT_POLICY.parent / "demo.yml")
    journal = str(state_dir.resolve() / "demo-journal.sqlite")
    rows = []
    for version, expected in ((GOOD, 0), (FAULTY, 6)):
        if _callfleet(console, "lab", "traffic", "start", "--rate", "20", "--duration", "1800", *sd).returncode:
            return 4
        result = _callfleet(console, "upgrade", "--to", version, "--yes", "--policy", policy, "--store", str(store),
                            "--journal", journal, "-i", str(inventory))
        stop = _callfleet(console, "lab", "traffic", "stop", *sd, "--json", capture=True)
        report = json.loads(stop.stdout)
        rows.append((version, result.returncode, expected, report))
        console.print(f"background caller during the rollout of {version}: {report['attempted']} calls, "
                      f"{report['failed']} lost")
    table = Table(title="demo: what the public saw")
    for col in ("release", "rollout exit", "outcome", "calls placed", "calls lost"):
        table.add_column(col)
    for version, code, expected, report in rows:
        outcome = {0: "completed on 6 sites", 6: "halted at the canary, rolled back"}.get(code, f"exit {code}")
        table.add_row(version, str(code), outcome + ("" if code == expected else " (UNEXPECTED)"),
                      str(report["attempted"]), str(report["failed"]))
    console.print(table)
    _callfleet(console, "lab", "status", *sd)
    ok = all(code == expected and report["failed"] == 0 for _, code, expected, report in rows)
    return 0 if ok else 5
