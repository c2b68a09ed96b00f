"""Where callfleet's own run-time files are: inside the installed package, or where the user says.

Playbooks, policies and the stock release ship in the package (orchestrator/_data), found
through importlib.resources, so a wheel installed anywhere is a complete tool; nothing is
looked up relative to a source checkout. An environment variable points at a copy of
one's own (an operator's patched playbooks, a policy directory).
"""

from __future__ import annotations

import os
from importlib.resources import as_file, files
from pathlib import Path

from orchestrator.errors import InvalidInput


def _shipped(name: str, env: str) -> Path:
    override = os.environ.get(env) if env else None
    if override:
        path = Path(override)
        if not path.is_dir():
            raise InvalidInput(f"${env}={override}: no such directory")
        return path
    # Installed packages are plain files on disk (wheel or editable install): as_file gives
    # their path without copying.
    with as_file(files("orchestrator._data") / name) as path:
        return Path(path)


def playbooks_dir() -> Path:
    """The playbooks and the callserver role ($CALLFLEET_PLAYBOOKS overrides)."""
    return _shipped("playbooks", "CALLFLEET_PLAYBOOKS")


def policies_dir() -> Path:
    """The shipped rollout policies and examples ($CALLFLEET_POLICIES overrides)."""
    return _shipped("policies", "CALLFLEET_POLICIES")


def stock_release_dir() -> Path:
    """The stock call-server release source the lab installs ($CALLFLEET_STOCK_RELEASE overrides)."""
    override = os.environ.get("CALLFLEET_STOCK_RELEASE")
    return _shipped("stock", "CALLFLEET_STOCK_RELEASE") if override else _shipped("releases", "") / "stock"
