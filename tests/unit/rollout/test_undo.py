"""`rollout undo`'s journal side: a finished run reopened under the lock, and the refusals.

The fleet rollback itself (drain, switch back, restore, one site at a time) runs on the lab:
tests/lab/test_rollout/ undoes its completed six-site rollout."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ExitCode, InvalidInput
from orchestrator.rollout.journal import Journal, RolloutLocked
from orchestrator.rollout.machine import Phase
from orchestrator.rollout.state import FleetRollback
from tests.conftest import cli
from tests.unit.rollout.plans import plan_doc


def _finished(j: Journal, estate: str, *, upgraded: bool) -> str:
    plan = plan_doc(estate)
    run = j.create_run(plan=plan, digest=plan["digest"], target="5.6.0", inventory="inv.yml", policy="p.yml")
    j.take_lease(run.id)
    if upgraded:
        for phase, wave in ((Phase.PREFLIGHT, None), (Phase.PREPARING, 1), (Phase.DRAINING, None),
                            (Phase.SWITCHING, None), (Phase.POSTCHECKING, None), (Phase.GATING, None),
                            (Phase.STEPPING, None), (Phase.BAKING, None), (Phase.WAVE_DONE, None)):
            j.transition(run.id, phase, wave=wave)
        j.transition(run.id, Phase.COMPLETED, progress={"done_waves": [1]})
    else:
        j.transition(run.id, Phase.PREFLIGHT)
        j.transition(run.id, Phase.HALTED, progress={"exit_code": ExitCode.REMOTE})
    j.drop_lease(run.id)
    return run.id


def test_a_finished_run_is_reopened_under_the_lock(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite", create=True)
    estate = f"undo-{tmp_path.name}"
    run_id = _finished(j, estate, upgraded=True)
    assert j.lock_holder() is None
    fleet = FleetRollback(reason="undone by ann", queue=("site1",))
    run = j.reopen(run_id, Phase.FLEET_ROLLING_BACK, progress={"undo_requested": "ann", "fleet": fleet},
                   data={"undo_by": "ann"})
    assert run.phase == Phase.FLEET_ROLLING_BACK and run.progress.fleet == fleet
    assert j.lock_holder() == run_id
    with pytest.raises(RolloutLocked):  # no rollout starts beside a fleet rollback
        _finished(j, estate, upgraded=False)
    with pytest.raises(InvalidInput, match="not finished"):
        j.reopen(run_id, Phase.FLEET_ROLLING_BACK, progress={}, data={})
    events = [e for e in j.events(run_id) if e.kind == "transition"]
    assert events[-1].data == {"from": "completed", "undo_by": "ann"}


def test_a_finished_run_is_not_reopened_while_another_rollout_runs(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.sqlite", create=True)
    done = _finished(j, f"undo-a-{tmp_path.name}", upgraded=True)
    plan = plan_doc(f"undo-b-{tmp_path.name}")
    running = j.create_run(plan=plan, digest=plan["digest"], target="5.6.0", inventory="i", policy="p")
    with pytest.raises(RolloutLocked, match=running.id):
        j.reopen(done, Phase.FLEET_ROLLING_BACK, progress={}, data={})
    assert j.run(done).phase == Phase.COMPLETED  # nothing changed


def test_undo_refuses_a_run_that_upgraded_nothing_and_asks_for_confirmation(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    j = Journal(path, create=True)
    nothing = _finished(j, f"undo-n-{tmp_path.name}", upgraded=False)
    result = cli("rollout", "undo", nothing, "--yes", "--journal", str(path))
    assert result.returncode == 2 and "upgraded no site: nothing to undo" in result.stderr + result.stdout
    upgraded = _finished(j, f"undo-u-{tmp_path.name}", upgraded=True)
    result = cli("rollout", "undo", upgraded, "--journal", str(path))  # no tty, no --yes
    assert result.returncode == 2 and "pass --yes" in result.stderr + result.stdout
    assert j.run(upgraded).phase == Phase.COMPLETED
