"""One incident replay: a faulty release rolled out with callfleet on the test lab while the
background caller (the public, 20 calls/s through the edge) runs; the checks every replay
shares: halted at wave 1 after a rollback (exit 6), only the canary touched, every site back
on its release, the edge giving every site its full weight, no call of the public lost."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.lab.variants import make_release
from orchestrator.rollout.journal import Journal
from tests.conftest import cli
from tests.lab.conftest import Lab
from tests.lab.test_rollout.rig import FAST, edge_all_full, releases

DRAINED_STAGES = {"synthetic+canary", "drill", "soak"}  # the gate stages run before any live call


def policy(**gate: dict[str, Any]) -> dict[str, Any]:
    """tests/lab/test_rollout/rig.py's fast lab policy with some gate stages changed."""
    doc: dict[str, Any] = copy.deepcopy(dict(FAST))
    doc["name"] = "lab-replay"
    # The lab shares two cores with other test sessions: under load every site's setup delay
    # reaches seconds (UDP retransmissions) and the 300 ms ceilings say INCONCLUSIVE ("estate
    # slow"). These replays are about failing calls: probes go slower (25 calls/s per number,
    # same counts) and the delay ceilings are raised.
    stages: dict[str, dict[str, Any]] = doc["gate"]
    stages["synthetic"].update({"rate": 25, "srd_p95_max_ms": 5000})
    stages["live_steps"]["srd_p95_max_ms"] = 5000
    stages["soak"]["rate"] = 50
    for stage, values in gate.items():
        stages.setdefault(stage, {}).update(values)
    return doc


@dataclass(frozen=True)
class Replay:
    """What a replay leaves to look at."""

    outcome: dict[str, Any]
    canary: str
    gate: dict[str, Any]  # the canary's gate result (journal event "gate")
    public: dict[str, Any]  # the background caller's report

    @property
    def failed_stage(self) -> dict[str, Any]:
        return dict(self.gate["stages"][-1])

    def number(self, stage: dict[str, Any], number: str) -> dict[str, Any]:
        return next(dict(n) for n in stage["evidence"]["numbers"] if n["number"] == number)


def replay(lab: Lab, tmp_path: Path, version: str, mutate: Callable[[Path], None],
           rollout_policy: dict[str, Any]) -> Replay:
    store = tmp_path / "store"
    make_release(store, version, mutate)
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(yaml.safe_dump(rollout_policy))
    journal = tmp_path / "journal.sqlite"
    before = releases(lab)
    start = cli("lab", "traffic", "start", "--rate", "20", "--duration", "600", "--state-dir", str(lab.state_dir))
    assert start.returncode == 0, start.stderr
    try:
        proc = cli("upgrade", "--to", version, "--yes", "--json", "--store", str(store), "--policy", str(policy_file),
                   "--journal", str(journal), "-i", str(lab.inventory), timeout=900)
    finally:
        stop = cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir), "--json")
    public = json.loads(stop.stdout)
    assert proc.returncode == 6, f"exit {proc.returncode}: {proc.stderr[-3000:]}{proc.stdout[-2000:]}"
    out = json.loads(proc.stdout)
    assert out["kind"] == "halted" and out["wave"] == 1, out
    assert "rolled back" in out["message"], out
    j = Journal(journal)
    run = j.run(out["run"])
    canary = run.plan["waves"][0]["site"]
    # the sites changed; a site staged during the canary's bake and unstaged at the halt is not
    touched = {e.site for e in j.events(run.id) if e.kind == "before" and e.site and e.data.get("effect") != "unstage"}
    assert touched == {canary}, touched
    gates = j.events(run.id, kind="gate")
    assert [g.site for g in gates] == [canary]
    assert releases(lab) == before
    assert edge_all_full(lab)
    assert public["attempted"] > 100, public
    assert public["failed"] == 0, public
    return Replay(outcome=out, canary=canary, gate=gates[0].data, public=public)
