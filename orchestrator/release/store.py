"""Where built bundles are kept: one directory per release, `callserver-<version>/`."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import InvalidInput


def default_store() -> Path:
    """$CALLFLEET_RELEASE_STORE, else the lab's bundle directory."""
    env = os.environ.get("CALLFLEET_RELEASE_STORE")
    if env:
        return Path(env)
    lab = Path(os.environ.get("CALLFLEET_LAB_DIR", f"/tmp/callfleet-lab-{os.getuid()}"))
    return lab / "bundles"


def find_bundle(store: Path, version: str, *, name: str = "callserver") -> Path:
    """The bundle of `version` in the store, or InvalidInput saying how to build it."""
    path = store / f"{name}-{version}"
    if not (path / "manifest.yaml").is_file():
        raise InvalidInput(f"no bundle for release {version} in {store}",
                           hint=f"build it: callfleet release build SRC_DIR --version {version} --out {store}")
    return path
