"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import procs
from tests.pg_server import PgServer
from tests.pg_server import running as pg_running

REPO = Path(__file__).resolve().parent.parent
# The per-estate rollout claims of this test session, apart from a developer's own labs and
# from another session on the same host (every CLI call inherits it).
os.environ.setdefault("CALLFLEET_LOCK_DIR", tempfile.mkdtemp(prefix="callfleet-test-locks-"))
# testinfra and ansible-runner call `ansible-inventory`/`ansible` by name: use the venv's.
procs.ensure_venv_bin_on_path()


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
