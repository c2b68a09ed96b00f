"""Installable as users install it: a wheel built from this tree, installed into a fresh venv
in a temporary directory, with no checkout on the path, is a complete tool: it brings a
lab up, upgrades one site and rolls it back with its own playbooks, policies and stock
release (found through importlib.resources), then takes the lab down.

Its own small lab (two sites of one host) on 198.18.75, beside the session's lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.labnet import free_base

pytestmark = [pytest.mark.lab, pytest.mark.slow]

BASE = free_base("198.18.75")


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_wheel_in_a_fresh_venv_upgrades_and_rolls_back_a_site(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                 cwd=tmp_path, env=dict(os.environ))
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("callfleet-*.whl")
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=dict(os.environ)).returncode == 0
    # the venv's own Python, outside the checkout, with nothing of it on the path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    installed = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=tmp_path, env=env, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    where = _run([str(venv / "bin" / "python"), "-c", "import orchestrator; print(orchestrator.__file__)"],
                 cwd=tmp_path, env=env)
    assert str(venv) in where.stdout and str(REPO) not in where.stdout

    callfleet = str(venv / "bin" / "callfleet")
    state = tmp_path / "lab"
    up = _run([callfleet, "lab", "up", "--sites", "2", "--hosts-per-site", "1", "--base", BASE,
               "--state-dir", str(state), "--json"], cwd=tmp_path, env=env)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        inventory = json.loads(up.stdout)["inventory"]
        store = tmp_path / "store"
        # the release source is data the user has; the tool is the wheel's
        built_release = _run([callfleet, "release", "build", str(REPO / "releases" / "stock"), "--version",
                              "5.6.0-wheel", "--out", str(store), "--json"], cwd=tmp_path, env=env)
        assert built_release.returncode == 0, built_release.stderr
        upgrade = _run([callfleet, "site", "upgrade", "site1", "--to", "5.6.0-wheel", "--store", str(store),
                        "-i", inventory, "--json"], cwd=tmp_path, env=env)
        assert upgrade.returncode == 0, upgrade.stderr[-2000:]
        assert json.loads(upgrade.stdout)["outcome"] == "upgraded"
        status = json.loads(_run([callfleet, "lab", "status", "--state-dir", str(state), "--json"],
                                 cwd=tmp_path, env=env).stdout)
        releases = {c["name"]: c["release"] for c in status["components"] if c["kind"] == "callserver"}
        assert releases == {"site1-cs1": "5.6.0-wheel", "site2-cs1": "5.6.0-lab1"}
        back = _run([callfleet, "site", "rollback", "site1", "-i", inventory, "--json"], cwd=tmp_path, env=env)
        assert back.returncode == 0, back.stderr[-2000:]
        status = json.loads(_run([callfleet, "lab", "status", "--state-dir", str(state), "--json"],
                                 cwd=tmp_path, env=env).stdout)
        releases = {c["name"]: c["release"] for c in status["components"] if c["kind"] == "callserver"}
        assert releases == {"site1-cs1": "5.6.0-lab1", "site2-cs1": "5.6.0-lab1"}
    finally:
        down = _run([callfleet, "lab", "down", "--state-dir", str(state)], cwd=tmp_path, env=env)
        assert down.returncode == 0, down.stderr
