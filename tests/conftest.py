"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator import procs

REPO = Path(__file__).resolve().parent.parent
# testinfra and ansible-runner call `ansible-inventory`/`ansible` by name: use the venv's.
procs.ensure_venv_bin_on_path()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS` as a user would; returns the completed process."""
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO, check=False)
