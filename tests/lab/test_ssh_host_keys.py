"""A wrong host key is refused by SSH, by Ansible (through ansible-runner), by testinfra and by
Fabric, whatever ~/.ssh/config or the environment says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.ansible.runner import run as ansible_run
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate
from orchestrator.estate.ssh import ssh_trust
from orchestrator.fabricops import run_on_hosts
from orchestrator.hostcheck.checks import check_host, check_hosts
from tests.lab.conftest import LAB_BASE, Lab, impostor_inventory


@pytest.fixture(scope="module")
def impostor(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab inventory with another key for every host in its known_hosts."""
    return impostor_inventory(lab, tmp_path_factory.mktemp("impostor"))


def test_ssh_refuses_a_changed_host_key(lab: Lab, impostor: Path) -> None:
    ssh_dir = lab.state_dir / "machines" / "ssh"
    host = lab.estate.host("site1-cs1")
    good = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                           str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run(["ssh", "-F", str(ssh_dir / "ssh_config"), "-o", "ControlPath=none",
                          "-o", f"UserKnownHostsFile={impostor.parent / 'known_hosts'}",
                          str(host.address), "true"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 255
    assert "Host key verification failed" in bad.stderr


def _ping(inventory: Path, estate: Estate, out: Path) -> object:
    return ansible_run(inventory=inventory, trust=ssh_trust(estate), module="ping", host_pattern="site1-cs1",
                       private_dir=out, expect_hosts=frozenset({"site1-cs1"}))


def test_ansible_runner_refuses_a_changed_host_key(lab: Lab, impostor: Path, tmp_path: Path) -> None:
    good = _ping(lab.inventory, lab.estate, tmp_path / "good")
    assert good.succeeded, good.failures()
    bad = _ping(impostor, load_inventory(impostor), tmp_path / "bad")
    assert not bad.succeeded
    assert bad.hosts["site1-cs1"].unreachable == 1
    assert "Host key verification failed" in bad.failures()["site1-cs1"] or \
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in bad.failures()["site1-cs1"]


def test_testinfra_refuses_a_changed_host_key(lab: Lab, impostor: Path) -> None:
    host = lab.estate.host("site1-cs1")
    assert all(r.ok for r in check_host(lab.estate, host, "5.6.0-lab1"))
    results = check_host(load_inventory(impostor), host, "5.6.0-lab1")
    assert len(results) == 1 and not results[0].ok
    assert results[0].check == "ssh"
    assert "Host key verification failed" in results[0].detail or "host key" in results[0].detail.lower()


def test_host_checks_detect_a_wrong_release(lab: Lab) -> None:
    hosts = lab.estate.site("site1").hosts
    assert all(r.ok for r in check_hosts(lab.estate, hosts, "5.6.0-lab1"))
    wrong = {(r.host, r.check) for r in check_hosts(lab.estate, hosts, "9.9.9") if not r.ok}
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


@pytest.fixture
def weakening_ssh_config(monkeypatch: pytest.MonkeyPatch) -> object:
    """A user ssh config and environment that try to switch host-key checking off for the
    test lab's addresses, as a careless ~/.ssh/config or CI variable would. OpenSSH reads
    the passwd entry's home, not $HOME, so the real ~/.ssh/config is used (restored after),
    limited to this test lab's prefix."""
    import pwd

    ssh_dir = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    config = ssh_dir / "config"
    saved = config.read_bytes() if config.exists() else None
    config.write_text(f"Host {LAB_BASE}.*\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                      + (saved.decode() if saved else ""))
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    monkeypatch.setenv("ANSIBLE_SSH_COMMON_ARGS", "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
    monkeypatch.setenv("ANSIBLE_SSH_EXTRA_ARGS", "-o StrictHostKeyChecking=no")
    try:
        yield config
    finally:
        if saved is None:
            config.unlink()
        else:
            config.write_bytes(saved)


def test_a_weakening_ssh_config_and_environment_are_overridden_on_every_path(
        lab: Lab, impostor: Path, tmp_path: Path, weakening_ssh_config: Path) -> None:
    host = lab.estate.host("site1-cs1")
    plain = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ControlPath=none", "-i",
                            str(lab.estate.ssh_private_key), f"{lab.estate.ssh_user}@{host.address}",
                            "-p", str(host.ssh_port), "true"], capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0, "the weakening config is in force for plain ssh (it accepts any key)"
    impostor_estate = load_inventory(impostor)
    bad = _ping(impostor, impostor_estate, tmp_path / "bad")
    assert not bad.succeeded and bad.hosts["site1-cs1"].unreachable == 1, bad
    results = check_host(impostor_estate, host, "5.6.0-lab1")
    assert len(results) == 1 and results[0].check == "ssh" and not results[0].ok
    fab = run_on_hosts(estate=impostor_estate, hosts=[host], command="true", timeout=20)
    assert fab.results[0].failure == "host-key", fab
    # the real trust anchor still works under the same config: checking is strict, not broken
    assert _ping(lab.inventory, lab.estate, tmp_path / "good").succeeded
