"""The test sessions' lab prefixes give way to what a killed run left behind (tests/labnet.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.labnet import alternative, free_base


def _link(name: str) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)


@pytest.fixture()
def stale_bridges() -> Iterator[list[str]]:
    """Bridges named as labs' would be, with nothing behind them: what a killed lab leaves."""
    if os.geteuid() != 0:
        pytest.fail("creating an interface needs root (CI runs as root)")
    made: list[str] = []
    try:
        yield made
    finally:
        for name in made:
            subprocess.run(["ip", "link", "del", name], check=False)


def test_alternatives_are_distinct_per_test_prefix_and_stay_in_the_benchmarking_block() -> None:
    prefixes = ["198.18.75", "198.18.76", "198.18.78", "198.18.79", "198.18.80", "198.19.78", "198.19.79"]
    others = [alternative(p) for p in prefixes]
    assert others == ["198.19.175", "198.19.176", "198.19.178", "198.19.179", "198.19.180", "198.19.228",
                      "198.19.229"]
    assert not set(others) & set(prefixes)


def test_a_free_prefix_is_kept(stale_bridges: list[str]) -> None:
    assert free_base("198.18.71") == "198.18.71"


def test_a_prefix_whose_bridge_a_killed_run_left_gives_way_to_its_alternative(stale_bridges: list[str]) -> None:
    _link("cf18n71")
    stale_bridges.append("cf18n71")
    assert free_base("198.18.71") == "198.19.171"


def test_with_both_taken_the_preferred_prefix_is_returned_for_the_lab_to_refuse_by_name(
        stale_bridges: list[str]) -> None:
    for name in ("cf18n71", "cf19n171"):
        _link(name)
        stale_bridges.append(name)
    assert free_base("198.18.71") == "198.18.71"
