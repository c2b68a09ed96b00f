"""A wrong host key is refused by SSH, by Ansible (through ansible-runner) and by testinfra."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.ansible.runner import run as ansible_run
from orchestrator.hostcheck.checks import check_host, check_hosts
from tests.lab.conftest import Lab


@pytest.fixture(scope="module")
def impostor_inventory(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab inventory, but with a known_hosts that holds another key for every host
    (as after a host was replaced or an attacker answers), and its own ControlPath so
    no existing master connection can bypass the check."""
    d = tmp_path_factory.mktemp("impostor")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "other")], check=True)
    pub = (d / "other.pub").read_text().split()
    (d / "known_hosts").write_text("".join(f"[{h.address}]:{h.ssh_port} {pub[0]} {pub[1]}\n"
                                           for h in lab.estate.hosts))
    (d / "cp").mkdir()
    doc = yaml.safe_load(lab.inventory.read_text())
    args = doc["all"]["vars"]["ansible_ssh_common_args"].split()
    args = [a.replace(str(lab.state_dir / "ssh" / "known_hosts"), str(d / "known_hosts"))
            .replace(str(lab.state_dir / "cp"), str(d / "cp")) for a in args]
    doc["all"]["vars"]["ansible_ssh_common_args"] = " ".join(args)
    inv = d / "inventory.yml"
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv


def test_ssh_refuses_a_changed_host_key(lab: Lab, impostor_inventory: Path) -> None:
    ssh_dir = lab.state_dir / "ssh"
    host = lab.estate.host("site1-cs1")
    good = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                           str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                          "-o", f"UserKnownHostsFile={impostor_inventory.parent / 'known_hosts'}",
                          str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 255
    assert "Host key verification failed" in bad.stderr


def test_ansible_runner_refuses_a_changed_host_key(lab: Lab, impostor_inventory: Path, tmp_path: Path) -> None:
    good = ansible_run(inventory=lab.inventory, module="ping", host_pattern="site1-cs1",
                       private_dir=tmp_path / "good")
    assert good.succeeded, good.failures()
    bad = ansible_run(inventory=impostor_inventory, module="ping", host_pattern="site1-cs1",
                      private_dir=tmp_path / "bad")
    assert not bad.succeeded
    assert bad.hosts["site1-cs1"].unreachable == 1
    assert "Host key verification failed" in bad.failures()["site1-cs1"] or \
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in bad.failures()["site1-cs1"]


def test_testinfra_refuses_a_changed_host_key(lab: Lab, impostor_inventory: Path) -> None:
    host = lab.estate.host("site1-cs1")
    assert all(r.ok for r in check_host(lab.inventory, host, "5.6.0-lab1"))
    results = check_host(impostor_inventory, host, "5.6.0-lab1")
    assert len(results) == 1 and not results[0].ok
    assert results[0].check == "ssh"
    assert "Host key verification failed" in results[0].detail or "host key" in results[0].detail.lower()


def test_host_checks_detect_a_wrong_release(lab: Lab) -> None:
    hosts = lab.estate.site("site1").hosts
    assert all(r.ok for r in check_hosts(lab.inventory, hosts, "5.6.0-lab1"))
    wrong = {(r.host, r.check) for r in check_hosts(lab.inventory, hosts, "9.9.9") if not r.ok}
    assert wrong == {(h.name, c) for h in hosts for c in ("current release", "control socket answers")}


def test_testinfra_suite_runs_against_the_lab(lab: Lab) -> None:
    """tests/hosts is the testinfra suite users run against any estate."""
    import sys

    from tests.conftest import REPO

    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            str(REPO / "tests/hosts/check_callserver.py"), "--hosts=ansible://site2",
            f"--ansible-inventory={lab.inventory}"]
    ok = subprocess.run(base, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "8 passed" in ok.stdout
    bad = subprocess.run([*base, "--expected-release", "5.6.0-other"], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert bad.returncode == 1 and "4 failed, 4 passed" in bad.stdout
