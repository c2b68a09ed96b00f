"""The nspawn machine substrate (orchestrator.lab.machines): two real machines on a private bridge.

Uses its own bridge (cfmt0) and network (198.18.250.0/24), never loopback, so it runs
beside the loopback lab. The base image comes from the shared cache (built on first use,
about a minute); with it cached the whole module takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lab.machines import (
    AddressInUse,
    AddressOutOfRange,
    LabShapeChanged,
    MachineBootFailed,
    MachineLab,
    MachineRecord,
    MachineState,
    NamingError,
    faults,
    missing_host_tools,
    net,
)
from orchestrator.lab.machines.access import client_key, ssh_dir
from orchestrator.lab.machines.cgroups import own_cgroup
from orchestrator.lab.machines.host import ensure_host_packages
from orchestrator.lab.machines.image import ensure_image

pytestmark = pytest.mark.lab

BRIDGE = "cfmt0"
NETWORK = IPv4Network("198.18.250.0/24")
NAMES = ("cs-one", "cs-two")


# ---- pure functions (no machines) ------------------------------------------------------------

def test_address_plan() -> None:
    assert str(net.host_address(NETWORK)) == "198.18.250.1/24"
    assert [str(net.machine_address(NETWORK, i).ip) for i in range(3)] == ["198.18.250.2", "198.18.250.3",
                                                                          "198.18.250.4"]
    with pytest.raises(AddressOutOfRange):
        net.machine_address(NETWORK, 253)  # .255 is broadcast


@pytest.mark.parametrize("bad", ["10.0.0.0/24", "127.77.0.0/16", "198.16.0.0/15", "198.18.0.0/14", "not-a-net",
                                 "198.18.250.0/31"])
def test_only_rfc2544_networks(bad: str) -> None:
    with pytest.raises(AddressOutOfRange):
        net.lab_network(bad)
    with pytest.raises(AddressOutOfRange):
        MachineLab(bridge="cfmq0", network=bad, state_dir=Path("/nonexistent"))


def test_interface_names_fit() -> None:
    assert net.machine_name("cfmt0", 3) == "cfmt0m3"
    assert net.veth_name("cfmt0m3") == "vb-cfmt0m3"
    assert len(net.veth_name(net.machine_name("abcdefghi", 99))) == 15
    with pytest.raises(NamingError):
        net.machine_name("abcdefghi", 100)   # vb-abcdefghim100 would be 16
    for bad in ("abcdefghij", "Cfm", "cf-m", "0cfm", ""):
        with pytest.raises(NamingError):
            net.check_bridge_name(bad)


def test_own_cgroup_parsing() -> None:
    text = "9:name=systemd:/a\n6:freezer:/\n4:memory:/x/y\n0::/u\n"
    assert own_cgroup("systemd", text) == "/a"
    assert own_cgroup("freezer", text) == "/"
    assert own_cgroup("memory", text) == "/x/y"
    assert own_cgroup("unified", text) == "/u"
    assert own_cgroup("pids", text) is None


# ---- two live machines -----------------------------------------------------------------------

def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=10)
    data = json.loads(out.stdout or "[]")
    return data if isinstance(data, list) else [data]


def _live_pids_with(needle: str) -> list[int]:
    """Processes (zombies excluded) whose command line contains `needle`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


def _lab_addresses() -> list[str]:
    return [f"{link['ifname']} {a['local']}" for link in _ip_json("-4", "addr", "show")
            for a in link.get("addr_info", [])
            if IPv4Address(a["local"]) in NETWORK]


@pytest.fixture(scope="module")
def machines() -> Iterator[MachineLab]:
    if os.geteuid() != 0:
        pytest.skip("nspawn machines need root")
    if missing_host_tools():
        ensure_host_packages()
    ensure_image()  # cached after the first build
    state_dir = Path(tempfile.mkdtemp(prefix="cfm-test-", dir="/tmp"))
    lab = MachineLab(bridge=BRIDGE, network=NETWORK, state_dir=state_dir, boot_timeout=90)
    try:
        lab.up(list(NAMES))
        yield lab
    finally:
        lab.down()
        shutil.rmtree(state_dir, ignore_errors=True)


def _strict_ssh(lab: MachineLab, m: MachineRecord, command: str,
                known_hosts: Path | None = None) -> subprocess.CompletedProcess[str]:
    """ssh without the lab's ssh_config: every option that makes it strict is spelled out."""
    kh = known_hosts or ssh_dir(lab.state_dir) / "known_hosts"
    argv = ["ssh", "-F", "/dev/null", "-i", str(client_key(lab.state_dir)), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={kh}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", f"{lab.user}@{m.address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _records(lab: MachineLab) -> list[MachineRecord]:
    rec = lab.record()
    assert rec is not None
    return [rec.machines[n] for n in NAMES]


def test_machines_running(machines: MachineLab) -> None:
    status = machines.status()
    assert [s.name for s in status] == list(NAMES)
    assert all(s.state == MachineState.RUNNING for s in status)
    assert all(s.nspawn_pid and s.init_pid for s in status)
    assert [str(s.address) for s in status] == ["198.18.250.2", "198.18.250.3"]


def test_distinct_identity_over_strict_ssh(machines: MachineLab) -> None:
    seen: dict[str, set[str]] = {"hostname": set(), "machine_id": set(), "host_key": set()}
    for m in _records(machines):
        out = _strict_ssh(machines, m, "hostname; cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub;"
                                       " id -un; sudo -n true && echo sudo-ok")
        assert out.returncode == 0, out.stderr
        hostname, machine_id, host_key, user, sudo = out.stdout.split()
        assert (hostname, user, sudo) == (m.name, "callfleet", "sudo-ok")
        assert machine_id == m.machine_id and len(machine_id) == 32
        assert host_key == m.host_key_pub.split()[1]  # the key the orchestrator generated and trusts
        seen["hostname"].add(hostname)
        seen["machine_id"].add(machine_id)
        seen["host_key"].add(host_key)
    assert all(len(v) == len(NAMES) for v in seen.values()), seen


def test_unknown_host_key_is_refused(machines: MachineLab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    out = _strict_ssh(machines, _records(machines)[0], "true", known_hosts=empty)
    assert out.returncode == 255 and "Host key verification failed" in out.stderr


def test_services_active(machines: MachineLab) -> None:
    for name in NAMES:
        out = machines.ssh(name, "systemctl is-active kamailio ssh")
        assert out.stdout.split() == ["active", "active"], (name, out.stdout, out.stderr)
        # The same, as root from outside through the machine's namespaces (no ssh).
        inside = subprocess.run(machines.nsenter_argv(name, "systemctl", "is-system-running"), capture_output=True,
                                text=True, timeout=20, check=False)
        assert inside.stdout.strip() in ("running", "degraded"), inside


def test_no_default_route_and_only_lab_address(machines: MachineLab) -> None:
    for m in _records(machines):
        out = machines.ssh(m.name, "ip -4 route show table all type unicast; echo ---; ip -j -4 addr show")
        routes, addrs = out.stdout.split("---\n")
        assert "default" not in routes, routes
        assert routes.split() == ["198.18.250.0/24", "dev", "host0", "proto", "kernel", "scope", "link", "src",
                                  str(m.address)], routes
        local = sorted(a["local"] for link in json.loads(addrs) for a in link["addr_info"])
        assert local == sorted(["127.0.0.1", str(m.address)])
        # Nothing outside the lab network is reachable: the kernel has no route for it.
        out = machines.ssh(m.name, "ip route get 192.0.2.1; ip route get 198.18.251.2")
        assert out.returncode != 0 and out.stderr.count("Network is unreachable") == 2, out.stderr
    rec = machines.record()
    assert rec is not None
    assert Path(f"/proc/sys/net/ipv4/conf/{rec.bridge}/forwarding").read_text().strip() == "0"


def test_overlays_are_private(machines: MachineLab) -> None:
    one, two = NAMES
    assert machines.ssh(one, "echo here | sudo tee /etc/cfm-marker >/dev/null").returncode == 0
    assert machines.ssh(one, "cat /etc/cfm-marker").stdout.strip() == "here"
    assert machines.ssh(two, "test -e /etc/cfm-marker; echo $?").stdout.strip() == "1"
    rec = machines.record()
    assert rec is not None
    assert not (rec.rootfs / "etc/cfm-marker").exists()   # the shared base is never written


def test_up_twice_is_harmless(machines: MachineLab) -> None:
    before = {s.name: (s.nspawn_pid, s.init_pid) for s in machines.status()}
    again = machines.up(list(NAMES))
    assert {m.name: (m.nspawn_pid, m.init_pid) for m in again} == before


def test_changed_order_is_refused(machines: MachineLab) -> None:
    with pytest.raises(LabShapeChanged):
        machines.up(["cs-new"])          # would take cs-one's index, address and veth
    with pytest.raises(LabShapeChanged):
        machines.up(list(reversed(NAMES)))
    assert set(machines.record().machines) == set(NAMES)  # type: ignore[union-attr]


def test_address_in_use_refused_before_anything_is_created(machines: MachineLab, tmp_path: Path) -> None:
    # Same network on another bridge: 198.18.250.1 is already assigned on cfmt0.
    other = MachineLab(bridge="cfmt9", network=NETWORK, state_dir=tmp_path / "other")
    with pytest.raises(AddressInUse, match=r"198\.18\.250\.1 is assigned on cfmt0"):
        other.up(["x1"])
    assert not net.link_exists("cfmt9")
    assert not (tmp_path / "other").exists()
    # And a bridge name that exists but is not this state dir's lab is refused too.
    with pytest.raises(NamingError):
        MachineLab(bridge=BRIDGE, network="198.18.251.0/24", state_dir=tmp_path / "third").up(["x1"])
    assert not (tmp_path / "third").exists()


def test_boot_timeout_is_bounded_and_down_cleans_up(machines: MachineLab, tmp_path: Path) -> None:
    other = MachineLab(bridge="cfmt1", network="198.18.251.0/24", state_dir=tmp_path / "slow", boot_timeout=0.2)
    try:
        with pytest.raises(MachineBootFailed):
            other.up(["slowpoke"])
        assert net.link_exists("cfmt1")   # what was created is recorded ...
    finally:
        other.down()                       # ... so down removes it
    assert not net.link_exists("cfmt1")
    assert _live_pids_with("--machine=cfmt1m") == []
    assert other.status() == []


def test_restart_keeps_overlay_and_identity(machines: MachineLab) -> None:
    one = NAMES[0]
    before = machines.machine(one)
    assert machines.ssh(one, "echo kept | sudo tee /var/lib/cfm-kept >/dev/null").returncode == 0
    machines.stop(one)
    assert {s.name: s.state for s in machines.status()}[one] == MachineState.STOPPED
    assert not net.link_exists(before.veth)
    after = machines.start(one)
    assert after.nspawn_pid != before.nspawn_pid
    assert after.host_key_pub == before.host_key_pub and after.machine_id == before.machine_id
    out = _strict_ssh(machines, after, "cat /var/lib/cfm-kept; cat /etc/machine-id")
    assert out.stdout.split() == ["kept", before.machine_id], out.stderr


def _tcp(address: IPv4Address, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((str(address), 22), timeout=timeout):
            return True
    except OSError:
        return False


def test_fault_link_down_up(machines: MachineLab) -> None:
    m = machines.machine(NAMES[1])
    faults.link_down(machines, m.name)
    try:
        assert not net.link_is_up(m.veth)
        assert not _tcp(m.address)
    finally:
        faults.link_up(machines, m.name)
    assert net.link_is_up(m.veth)
    assert _tcp(m.address, timeout=5)


def test_fault_freeze_thaw(machines: MachineLab) -> None:
    m = machines.machine(NAMES[1])
    faults.freeze(machines, m.name)
    try:
        assert {s.name: s.state for s in machines.status()}[m.name] == MachineState.FROZEN
        # The kernel still completes the TCP handshake (backlog), but sshd sends no banner.
        with socket.create_connection((str(m.address), 22), timeout=2) as s:
            s.settimeout(1.0)
            with pytest.raises(TimeoutError):
                s.recv(64)
    finally:
        faults.thaw(machines, m.name)
    assert {s.name: s.state for s in machines.status()}[m.name] == MachineState.RUNNING
    assert machines.ssh(m.name, "true").returncode == 0


def test_fault_poweroff_then_start(machines: MachineLab) -> None:
    name = NAMES[1]
    faults.poweroff(machines, name)
    assert {s.name: s.state for s in machines.status()}[name] == MachineState.CRASHED
    machines.start(name)
    assert machines.ssh(name, "systemctl is-active kamailio").stdout.strip() == "active"


def test_memory_is_measured(machines: MachineLab) -> None:
    for s in machines.status():
        assert s.memory_bytes is not None and s.memory_bytes > 1_000_000


def test_down_from_another_process_leaves_nothing(machines: MachineLab) -> None:
    recs = _records(machines)
    groups = [machines.cgroups(m.name) for m in recs]
    assert all(g.paths for g in groups)
    code = ("import sys; from pathlib import Path; from orchestrator.lab.machines import MachineLab; "
            "MachineLab.open(Path(sys.argv[1])).down()")
    out = subprocess.run([sys.executable, "-c", code, str(machines.state_dir)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert _live_pids_with(f"--machine={BRIDGE}m") == []
    assert all(not any(p.exists() for p in g.paths.values()) for g in groups)
    assert not net.link_exists(BRIDGE)
    links = [str(link["ifname"]) for link in _ip_json("link", "show")]
    assert not [x for x in links if x.startswith(("vb-" + BRIDGE, BRIDGE))], links
    assert _lab_addresses() == []
    routes = _ip_json("-4", "route", "show", "table", "all")
    assert [r for r in routes if str(r.get("dst", "")).startswith("198.18.250.")] == []
    assert machines.status() == []
    assert not (machines.state_dir / "machines").exists()
