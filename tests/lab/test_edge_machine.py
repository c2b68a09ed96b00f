"""Steering a remote edge: the edge router on its own machine (nspawn, kamailio.service),
callfleet on the host reaching it over SSH only, as a non-root user with sudo, host key
checked. The drain, undrain and weight steps are seen in the edge's own dispatcher.list
and in what its Kamailio holds.

Its own bridge and network (cfme0, 198.18.249.0/24): runs beside every other lab.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from orchestrator.errors import RemoteError
from orchestrator.estate.model import EdgeRouter, EmergencyNumber, Estate, Host, Site
from orchestrator.lab.edge_machine import configure_edge
from orchestrator.lab.machines import MachineLab
from orchestrator.lab.machines.access import client_key, ssh_dir
from orchestrator.traffic.steering import dispatcher_for

pytestmark = pytest.mark.lab

BRIDGE = "cfme0"
NETWORK = IPv4Network("198.18.249.0/24")


@dataclass(frozen=True)
class EdgeRig:
    machines: MachineLab
    estate: Estate


def _estate(edge_address: IPv4Address, state: Path) -> Estate:
    """Three sites of two hosts on addresses nothing answers on: steering never calls them."""
    sites = tuple(
        Site(name=f"site{s}", capacity_cps=100, weight=100,
             hosts=tuple(Host(name=f"site{s}-cs{h}", site=f"site{s}", address=NETWORK[100 + 10 * s + h],
                              release="5.6.0-lab1") for h in (1, 2)))
        for s in (1, 2, 3))
    numbers = (EmergencyNumber(number="112", label="112", probe_route="112", psap_uri=f"sip:{NETWORK[250]}:5060"),)
    return Estate(name="edgetest", sites=sites, numbers=numbers, edge=EdgeRouter(address=edge_address),
                  ssh_user="callfleet", become=True, ssh_known_hosts=str(ssh_dir(state) / "known_hosts"),
                  ssh_private_key=str(client_key(state)))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeRig]:
    state = tmp_path_factory.mktemp("edge") / "machines"
    machines = MachineLab(bridge=BRIDGE, network=NETWORK, state_dir=state)
    try:
        (record,) = machines.up(["edge"])
        estate = _estate(record.address, state)

        def root_shell(command: str) -> tuple[int, str]:
            proc = machines.ssh("edge", f"sudo -n sh -c {_q(command)}", timeout=30)
            return proc.returncode, proc.stdout + proc.stderr

        configure_edge(estate, root_shell, metrics=False)
        yield EdgeRig(machines=machines, estate=estate)
    finally:
        machines.down()


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def edge_list(rig: EdgeRig) -> dict[str, tuple[int, int]]:
    """host -> (flags, rweight) as the edge host's dispatcher.list says."""
    text = rig.machines.ssh("edge", "sudo -n cat /etc/kamailio/dispatcher.list").stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"^1 sip:\S+ (\d) 0 duid=([\w-]+);rweight=(\d+);", line)
        if m:
            out[m[2]] = (int(m[1]), int(m[3]))
    return out


def test_the_edge_runs_on_its_own_machine_under_systemd(rig: EdgeRig) -> None:
    assert rig.machines.ssh("edge", "systemctl is-active kamailio").stdout.strip() == "active"
    assert rig.machines.ssh("edge", "hostname").stdout.strip() == "edge"
    # nothing of the edge is on this host: no such file here, no local socket
    assert not Path("/etc/kamailio/callfleet-edge.cfg").exists()


def test_drain_undrain_and_weights_are_applied_on_the_edge_host(rig: EdgeRig) -> None:
    steering = dispatcher_for(rig.estate)
    steering.drain("site2")
    listed = edge_list(rig)
    assert listed["site2-cs1"][0] == 1 and listed["site2-cs2"][0] == 1 and listed["site1-cs1"][0] == 0
    flags = steering.live_flags()
    assert all(flags[h.sip_uri].startswith("I") for h in rig.estate.site("site2").hosts), flags
    assert all(flags[h.sip_uri].startswith("A") for h in rig.estate.site("site1").hosts), flags
    assert steering.state()["site2"].share == 0.0
    steering.set_weight("site3", 10)
    assert edge_list(rig)["site3-cs1"] == (0, 10)
    assert steering.state()["site3"].weight == 10
    steering.undrain("site2")
    steering.set_weight("site3", 100)
    assert all(flags == 0 for flags, _ in edge_list(rig).values())
    assert all(f.startswith("A") for f in steering.live_flags().values())
    assert steering.in_flight("site1") == 0


def test_a_changed_edge_host_key_is_refused_naming_the_edge(rig: EdgeRig, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    pub = (tmp_path / "other.pub").read_text().split()
    addr = str(rig.estate.edge.address) if rig.estate.edge else ""
    (tmp_path / "known_hosts").write_text(f"{addr} {pub[0]} {pub[1]}\n")
    impostor = rig.estate.model_copy(update={"ssh_known_hosts": str(tmp_path / "known_hosts")})
    with pytest.raises(RemoteError, match=rf"edge {re.escape(addr)}:22: host key did not verify"):
        dispatcher_for(impostor).state()
