"""A wrong host key is refused by SSH, by Ansible (through ansible-runner) and by testinfra."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.ansible.runner import run as ansible_run
from orchestrator.hostcheck.checks import check_host, check_hosts
from tests.lab.conftest import Lab, impostor_inventory


@pytest.fixture(scope="module")
def impostor(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab inventory with another key for every host in its known_hosts."""
    return impostor_inventory(lab, tmp_path_factory.mktemp("impostor"))


def test_ssh_refuses_a_changed_host_key(lab: Lab, impostor: Path) -> None:
    ssh_dir = lab.state_dir / "ssh"
    host = lab.estate.host("site1-cs1")
    good = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                           str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                          "-o", f"UserKnownHostsFile={impostor.parent / 'known_hosts'}",
                          str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 255
    assert "Host key verification failed" in bad.stderr


def test_ansible_runner_refuses_a_changed_host_key(lab: Lab, impostor: Path, tmp_path: Path) -> None:
    good = ansible_run(inventory=lab.inventory, module="ping", host_pattern="site1-cs1",
                       private_dir=tmp_path / "good")
    assert good.succeeded, good.failures()
    bad = ansible_run(inventory=impostor, module="ping", host_pattern="site1-cs1",
                      private_dir=tmp_path / "bad")
    assert not bad.succeeded
    assert bad.hosts["site1-cs1"].unreachable == 1
    assert "Host key verification failed" in bad.failures()["site1-cs1"] or \
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in bad.failures()["site1-cs1"]


def test_testinfra_refuses_a_changed_host_key(lab: Lab, impostor: Path) -> None:
    host = lab.estate.host("site1-cs1")
    assert all(r.ok for r in check_host(lab.inventory, host, "5.6.0-lab1"))
    results = check_host(impostor, host, "5.6.0-lab1")
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
