"""Host-key checking cannot be weakened from an inventory, and a relative inventory is never a
silent no-op (issue: safety boundaries, defects 1 and 2)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.ansible import runner
from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.ssh import SshTrust, ssh_trust, weakening_variable
from tests.conftest import REPO, cli

EXAMPLE = REPO / "inventory" / "production.example.yml"

WEAKENING: list[tuple[str, dict[str, Any], str]] = [
    ("host key checking off", {"ansible_host_key_checking": False}, "ansible_host_key_checking"),
    ("host key checking 'no'", {"ansible_ssh_host_key_checking": "no"}, "ansible_ssh_host_key_checking"),
    ("paramiko checking off", {"ansible_paramiko_host_key_checking": 0}, "ansible_paramiko_host_key_checking"),
    ("common args StrictHostKeyChecking=no",
     {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"},
     "ansible_ssh_common_args"),
    ("extra args known hosts", {"ansible_ssh_extra_args": "-oUserKnownHostsFile=/tmp/kh"}, "ansible_ssh_extra_args"),
    ("extra args ssh config", {"ansible_ssh_extra_args": "-F /tmp/evil_config"}, "ansible_ssh_extra_args"),
    ("scp args", {"ansible_scp_extra_args": "-o stricthostkeychecking=accept-new"}, "ansible_scp_extra_args"),
    ("ssh_args replaced", {"ansible_ssh_args": "-o ControlMaster=no"}, "ansible_ssh_args"),
    ("ssh wrapper", {"ansible_ssh_executable": "/tmp/myssh"}, "ansible_ssh_executable"),
    ("paramiko connection", {"ansible_connection": "paramiko_ssh"}, "ansible_connection"),
    ("local connection", {"ansible_connection": "local"}, "ansible_connection"),
]


@pytest.mark.parametrize(("variables", "key"), [c[1:] for c in WEAKENING], ids=[c[0] for c in WEAKENING])
def test_weakening_variables_are_named(variables: dict[str, Any], key: str) -> None:
    found = weakening_variable(variables)
    assert found is not None and found[0] == key


@pytest.mark.parametrize("variables", [
    {}, {"ansible_host_key_checking": True}, {"ansible_host_key_checking": "yes"}, {"ansible_connection": "ssh"},
    {"ansible_ssh_common_args": "-o IdentitiesOnly=yes -o BatchMode=yes -J bastion.example.net"},
])
def test_harmless_variables_pass(variables: dict[str, Any]) -> None:
    assert weakening_variable(variables) is None


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


LEVELS = {
    "all.vars": lambda d: d["all"]["vars"],
    "site vars": lambda d: d["all"]["children"]["callservers"]["children"]["lyon"]["vars"],
    "host": lambda d: d["all"]["children"]["callservers"]["children"]["lyon"]["hosts"]["lyon-cs2"],
    "another group": lambda d: d["all"]["children"].setdefault("edge", {}).setdefault("vars", {}),
}


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize(("variables", "key"), [c[1:] for c in WEAKENING], ids=[c[0] for c in WEAKENING])
def test_an_inventory_that_weakens_host_key_checking_is_refused_at_every_level(
        tmp_path: Path, level: str, variables: dict[str, Any], key: str) -> None:
    doc = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    target = LEVELS[level](doc)
    if target is None:  # a host with no variables of its own
        doc["all"]["children"]["callservers"]["children"]["lyon"]["hosts"]["lyon-cs2"] = target = {}
    target.update(variables)
    if level == "host":
        target.setdefault("ansible_host", "192.0.2.22")
    with pytest.raises(InvalidInput) as err:
        load_inventory(_write(tmp_path, doc))
    assert f".{key}: refused" in err.value.message and "\n" not in err.value.message


def test_the_cli_refuses_it_with_exit_2_naming_the_variable(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["all"]["vars"]["ansible_ssh_common_args"] = "-o StrictHostKeyChecking=no"
    proc = cli("estate", "validate", "-i", str(_write(tmp_path, doc)))
    assert proc.returncode == 2
    assert "all.vars.ansible_ssh_common_args: refused: sets StrictHostKeyChecking" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_trust_options_come_first_and_read_no_ssh_config(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    trust = SshTrust(known_hosts=kh)
    opts = trust.openssh_options()
    assert opts[:2] == ["-F", "none"]
    assert "StrictHostKeyChecking=yes" in opts and f"UserKnownHostsFile={kh}" in opts
    # a silent host (link cut) fails in bounded time instead of hanging a master connection
    assert {"ServerAliveInterval=5", "ServerAliveCountMax=3", "ConnectTimeout=10"} <= set(opts)
    env = runner.safe_envvars(trust.control_dir(), trust)
    assert env["ANSIBLE_SSH_ARGS"].startswith(trust.openssh_args())
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "True"


def test_master_sockets_are_kept_apart_per_known_hosts_file(tmp_path: Path) -> None:
    """A master opened while trusting one file must never carry a session that trusts another."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert SshTrust(known_hosts=a).control_dir() != SshTrust(known_hosts=b).control_dir()
    assert len(str(SshTrust(known_hosts=a).control_dir())) + 60 < 108


def test_a_named_known_hosts_file_must_exist(tmp_path: Path) -> None:
    estate = load_inventory(EXAMPLE).model_copy(update={"ssh_known_hosts": str(tmp_path / "absent")})
    with pytest.raises(InvalidInput, match="does not exist"):
        ssh_trust(estate)


def _unreachable_inventory(tmp_path: Path) -> Path:
    """One host on a closed loopback port: any real attempt is `unreachable`, never silent."""
    doc = {"all": {"hosts": {"site1-cs1": {"ansible_host": "127.0.0.1", "ansible_port": 1,
                                           "ansible_python_interpreter": "/usr/bin/python3"}}}}
    path = tmp_path / "plain.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_relative_inventory_path_reaches_the_hosts_instead_of_a_silent_no_op(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable_inventory(tmp_path)
    (tmp_path / "known_hosts").write_text("")
    monkeypatch.chdir(tmp_path)
    assert not Path("plain.yml").is_absolute()
    result = runner.run(inventory=Path("plain.yml"), trust=SshTrust(known_hosts=tmp_path / "known_hosts"),
                        playbook=REPO / "playbooks" / "preflight.yml",
                        extra_vars={"callfleet_target": "site1-cs1", "callserver_target_release": "x"},
                        private_dir=tmp_path / "run", expect_hosts=frozenset({"site1-cs1"}))
    # ansible-runner took the relative string for inventory text before: status=successful, hosts={}
    assert not result.succeeded
    assert result.hosts["site1-cs1"].unreachable == 1


def test_a_run_that_matched_none_of_the_expected_hosts_is_invalid_input(tmp_path: Path) -> None:
    inv = _unreachable_inventory(tmp_path)
    with pytest.raises(InvalidInput, match="matched no play for site9-cs1"):
        runner.run(inventory=inv, trust=SshTrust(known_hosts=tmp_path / "kh"),
                   playbook=REPO / "playbooks" / "preflight.yml",
                   extra_vars={"callfleet_target": "site9", "callserver_target_release": "x"},
                   private_dir=tmp_path / "run", expect_hosts=frozenset({"site9-cs1"}))


def test_a_missing_inventory_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such inventory"):
        runner.run(inventory=tmp_path / "absent.yml", trust=SshTrust(known_hosts=tmp_path / "kh"), module="ping")


def test_the_cli_resolves_a_relative_inventory(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    (tmp_path / "prod.yml").write_text(yaml.safe_dump(doc))
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "estate", "validate", "-i", "prod.yml", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "LC_ALL": "C.UTF-8"},
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f'"inventory": "{tmp_path / "prod.yml"}"' in proc.stdout


def test_an_address_written_as_a_boolean_or_number_is_refused(tmp_path: Path) -> None:
    """`address: true` used to become 0.0.0.1."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["all"]["vars"]["edge_router"]["address"] = True
    with pytest.raises(InvalidInput, match=r"edge_router.*written as text"):
        load_inventory(_write(tmp_path, doc))


def test_an_unknown_key_in_a_group_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["all"]["children"]["callservers"]["children"]["lyon"]["host"] = {"x": {}}  # a typo for hosts
    with pytest.raises(InvalidInput, match=r"lyon\.host: unknown key in a group"):
        load_inventory(_write(tmp_path, doc))
