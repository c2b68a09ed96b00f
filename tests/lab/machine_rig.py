"""The rig shared by the lab tests that run the callserver role on nspawn machines: boot one
site's machines on a bridge of the test's own, write its inventory (systemd service, the
non-root SSH user `callfleet` with sudo), run playbooks through the orchestrator's
ansible-runner adapter, and read the machines over SSH.

Each test module picks its own bridge and network (two modules must never share either),
so they run beside the loopback lab and each other.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from orchestrator.ansible import runner
from orchestrator.estate.inventory import estate_to_inventory, load_inventory
from orchestrator.estate.model import EmergencyNumber, Estate, Host, Site
from orchestrator.estate.ssh import ssh_trust
from orchestrator.lab.machines import MachineLab, MachineRecord
from orchestrator.lab.machines.access import client_key, ssh_dir
from tests.conftest import REPO

CTL = "/run/kamailio/kamailio_ctl"
SITE = "site1"


@dataclass(frozen=True)
class Rig:
    """One booted site: its machines, inventory and estate, a release store, a work dir, and
    the variables every playbook run on it passes (those the inventory format has no key for)."""

    machines: MachineLab
    inventory: Path
    estate: Estate
    store: Path
    work: Path
    hosts: tuple[str, ...]
    run_vars: dict[str, object] = field(default_factory=dict)


def require_root() -> None:
    """nspawn machines need root; fail (not skip) so a CI run without it is visible."""
    if os.geteuid() != 0:
        pytest.fail("nspawn machines need root (CI runs as root)")


@contextmanager
def booted(state: Path, *, bridge: str, network: IPv4Network,
           hosts: Sequence[str]) -> Iterator[tuple[MachineLab, list[MachineRecord]]]:
    """Boot `hosts` on `bridge`/`network`; every machine and the bridge go again on exit,
    also when booting failed halfway."""
    machines = MachineLab(bridge=bridge, network=network, state_dir=state / "machines")
    try:
        yield machines, machines.up(list(hosts))
    finally:
        machines.down()


def write_inventory(state: Path, network: IPv4Network, records: Sequence[MachineRecord], *, name: str,
                    release: str, extra_vars: dict[str, Any] | None = None) -> tuple[Path, Estate]:
    """The site's inventory in `state` (systemd service, become through sudo), and its estate as loaded back."""
    psap = network.network_address + 250  # nothing answers there: only the config is exercised
    numbers = tuple(EmergencyNumber(number=n, label=f"n{n}", probe_route=n, psap_uri=f"sip:{psap}:5060")
                    for n in ("15", "17", "18", "112"))
    hosts = tuple(Host(name=r.name, site=SITE, address=r.address, release=release) for r in records)
    estate = Estate(name=name, sites=(Site(name=SITE, capacity_cps=100, weight=100, hosts=hosts),),
                    numbers=numbers, ssh_user="callfleet",
                    ssh_known_hosts=str(ssh_dir(state / "machines") / "known_hosts"),
                    ssh_private_key=str(client_key(state / "machines")))
    inventory = state / "inventory.yml"
    inventory.write_text(yaml.safe_dump(estate_to_inventory(estate, extra_vars={
        "callserver_service": "systemd", "ansible_become": True,
        "ansible_python_interpreter": "/usr/bin/python3", **(extra_vars or {})})))
    return inventory, load_inventory(inventory)


def play(rig: Rig, name: str, extra: dict[str, object] | None = None, tag: str = "",
         check: bool = False) -> runner.RunResult:
    """Run playbooks/<name>.yml on the site through the orchestrator's adapter (host keys checked)."""
    return runner.run(inventory=rig.inventory, trust=ssh_trust(rig.estate),
                      playbook=REPO / "playbooks" / f"{name}.yml",
                      extra_vars={"callfleet_target": SITE, **rig.run_vars, **(extra or {})},
                      private_dir=rig.work / f"ansible-{name}{tag}", check=check,
                      expect_hosts=frozenset(rig.hosts))


def sh(rig: Rig, host: str, command: str) -> str:
    """Run a command on a machine as the lab user (strict host-key checking)."""
    proc = rig.machines.ssh(host, command, timeout=30)
    return str(proc.stdout).strip()


def running_release(rig: Rig, host: str) -> str:
    """The release Kamailio itself reports (its `callfleet.release` config value)."""
    return sh(rig, host, f"sudo -n kamcmd -s unix:{CTL} cfg.get callfleet release")


def main_pid(rig: Rig, host: str) -> str:
    """kamailio.service's main pid: changes exactly when systemd restarted it."""
    return sh(rig, host, "systemctl show -p MainPID --value kamailio")


class RepoHandler(SimpleHTTPRequestHandler):
    """Serves the repository directory quietly and remembers what was asked for."""

    timeout = 30  # a stuck client must not hold a server thread for ever
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        self.requests.append(self.path)


@contextmanager
def serving(directory: Path, address: str) -> Iterator[int]:
    """An HTTP server on `address` (a free port) for `directory`, stopped and joined on exit."""
    handler = functools.partial(RepoHandler, directory=str(directory))
    server = ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
