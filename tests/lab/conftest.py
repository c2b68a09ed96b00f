"""The lab, brought up once per test session (once per pytest-xdist worker) on its own /24
(198.18.78; worker gwN: 198.19.(78+N)) and bridge, so it never collides with a lab a developer
runs by hand (198.18.77), another worker's, or the machine tests' own small labs
(198.18.249-253)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from orchestrator.traffic.steering import dispatcher_for
from tests.conftest import REPO, cli
from tests.integration_alerting.servers import HttpReceiver
from tests.labnet import free_base


def _session_base() -> str:
    """The session lab's prefix: $CALLFLEET_TEST_LAB_BASE (two sessions side by side each need
    their own), else 198.18.78; under pytest-xdist each worker has a lab of its own on
    198.19.(78+N) (gwN), so the workers never share a machine, bridge or address. A prefix a
    killed run left occupied gives way to its alternative (tests/labnet.py)."""
    if "CALLFLEET_TEST_LAB_BASE" in os.environ:
        return os.environ["CALLFLEET_TEST_LAB_BASE"]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return free_base(f"198.19.{78 + int(worker[2:])}")
    return free_base("198.18.78")


LAB_BASE = _session_base()


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
    if proc.returncode != 0:
        cli("lab", "down", "--state-dir", str(state_dir))  # what did start must not outlive the session
        pytest.fail(f"lab up failed: {proc.stderr}")
    inventory = Path(json.loads(proc.stdout)["inventory"])
    try:
        yield Lab(state_dir=state_dir, inventory=inventory, estate=load_inventory(inventory))
    finally:
        cli("lab", "down", "--state-dir", str(state_dir))


STOCK = "5.6.0-lab1"  # the release `lab up` installs


def restore_stock(lab: Lab) -> None:
    """Every call server back on the stock release and every site at full weight: what the
    tests after a whole rollout expect. One switch run over all hosts at once (playbooks/
    upgrade.yml: the stock release stays installed on every host from `lab up`, and no run
    removes a release it did not stage), then each site undrained."""
    from orchestrator.ansible import runner
    from orchestrator.estate.ssh import ssh_trust

    result = runner.run(inventory=lab.inventory, trust=ssh_trust(lab.estate),
                        playbook=REPO / "playbooks" / "upgrade.yml",
                        extra_vars={"callserver_target_release": STOCK, "callfleet_target": "callservers"},
                        private_dir=lab.state_dir / "restore-ansible")
    assert result.succeeded, f"could not restore {STOCK}: {result}"
    for site in lab.estate.sites:
        undrain = cli("site", "undrain", site.name, "-i", str(lab.inventory))
        assert undrain.returncode == 0, undrain.stderr


def impostor_inventory(lab: Lab, out_dir: Path, *, hosts: list[str] | None = None) -> Path:
    """A copy of the lab inventory whose known_hosts holds another key for `hosts` (all
    by default), as after a host was replaced or someone else answers on its address.
    callfleet keys its SSH master sockets by the known_hosts file, so no master opened
    under the real file can carry a session of this one."""
    import subprocess

    import yaml

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(out_dir / "other")], check=True)
    pub = (out_dir / "other.pub").read_text().split()
    victims = {str(h.address) for h in lab.estate.hosts if hosts is None or h.name in hosts}
    # lines are "hostname,address key-type key"
    lines = [f"{ln.split()[0]} {pub[0]} {pub[1]}" if set(ln.split()[0].split(",")) & victims else ln
             for ln in Path(str(lab.estate.ssh_known_hosts)).read_text().splitlines()]
    known_hosts = out_dir / "known_hosts"
    known_hosts.write_text("\n".join(lines) + "\n")
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["all"]["vars"]["callfleet_ssh_known_hosts"] = str(known_hosts)
    inv = out_dir / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv


def host_service(lab: Lab, host: str, action: str, *, check: bool = True) -> None:
    """`systemctl <action> kamailio` on one call server, over SSH with sudo as an operator would."""
    from orchestrator.fabricops.run import run_on_hosts

    result = run_on_hosts(estate=lab.estate, hosts=[lab.estate.host(host)],
                          command=f"sudo -n systemctl {action} kamailio", timeout=60).results[0]
    assert result.ok or not check, f"{host}: systemctl {action} kamailio: {result.error or result.stderr}"


def on_host(lab: Lab, host: str, command: str) -> str:
    """A command's output on one host over SSH (as the lab user); fails the test on error."""
    from orchestrator.fabricops.run import run_on_hosts

    result = run_on_hosts(estate=lab.estate, hosts=[lab.estate.host(host)], command=command,
                          timeout=60).results[0]
    assert result.ok, f"{host}: {command}: {result.error or result.stderr}"
    return result.stdout


def edge_list_text(lab: Lab) -> str:
    """The edge's dispatcher.list as the edge host has it (read over SSH, as steering does)."""
    from orchestrator.traffic.edge import SshEdge

    assert lab.estate.edge is not None
    edge = SshEdge(lab.estate)
    try:
        return edge.read_file(lab.estate.edge.dispatcher_list)
    finally:
        edge.close()


SNAPSHOT_COMMAND = (
    "cd /opt/callserver && sudo -n find . -path ./log -prune -o -path ./run -prune -o -type l "
    "-printf '%p -> %l\\n' -o -type f -exec sha256sum {} + | sort; "
    "systemctl show -p ExecMainStartTimestampMonotonic --value kamailio")


def hosts_snapshot(lab: Lab, *, exclude_site: str) -> dict[str, str]:
    """Per host of the other sites: every file's hash and link target under the call-server
    root, and when kamailio.service's process started (a restart changes it)."""
    from orchestrator.fabricops.run import run_on_hosts

    hosts = [h for h in lab.estate.hosts if h.site != exclude_site]
    report = run_on_hosts(estate=lab.estate, hosts=hosts, command=SNAPSHOT_COMMAND, timeout=60)
    assert report.exit_code == 0, [r.error or r.stderr for r in report.results if not r.ok]
    return {r.host: r.stdout for r in report.results}


def current_links(lab: Lab, site: str) -> dict[str, str]:
    """host -> where its `current` link points, over SSH."""
    return {h.name: on_host(lab, h.name, f"readlink {h.root}/current").strip() for h in lab.estate.site(site).hosts}


def traffic(lab: Lab, action: str) -> dict:  # type: ignore[type-arg]
    """`lab traffic start|stop|report --json` (start: 20 calls/s for at most 300 s); its document."""
    args = ["lab", "traffic", action, "--state-dir", str(lab.state_dir), "--json"]
    if action == "start":
        args += ["--rate", "20", "--duration", "300"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def put_back(lab: Lab, hosts: Iterable[str]) -> None:
    """After a watch test, whatever happened: `hosts` running again, no site drained, no caller."""
    for host in hosts:
        host_service(lab, host, "start", check=False)
    steering = dispatcher_for(lab.estate)
    for site, traffic in steering.state().items():
        if traffic.drained:
            steering.undrain(site)
    cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir))
    assert not any(t.drained for t in steering.state().values())


@pytest.fixture()
def receiver() -> Iterator[HttpReceiver]:
    """A webhook receiver on 127.0.0.1 for the alerts of a lab test."""
    server = HttpReceiver()
    yield server
    server.close()
