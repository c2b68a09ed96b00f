"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import procs
from tests.pg_server import PgServer
from tests.pg_server import running as pg_running

REPO = Path(__file__).resolve().parent.parent
# The per-estate rollout claims of this test session, apart from a developer's own labs and
# from another session on the same host (every CLI call inherits it).
# Every lab's estate is named "lab": each pytest-xdist worker has a directory of its own.
_LOCKS = os.environ.get("CALLFLEET_LOCK_DIR") or tempfile.mkdtemp(prefix="callfleet-test-locks-")
if os.environ.get("PYTEST_XDIST_WORKER"):
    _LOCKS = os.path.join(_LOCKS, os.environ["PYTEST_XDIST_WORKER"])
    os.makedirs(_LOCKS, exist_ok=True)
os.environ["CALLFLEET_LOCK_DIR"] = _LOCKS
# testinfra and ansible-runner call `ansible-inventory`/`ansible` by name: use the venv's.
procs.ensure_venv_bin_on_path()


# Under pytest-xdist a file runs on one worker, whole: a module's fixtures (a small lab of its
# own on its own bridge, a rig) then exist on one worker only. Files that share a fixed
# resource share a scope: the provisioning tests all use the lab prefix 198.18.79.
_SHARED_SCOPES = {"tests/unit/provision/": "tests/unit/provision/"}
# Tests that bring up labs of their own or time real traffic: never niced (see below).
_TIMED = ("tests/lab/", "tests/scenarios/", "tests/unit/provision/", "tests/unit/test_lab_shape.py")
# The longest files first (minutes in a serial run): workers take files in collection order
# as they free up, so the longest-first order keeps the two workers' ends close together.
_LONGEST_FIRST = ("tests/lab/test_rollout/test_rollout_recovery.py", "tests/lab/test_rollout/test_rollout.py",
                  "tests/lab/test_gate.py", "tests/scenarios/", "tests/unit/provision/",
                  "tests/lab/test_watch_psap.py", "tests/lab/test_wheel.py", "tests/lab/test_production_path.py",
                  "tests/lab/test_site_upgrade.py")


def _rel(item: pytest.Item) -> str:
    return Path(str(item.fspath)).relative_to(REPO).as_posix()


def scope_of(nodeid: str) -> str:
    """The pytest-xdist scope of a test: its file, or the shared scope of its directory."""
    path = nodeid.split("::", 1)[0]
    return next((scope for prefix, scope in _SHARED_SCOPES.items() if path.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Scopes by `scope_of`, handed out in collection order (the longest files first)."""
    from xdist.scheduler import LoadScopeScheduling

    class FileScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return FileScopes(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the longest files first; a file's tests keep their order (a stable
    sort). One process keeps pytest's own order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def rank(item: pytest.Item) -> int:
        path = _rel(item)
        return next((i for i, prefix in enumerate(_LONGEST_FIRST) if path.startswith(prefix)), len(_LONGEST_FIRST))

    items.sort(key=rank)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under pytest-xdist as root, a worker running a pure test lowers its priority (nice 10)
    and raises it back for a lab test: the other worker's lab, whose leases, probes and
    guard rounds run on real time, keeps the CPU when both want it."""
    if "PYTEST_XDIST_WORKER" not in os.environ or os.geteuid() != 0:
        return
    timed = _rel(item).startswith(_TIMED) or item.get_closest_marker("lab") is not None
    os.setpriority(os.PRIO_PROCESS, 0, 0 if timed else 10)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS` as a user would; returns the completed process."""
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO, check=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server this session starts (see tests/pg_server.py) and stops."""
    with pg_running() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each backend: a SQLite file (absent), or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()
