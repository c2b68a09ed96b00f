"""The lab, brought up once per test session on its own loopback prefix (127.78)
so it never collides with a lab a developer runs by hand (127.77)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from tests.conftest import cli

LAB_BASE = "127.78"


@dataclass(frozen=True)
class Lab:
    """A running lab for tests."""

    state_dir: Path
    inventory: Path
    estate: Estate

    def cli(self, *args: str, inventory: bool = False, timeout: float = 300) -> object:
        """Run a callfleet command against this lab (state dir or inventory option added)."""
        extra = ["-i", str(self.inventory)] if inventory else ["--state-dir", str(self.state_dir)]
        return cli(*args, *extra, timeout=timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state_dir = tmp_path_factory.mktemp("lab")
    proc = cli("lab", "up", "--state-dir", str(state_dir), "--base", LAB_BASE, "--json")
    assert proc.returncode == 0, proc.stderr
    inventory = Path(json.loads(proc.stdout)["inventory"])
    try:
        yield Lab(state_dir=state_dir, inventory=inventory, estate=load_inventory(inventory))
    finally:
        cli("lab", "down", "--state-dir", str(state_dir))
