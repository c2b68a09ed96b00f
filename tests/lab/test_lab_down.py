"""`lab down` leaves no machine, process, bridge, veth, address or listening socket of the
lab behind (checked with the process table, `ip` and `ss`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator import procs
from tests.conftest import cli
from tests.labnet import free_base

BASE = free_base("198.18.76")  # its own /24 and bridge: runs beside the session lab
BRIDGE = "cf18n76"


def _lab_pids(state_dir: Path) -> list[int]:
    """Every process whose command line mentions the lab's state directory."""
    out = subprocess.run(["pgrep", "-f", str(state_dir)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if procs.alive(int(p))]


def _listeners(prefix: str, state_dir: Path) -> list[str]:
    out = subprocess.run(["ss", "-H", "-l", "-n", "-u", "-t", "-x"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f" {prefix}." in line or str(state_dir) in line]


def _links() -> list[str]:
    return [link["ifname"] for link in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True,
                                                                 text=True, check=True).stdout)]


def _addresses(prefix: str) -> list[str]:
    doc = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    return [a["local"] for link in doc for a in link.get("addr_info", []) if a["local"].startswith(prefix + ".")]


def test_lab_down_stops_every_process_and_listener(tmp_path: Path) -> None:
    state_dir = tmp_path / "lab"
    up = cli("lab", "up", "--state-dir", str(state_dir), "--base", BASE, "--sites", "2",
             "--hosts-per-site", "2", "--json")
    assert up.returncode == 0, up.stderr
    try:
        start = cli("lab", "traffic", "start", "--rate", "10", "--duration", "30", "--state-dir", str(state_dir))
        assert start.returncode == 0, start.stderr
        status = json.loads(cli("lab", "status", "--state-dir", str(state_dir), "--json").stdout)
        pids = [c["pid"] for c in status["components"] if c["pid"]]
        # machines: edge, services, 4 call servers; processes: 4 PSAPs, Prometheus, the caller
        assert len(pids) == 6 + 4 + 1 + 1
        assert _lab_pids(state_dir)
        assert _listeners(BASE, state_dir)  # the host-side caller and probes' sockets
        assert BRIDGE in _links() and any(link.startswith(f"vb-{BRIDGE}") for link in _links())
        assert _addresses(BASE)
    finally:
        down = cli("lab", "down", "--state-dir", str(state_dir), "--json")
    assert down.returncode == 0, down.stderr
    assert len(json.loads(down.stdout)["stopped"]) == 12
    assert not [p for p in pids if procs.alive(p)]
    assert _lab_pids(state_dir) == []
    assert _listeners(BASE, state_dir) == []
    assert [link for link in _links() if BRIDGE in link] == []
    assert _addresses(BASE) == []
    status = cli("lab", "status", "--state-dir", str(state_dir), "--json")
    assert status.returncode == 4
    assert all(c["status"] == "stopped" for c in json.loads(status.stdout)["components"])
