"""Incident replays run on the test session's lab (tests/lab/conftest.py, prefix
$CALLFLEET_TEST_LAB_BASE, default 127.78).

Importing the `lab` fixture would register a second session fixture: two labs on one prefix
at once when the whole suite runs. So this `lab` re-uses the lab the tests/lab fixture brought
up in this session when there is one (`lab up` on its state directory is harmless and restarts
anything a test stopped), and otherwise brings up its own with the same code, for this
package only, so that it is down before anything else needs the prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.estate.inventory import load_inventory
from tests.conftest import cli
from tests.lab import conftest as lab_conftest
from tests.lab.conftest import LAB_BASE, Lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/scenarios/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)
            item.add_marker(pytest.mark.e2e_rollout)


def _session_lab(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The state directory of the lab tests/lab's fixture started in this session, if any."""
    for state in sorted(tmp_path_factory.getbasetemp().glob("lab*")):
        try:
            params = json.loads((state / "lab.json").read_text())["params"]
        except (OSError, ValueError, KeyError):
            continue
        if params.get("base") == LAB_BASE and (state / "inventory.yml").exists():
            return state
    return None


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    shared = _session_lab(tmp_path_factory)
    if shared is not None:
        up = cli("lab", "up", "--state-dir", str(shared), "--base", LAB_BASE, "--json")
        if up.returncode == 0:
            inventory = Path(json.loads(up.stdout)["inventory"])
            yield Lab(state_dir=shared, inventory=inventory, estate=load_inventory(inventory))
            return
    own = lab_conftest.lab.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined]
    yield from own
