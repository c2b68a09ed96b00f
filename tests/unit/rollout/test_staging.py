"""Issue #16, item 3: while a wave's site steps and bakes, the next site is staged (preflight,
release installed beside the current one), so its wave starts at the drain; a run that ends
short of a staged site removes the staged release there.

The executor runs for real on a real journal and a real release bundle, with `decide`; its
ports are fakes recording what was staged, prepared, switched and unstaged: the site changer
(each staging run takes a moment and obeys its cancel event), the gate (PASS), the prober
(every call answered). No metrics backend: wave 2's live steps cannot be judged, so the run
halts there and rolls wave 2 back, with wave 3 staged or being staged."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from orchestrator.ansible.runner import RunResult
from orchestrator.estate.model import Host
from orchestrator.gate.verdict import Verdict
from orchestrator.policy.rollout import RolloutPolicy
from orchestrator.probe.metrics import NumberResult
from orchestrator.probe.runner import ProbeReport
from orchestrator.release.bundle import build_bundle, bundle_digest
from orchestrator.rollout.executor import Executor, Ports
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.state import WaveProgress
from tests.conftest import REPO
from tests.unit.rollout.plans import journal_run, wave_moves
from tests.unit.rollout.plans import plan as make_plan
from tests.unit.rollout.test_attribution import SITES, Changer, Edge, Gate, _estate

OK = RunResult(status="successful", rc=0, hosts={})
FAILED = RunResult(status="failed", rc=2, hosts={})


class Ops(Changer):
    """The site changer with staging: each staging run lasts up to `stage_s` (less when
    cancelled) and ends as `stage_result`."""

    def __init__(self, edge: Edge, *, stage_result: RunResult = OK, stage_s: float = 0.2) -> None:
        super().__init__(edge)
        self.stage_result, self.stage_s = stage_result, stage_s
        self.staged: list[str] = []
        self.cancelled: list[str] = []
        self.prepared: list[str] = []
        self.unstaged: list[tuple[str, str]] = []

    def stage(self, site: str, version: str, bundle: Path | None, cancel: threading.Event) -> RunResult:
        self.staged.append(site)
        if cancel.wait(self.stage_s):
            self.cancelled.append(site)
            return RunResult(status="canceled", rc=-1, hosts={}, canceled=True)
        return self.stage_result

    def preflight(self, site: str, version: str, bundle: Path | None, *, check: bool = False) -> RunResult:
        self.prepared.append(site)
        return OK

    def postcheck(self, site: str, version: str) -> list[object]:
        return []

    def unstage(self, site: str, version: str) -> RunResult:
        self.unstaged.append((site, version))
        return OK


class Prober:
    def reachable(self, hosts: Sequence[Host]) -> None:
        return None

    def probe(self, site: str, *, calls: int) -> ProbeReport:
        n = NumberResult(site=site, host=None, number="112", attempted=calls, answered=calls, failed=0, failures={},
                         ser=1.0, isa=1.0, srd_p50_ms=2.0, srd_p95_ms=4.0, srd_max_ms=6.0,
                         retransmissions=0)
        return ProbeReport(site=site, hosts=(f"{site}-cs1",), calls_per_number=calls, rate=50.0, numbers=(n,),
                           per_host=(n,))


def _drive(tmp_path: Path, ops_kwargs: dict[str, object] | None = None,
           policy: dict[str, object] | None = None, wait: Literal["sleep", "return"] = "sleep",
           ) -> tuple[Journal, str, Ops]:
    """Wave 1 (the canary) live and baking on 5.6.0, its bake over; the run driven from there."""
    bundle = build_bundle(source=REPO / "releases" / "stock", version="5.6.0", out_dir=tmp_path / "store")
    j, run_id = journal_run(tmp_path / "journal.sqlite", make_plan(f"stage-{tmp_path.name}", SITES),
                            [(Phase.PREFLIGHT, None), *wave_moves(1)])
    j.update_progress(run_id, {"bundle_digest": bundle_digest(bundle), "waves": {1: WaveProgress(bake_started=900.0)}})
    ops = Ops(Edge(), **ops_kwargs or {})  # type: ignore[arg-type]
    ports = Ports(estate=_estate(), site_ops=ops, bundle=bundle, metrics=None,  # type: ignore[arg-type]
                  gate=Gate(Verdict.PASS), prober=Prober(), clock=lambda: 1000.0, sleep=lambda s: None)
    Executor(journal=j, run_id=run_id, policy=RolloutPolicy.model_validate({"rollout": policy or {}}),
             ports=ports, wait=wait).drive()
    return j, run_id, ops


def test_the_next_site_staged_during_the_bake_starts_at_its_drain_and_an_unreached_one_is_unstaged(
        tmp_path: Path) -> None:
    j, run_id, ops = _drive(tmp_path)
    run = j.run(run_id)
    assert run.phase == Phase.HALTED and run.wave == 2
    assert ops.prepared == []  # wave 2 was staged during wave 1's bake: no preflight in its turn
    assert ops.switched == [("site2", "5.6.0"), ("site2", "5.5.0")]  # switched, then rolled back
    # wave 3 was staged when wave 2's live steps began; the halt cancelled it and removed it
    assert ops.staged == ["site2", "site3"] and ops.cancelled == ["site3"]
    assert ops.unstaged == [("site3", "5.6.0")]
    staged = run.progress.staged
    assert staged[2].ready and not staged[2].removed and staged[2].digest == run.progress.bundle_digest
    assert staged[2].taken  # its drain made site2 the run's: rolled back, never unstaged
    assert not staged[3].ready and staged[3].removed and not staged[3].taken
    states = [(e.site, e.data["state"]) for e in j.events(run_id, kind="stage")]
    assert states == [("site2", "begun"), ("site2", "ready"), ("site3", "begun"), ("site3", "failed")]
    assert [e.site for e in j.events(run_id, kind="after") if e.data.get("effect") == "unstage"] == ["site3"]


def test_a_failed_staging_leaves_the_preparation_to_the_waves_turn(tmp_path: Path) -> None:
    j, run_id, ops = _drive(tmp_path, {"stage_result": FAILED})
    assert ops.staged[0] == "site2" and ops.prepared == ["site2"]
    assert not j.run(run_id).progress.staged[2].ready


def test_staging_off_prepares_every_wave_in_its_turn(tmp_path: Path) -> None:
    j, run_id, ops = _drive(tmp_path, policy={"stage_next": False})
    assert ops.staged == [] and ops.prepared == ["site2"] and ops.unstaged == []
    assert j.run(run_id).progress.staged == {}


def test_a_drive_that_stops_at_the_bake_stages_nothing(tmp_path: Path) -> None:
    """`rollout advance` and `--no-wait` return at the bake: waiting for a staging run there
    would let the bake's clock run out, so each wave prepares in its turn."""
    j, run_id, ops = _drive(tmp_path, wait="return")
    assert ops.staged == [] and j.run(run_id).progress.staged == {}
    assert ops.prepared == ["site2"]  # wave 2 prepared in its turn
