"""Where the callfleet Pulumi project (Pulumi.yaml) and its policy pack are."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from orchestrator.errors import InvalidInput

PROJECT_NAME = "callfleet"
PROJECT_FILE = "Pulumi.yaml"
POLICY_PACK = Path("policies") / "crossguard"


def _is_project(directory: Path) -> bool:
    path = directory / PROJECT_FILE
    if not path.is_file():
        return False
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and doc.get("name") == PROJECT_NAME


def locate_project(*, start: Path) -> Path:
    """The project directory: $CALLFLEET_PROJECT_DIR, else the nearest callfleet Pulumi.yaml
    at or above `start`, else the source checkout this package runs from."""
    env = os.environ.get("CALLFLEET_PROJECT_DIR")
    if env:
        if _is_project(Path(env)):
            return Path(env).resolve()
        raise InvalidInput(f"CALLFLEET_PROJECT_DIR={env}: no callfleet {PROJECT_FILE} there")
    start = start.resolve()
    checkout = Path(__file__).resolve().parents[2]
    for candidate in (start, *start.parents, checkout):
        if _is_project(candidate):
            return candidate
    raise InvalidInput(f"no callfleet Pulumi project ({PROJECT_FILE} named {PROJECT_NAME}) here or above",
                       hint="run from the callfleet checkout, or set CALLFLEET_PROJECT_DIR to it")


def policy_pack_dir(project: Path) -> Path:
    """The CrossGuard pack passed on every preview and up."""
    return project / POLICY_PACK
