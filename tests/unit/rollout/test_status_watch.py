"""`rollout status --watch`: follows a run another process drives, ends with the run's exit code."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import ExitCode
from orchestrator.rollout.journal import Journal
from orchestrator.rollout.machine import Phase
from tests.conftest import REPO, cli
from tests.unit.rollout.plans import plan_doc


def _journal(tmp_path: Path) -> tuple[Journal, str]:
    j = Journal(tmp_path / "journal.sqlite", create=True)
    plan = plan_doc(f"watch-test-{tmp_path.name}")  # the estate claim is host-wide: a name of its own
    run = j.create_run(plan=plan, digest=plan["digest"], target="5.6.0", inventory="inv.yml", policy="p.yml")
    return j, run.id


def _watch(path: Path, run_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "rollout", "status", run_id, "--journal",
                             str(path), "--watch", "--interval", "0.1", *extra], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_watch_json_prints_each_change_and_exits_with_the_halt_code(tmp_path: Path) -> None:
    j, run_id = _journal(tmp_path)
    watcher = _watch(tmp_path / "journal.sqlite", run_id, "--json")
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # the watcher's first read: the pending run
        j.take_lease(run_id)
        for phase, wave in ((Phase.PREFLIGHT, None), (Phase.PREPARING, 1), (Phase.DRAINING, None),
                            (Phase.ROLLING_BACK, None)):
            j.transition(run_id, phase, wave=wave)
            time.sleep(0.4)
        j.transition(run_id, Phase.HALTED, progress={"exit_code": ExitCode.INCONCLUSIVE}, outcome="gate unsure")
        j.drop_lease(run_id)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == ExitCode.INCONCLUSIVE, err
    docs = [json.loads(line) for line in [first, *out.splitlines()]]
    phases = [d["phase"] for d in docs]
    assert phases[0] == "pending" and phases[-1] == "halted"
    assert {"preflight", "draining", "rolling_back"} <= set(phases)
    assert docs[-1]["outcome"] == "gate unsure"


def test_watch_view_follows_a_run_to_completion(tmp_path: Path) -> None:
    j, run_id = _journal(tmp_path)
    watcher = _watch(tmp_path / "journal.sqlite", run_id)
    try:
        j.take_lease(run_id)
        for phase, wave in ((Phase.PREFLIGHT, None), (Phase.PREPARING, 1), (Phase.DRAINING, None),
                            (Phase.SWITCHING, None), (Phase.POSTCHECKING, None), (Phase.GATING, None),
                            (Phase.STEPPING, None), (Phase.BAKING, None), (Phase.WAVE_DONE, None)):
            j.transition(run_id, phase, wave=wave)
        j.transition(run_id, Phase.COMPLETED, progress={"done_waves": [1]}, outcome="1 site(s) on 5.6.0")
        j.drop_lease(run_id)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert f"rollout {run_id} to 5.6.0" in out and "completed" in out and "1 site(s) on 5.6.0" in out


@pytest.mark.parametrize(("args", "message"), [
    (("--watch", "--html", "x.html"), "--html and --watch"),
    (("--watch", "--interval", "0"), "--interval"),
])
def test_watch_refuses_bad_options(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    _, run_id = _journal(tmp_path)
    result = cli("rollout", "status", run_id, "--journal", str(tmp_path / "journal.sqlite"), *args)
    assert result.returncode == ExitCode.INVALID_INPUT, result.stdout + result.stderr
    assert message in result.stdout + result.stderr
