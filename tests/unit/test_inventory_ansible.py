"""The inventory as Ansible sees it: a directory with group_vars/ and a vaulted secret, INI,
host_vars overrides; what callfleet loads is what `ansible-inventory --list` prints, and bad
inventories are one line naming the file and key, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import InvalidInput
from orchestrator.estate.inventory import load_inventory
from tests.conftest import REPO, cli

PRODUCTION = REPO / "inventory" / "production"
PASSWORD = PRODUCTION / "vault-password.example.txt"
VAULT = {"ANSIBLE_VAULT_PASSWORD_FILE": str(PASSWORD)}


@pytest.fixture
def inventory_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "production"
    shutil.copytree(PRODUCTION, d)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(PASSWORD))
    return d


def _ansible_inventory(path: Path) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "--list", "-i", str(path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **VAULT}, check=True)
    data: dict = json.loads(proc.stdout)  # type: ignore[type-arg]
    return data


def test_a_directory_with_group_vars_and_a_vault_is_what_ansible_sees(inventory_dir: Path) -> None:
    estate = load_inventory(inventory_dir)
    ansible = _ansible_inventory(inventory_dir)
    hostvars = ansible["_meta"]["hostvars"]
    assert sorted(h.name for h in estate.hosts) == sorted(hostvars)
    for site in estate.sites:
        assert ansible[site.name]["hosts"] == [h.name for h in site.hosts]
        for host in site.hosts:
            hv = hostvars[host.name]
            assert (site.capacity_cps, site.weight, site.region) == (hv["site_capacity_cps"], hv["site_weight"],
                                                                     hv["site_region"])
            assert (str(host.address), host.release, host.root) == (hv["ansible_host"], hv["callserver_release"],
                                                                     hv["callserver_root"])
            assert estate.become is hv["ansible_become"] is True
            assert "ansible_become_password" in hv  # vaulted, and opened by the same password
    first = hostvars[estate.hosts[0].name]
    assert estate.name == first["estate_name"] and estate.ssh_user == first["ansible_user"]
    assert [n.model_dump() for n in estate.numbers] == first["emergency_numbers"]
    assert estate.edge is not None and str(estate.edge.address) == first["edge_router"]["address"]


def test_the_cli_sees_the_same_estate_show_and_plan(inventory_dir: Path) -> None:
    show = cli("estate", "show", "-i", str(inventory_dir), "--json", env=VAULT)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["sites"][1]["capacity_cps"] == 400
    plan = cli("plan", "--declared", "--to", "5.7.0", "-i", str(inventory_dir), "--json", env=VAULT)
    assert plan.returncode == 0, plan.stderr
    waves = json.loads(plan.stdout)["waves"]
    assert waves[0]["site"] == "paris" and waves[-1]["role"] == "reserve" and len(waves) == 6


def test_an_ini_inventory_loads_the_same_estate(inventory_dir: Path, tmp_path: Path) -> None:
    yaml_estate = load_inventory(inventory_dir)
    ini = tmp_path / "ini"
    ini.mkdir()
    shutil.copytree(inventory_dir / "group_vars", ini / "group_vars")
    lines = ["[callservers:children]", *[s.name for s in yaml_estate.sites], ""]
    for site in yaml_estate.sites:
        lines += [f"[{site.name}]", *[f"{h.name} ansible_host={h.address}" for h in site.hosts], ""]
    (ini / "hosts").write_text("\n".join(lines))
    assert load_inventory(ini) == yaml_estate


def _one_line_exit_2(path: Path, key: str, words: str) -> None:
    proc = cli("estate", "validate", "-i", str(path), env=VAULT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    first = proc.stderr.splitlines()[0]
    assert str(path) in first and key in first and words in first, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("error:", "hint:"))]


def _edit(path: Path, change: dict) -> None:  # type: ignore[type-arg]
    doc = yaml.safe_load(path.read_text())
    for key, value in change.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    path.write_text(yaml.safe_dump(doc))


def test_a_key_missing_from_group_vars(inventory_dir: Path) -> None:
    _edit(inventory_dir / "group_vars" / "lyon.yml", {"site_capacity_cps": None})
    _one_line_exit_2(inventory_dir, "children.lyon.vars.site_capacity_cps", "Field required")


def test_a_wrong_type_in_group_vars(inventory_dir: Path) -> None:
    _edit(inventory_dir / "group_vars" / "paris.yml", {"site_weight": "heavy"})
    _one_line_exit_2(inventory_dir, "children.paris.vars.site_weight", "valid integer")


def test_a_duplicate_address(inventory_dir: Path) -> None:
    hosts = inventory_dir / "hosts.yml"
    hosts.write_text(hosts.read_text().replace("lyon-cs2: {ansible_host: 192.0.2.22}",
                                               "lyon-cs2: {ansible_host: 192.0.2.11}"))
    _one_line_exit_2(inventory_dir, "lyon-cs2", "already used by paris-cs1")


def test_a_duplicate_key_in_a_group_vars_file(inventory_dir: Path) -> None:
    path = inventory_dir / "group_vars" / "paris.yml"
    path.write_text(path.read_text() + "site_weight: 50\n")
    _one_line_exit_2(inventory_dir, "paris.yml", "site_weight")


def test_a_wrong_vault_password(inventory_dir: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not-the-password\n")
    proc = cli("estate", "validate", "-i", str(inventory_dir), env={"ANSIBLE_VAULT_PASSWORD_FILE": str(wrong)})
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert "ansible_become_password" in first and "cannot decrypt" in first and str(inventory_dir) in first


def test_host_vars_that_split_an_estate_wide_value_are_refused(inventory_dir: Path) -> None:
    (inventory_dir / "host_vars").mkdir()
    (inventory_dir / "host_vars" / "lille-cs2.yml").write_text("estate_name: other\n")
    with pytest.raises(InvalidInput, match=r"all\.vars\.estate_name: differs between"):
        load_inventory(inventory_dir)


def test_host_vars_that_weaken_host_key_checking_are_refused(inventory_dir: Path) -> None:
    (inventory_dir / "host_vars").mkdir()
    (inventory_dir / "host_vars" / "lille-cs2.yml").write_text("ansible_ssh_common_args: -o StrictHostKeyChecking=no\n")
    with pytest.raises(InvalidInput, match=r"host_vars/lille-cs2\.yml: ansible_ssh_common_args: refused"):
        load_inventory(inventory_dir)
