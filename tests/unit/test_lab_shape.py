"""`lab up` refuses a shape or an address plan it cannot serve, before starting anything."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli


@pytest.mark.parametrize(("args", "message"), [
    (["--base", "127.61"], "must be 198.18.X or 198.19.X"),
    (["--base", "192.0.2"], "must be 198.18.X or 198.19.X"),
    (["--base", "198.18.256"], "must be 198.18.X or 198.19.X"),
    (["--sites", "13"], "--sites: 13 is out of range 1..12"),
    (["--hosts-per-site", "9"], "--hosts-per-site: 9 is out of range 1..8"),
])
def test_a_bad_shape_or_base_is_refused_up_front(tmp_path: Path, args: list[str], message: str) -> None:
    state = tmp_path / "lab"
    proc = cli("lab", "up", "--state-dir", str(state), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not state.exists()  # nothing half-made


@pytest.fixture()
def squatter() -> Iterator[str]:
    """An interface (a veth: no dummy module here) holding an address of 198.18.60.0/24, as
    another user's network would."""
    if os.geteuid() != 0:
        pytest.fail("creating an interface needs root (CI runs as root)")
    subprocess.run(["ip", "link", "add", "cfsquat0", "type", "veth", "peer", "name", "cfsquat1"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "198.18.60.7/24", "dev", "cfsquat0"], check=True)
        yield "cfsquat0"
    finally:
        subprocess.run(["ip", "link", "del", "cfsquat0"], check=False)


def test_a_lab_whose_addresses_are_in_use_is_refused_and_creates_nothing(tmp_path: Path, squatter: str) -> None:
    state = tmp_path / "lab"
    proc = cli("lab", "up", "--state-dir", str(state), "--base", "198.18.60", "--sites", "2",
               "--hosts-per-site", "1")
    assert proc.returncode == 2, proc.stderr
    assert "198.18.60" in proc.stderr and squatter in proc.stderr and "Traceback" not in proc.stderr
    links = [link["ifname"] for link in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                                                  text=True, check=True).stdout)]
    assert "cf18n60" not in links and not any(link.startswith("vb-cf18n60") for link in links)
    assert not (state / "lab.json").exists() and not (state / "machines" / "machines.json").exists()
