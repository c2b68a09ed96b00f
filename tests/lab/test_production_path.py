"""The production path on the session's machine lab, as an operator at an operator would run it:
a package-sourced release upgraded on one site and rolled back through systemd with the
public calling, and a host whose link is cut in the middle of an upgrade.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.release.package import package_name, package_release
from orchestrator.traffic.edge import SshEdge
from tests.conftest import REPO, cli
from tests.lab.conftest import Lab, current_links, edge_list_text, hosts_snapshot, on_host, traffic
from tests.lab.machine_rig import serving
from tests.lab.releases import make_release

STOCK = "5.6.0-lab1"
PACKAGED = "5.6.0-pkg7"
GOOD = "5.6.0-lab7"


def _running(lab: Lab) -> dict[str, str]:
    st = json.loads(cli("lab", "status", "--state-dir", str(lab.state_dir), "--json").stdout)
    return {c["name"]: c["release"] for c in st["components"] if c["kind"] == "callserver"}


def test_a_package_sourced_release_upgrades_one_site_and_rolls_back_through_systemd(
        lab: Lab, tmp_path: Path) -> None:
    store, repo = tmp_path / "store", tmp_path / "repo"
    package_release(make_release(store, PACKAGED), repo)
    address = str(lab.estate.probe_source)  # the bridge's host side: all a machine can reach
    with serving(repo, address) as port:
        # The release source is an inventory value: the same estate, another way to ship releases.
        doc = yaml.safe_load(lab.inventory.read_text())
        doc["all"]["vars"] |= {"callserver_release_source": "package",
                               "callserver_package_repository": f"deb [trusted=yes] http://{address}:{port}/ ./"}
        inventory = tmp_path / "package-inventory.yml"
        inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
        before_others = hosts_snapshot(lab, exclude_site="site5")
        traffic(lab, "start")
        try:
            up = cli("site", "upgrade", "site5", "--to", PACKAGED, "--store", str(store), "-i", str(inventory),
                     "--json")
            assert up.returncode == 0, up.stderr
            running = _running(lab)
            assert running["site5-cs1"] == running["site5-cs2"] == PACKAGED
            for host in ("site5-cs1", "site5-cs2"):
                status = on_host(lab, host, f"dpkg-query -W -f '${{Status}}' {package_name('callserver', PACKAGED)}")
                assert status == "install ok installed", status
                assert on_host(lab, host, "systemctl is-active kamailio").strip() == "active"
            back = cli("site", "rollback", "site5", "-i", str(inventory), "--json")
            assert back.returncode == 0, back.stderr
        finally:
            lost = traffic(lab, "stop")
    running = _running(lab)
    assert running["site5-cs1"] == running["site5-cs2"] == STOCK
    assert all(v == STOCK for k, v in running.items() if not k.startswith("site5-"))
    # the other sites: same files, same links, kamailio.service never restarted
    assert hosts_snapshot(lab, exclude_site="site5") == before_others
    assert lost["failed"] == 0 and lost["attempted"] > 0, lost
    assert " 1 0 duid=" not in edge_list_text(lab)


def _drained(edge: SshEdge, path: str, site: str) -> bool:
    rows = [ln.split() for ln in edge.read_file(path).splitlines() if ln and not ln.startswith("#")]
    return any(r[2] == "1" for r in rows if f"site={site}" in r[4])


@pytest.fixture()
def clear_faults(lab: Lab) -> object:
    yield None
    cli("lab", "fault", "clear", "--state-dir", str(lab.state_dir))


def test_a_host_cut_mid_upgrade_fails_naming_it_and_site_rollback_recovers_it(
        lab: Lab, tmp_path: Path, clear_faults: object) -> None:
    store = tmp_path / "store"
    make_release(store, GOOD)
    assert lab.estate.edge is not None
    upgrade = subprocess.Popen([sys.executable, "-m", "orchestrator", "site", "upgrade", "site4", "--to", GOOD,
                                "--store", str(store), "-i", str(lab.inventory), "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    edge = SshEdge(lab.estate)
    try:
        deadline = time.monotonic() + 120
        while not _drained(edge, lab.estate.edge.dispatcher_list, "site4"):
            assert upgrade.poll() is None, upgrade.communicate()
            assert time.monotonic() < deadline, "site4 was never drained"
            time.sleep(0.1)
        # drained: the switch is about to run; the link of one host goes
        cut = cli("lab", "fault", "cut", "site4-cs2", "--state-dir", str(lab.state_dir))
        assert cut.returncode == 0, cut.stderr
        out, err = upgrade.communicate(timeout=600)
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
    print(err[-2000:])  # the operator's view of the failure, kept in the test log
    assert upgrade.returncode != 0, out
    doc = json.loads(out)
    assert "site4-cs2" in doc["error"]["message"], doc
    # never half-switched and carrying calls: either still drained, or every host answers on the stock release
    carrying = not _drained(edge, lab.estate.edge.dispatcher_list, "site4")
    if carrying:
        assert _running(lab)["site4-cs1"] == STOCK
    edge.close()
    clear = cli("lab", "fault", "clear", "--state-dir", str(lab.state_dir))
    assert clear.returncode == 0, clear.stderr
    back = cli("site", "rollback", "site4", "-i", str(lab.inventory), "--json")
    assert back.returncode == 0, back.stderr
    undrain = cli("site", "undrain", "site4", "-i", str(lab.inventory))
    assert undrain.returncode == 0, undrain.stderr
    running = _running(lab)
    assert running["site4-cs1"] == running["site4-cs2"] == STOCK
    assert " 1 0 duid=site4" not in edge_list_text(lab)


def test_a_directory_inventory_with_group_vars_drives_a_check_mode_upgrade(lab: Lab, tmp_path: Path) -> None:
    """The lab's inventory as operators keep theirs: hosts in hosts.yml, every variable in
    group_vars/ (all, then per site). `site upgrade --check` reads it through Ansible and
    reaches the same hosts with the same values: it would change site2 and changes nothing."""
    store = tmp_path / "store"
    make_release(store, GOOD)
    doc = yaml.safe_load(lab.inventory.read_text())
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(doc["all"].pop("vars"), sort_keys=False))
    for site, group in doc["all"]["children"]["callservers"]["children"].items():
        (inv / "group_vars" / f"{site}.yml").write_text(yaml.safe_dump(group.pop("vars"), sort_keys=False))
    (inv / "hosts.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    shown = cli("estate", "show", "--json", "-i", str(inv))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["sites"][1]["capacity_cps"] == lab.estate.sites[1].capacity_cps
    before = current_links(lab, "site2")
    check = cli("site", "upgrade", "site2", "--to", GOOD, "--store", str(store), "--check", "-i", str(inv), "--json")
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["outcome"] == "would-change" and set(report["changed_hosts"]) == {"site2-cs1", "site2-cs2"}
    assert current_links(lab, "site2") == before
