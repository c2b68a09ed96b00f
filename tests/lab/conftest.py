"""The lab, brought up once per test session on its own loopback prefix (127.78)
so it never collides with a lab a developer runs by hand (127.77)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from tests.conftest import REPO, cli

# Override to run two test sessions side by side (each needs its own prefix).
LAB_BASE = os.environ.get("CALLFLEET_TEST_LAB_BASE", "127.78")


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
    tests after a whole rollout expect. One Ansible run over all hosts at once (the baseline
    playbook, playbooks/naive-rolling.yml), then each site undrained."""
    from orchestrator.ansible import runner

    result = runner.run(inventory=lab.inventory, playbook=REPO / "playbooks" / "naive-rolling.yml",
                        extra_vars={"callserver_target_release": STOCK, "naive_serial": "100%",
                                    "callserver_bundle_dir": str(lab.state_dir / "bundles" / f"callserver-{STOCK}")},
                        private_dir=lab.state_dir / "restore-ansible")
    assert result.succeeded, f"could not restore {STOCK}: {result}"
    for site in lab.estate.sites:
        undrain = cli("site", "undrain", site.name, "-i", str(lab.inventory))
        assert undrain.returncode == 0, undrain.stderr


def impostor_inventory(lab: Lab, out_dir: Path, *, hosts: list[str] | None = None) -> Path:
    """A copy of the lab inventory whose known_hosts holds another key for `hosts` (all
    by default), as after a host was replaced or someone else answers on its address.
    It gets its own short ControlPath, so no open master connection bypasses the check."""
    import re
    import subprocess
    import tempfile

    import yaml

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(out_dir / "other")], check=True)
    pub = (out_dir / "other.pub").read_text().split()
    victims = {f"[{h.address}]:{h.ssh_port}" for h in lab.estate.hosts if hosts is None or h.name in hosts}
    lines = [f"{ln.split()[0]} {pub[0]} {pub[1]}" if ln.split()[0] in victims else ln
             for ln in (lab.state_dir / "ssh" / "known_hosts").read_text().splitlines()]
    known_hosts = out_dir / "known_hosts"
    known_hosts.write_text("\n".join(lines) + "\n")
    control_dir = tempfile.mkdtemp(prefix="cfcp-")  # ControlPath must stay under 108 bytes
    doc = yaml.safe_load(lab.inventory.read_text())
    gvars = doc["all"]["vars"]
    args = re.sub(r"UserKnownHostsFile=\S+", f"UserKnownHostsFile={known_hosts}", gvars["ansible_ssh_common_args"])
    gvars["ansible_ssh_common_args"] = re.sub(r"ControlPath=\S+", f"ControlPath={control_dir}/%C", args)
    gvars["callfleet_ssh_known_hosts"] = str(known_hosts)
    inv = out_dir / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv
