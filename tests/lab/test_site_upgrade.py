"""One-site upgrade and rollback against the lab (issue #3 acceptance)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.release.store import find_bundle
from orchestrator.schemas import validate
from tests.conftest import cli
from tests.lab.conftest import Lab, current_links, edge_list_text, hosts_snapshot, impostor_inventory, traffic
from tests.lab.releases import dies_at_start, make_release, syntax_error

GOOD = "5.6.0-lab2"


def snapshot(lab: Lab, *, exclude_site: str) -> dict[str, str]:
    """Files, links and service start times of the other sites' hosts (over SSH)."""
    return hosts_snapshot(lab, exclude_site=exclude_site)


def running(lab: Lab) -> dict[str, str]:
    st = json.loads(cli("lab", "status", "--state-dir", str(lab.state_dir), "--json").stdout)
    return {c["name"]: c["release"] for c in st["components"] if c["kind"] == "callserver"}


def upgrade(lab: Lab, store: Path, site: str, version: str, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    proc = cli("site", "upgrade", site, "--to", version, "--store", str(store), "-i", str(lab.inventory),
               "--json", *extra)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    validate("error" if proc.returncode else "site-report", doc)
    return proc.returncode, doc, proc.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = tmp_path_factory.mktemp("store")
    make_release(s, GOOD)
    make_release(s, "5.6.0-badsyntax", syntax_error)
    make_release(s, "5.6.0-dies", dies_at_start)
    make_release(s, "5.6.0-tampered")
    return s


def test_good_upgrade_touches_one_site_loses_no_call_and_is_idempotent(lab: Lab, store: Path) -> None:
    before_others = snapshot(lab, exclude_site="site1")
    traffic(lab, "start")
    try:
        rc, report, err = upgrade(lab, store, "site1", GOOD)
        assert rc == 0, err
        assert report["outcome"] == "upgraded"
        assert all(n > 0 for n in report["changed_hosts"].values())
        assert [s["name"] for s in report["steps"]] == [
            "verify bundle", "preflight", "drain", "switch", "post-check", "undrain"]
        # running the same upgrade again changes nothing
        rc, again, err = upgrade(lab, store, "site1", GOOD)
        assert rc == 0, err
        assert again["outcome"] == "unchanged" and set(again["changed_hosts"].values()) == {0}
    finally:
        lost = traffic(lab, "stop")
    rel = running(lab)
    assert rel["site1-cs1"] == rel["site1-cs2"] == GOOD
    assert all(v == "5.6.0-lab1" for k, v in rel.items() if not k.startswith("site1-"))
    assert snapshot(lab, exclude_site="site1") == before_others
    assert lost["failed"] == 0 and lost["attempted"] > 0, lost
    edge_list = edge_list_text(lab)
    assert " 1 0 duid=" not in edge_list  # nothing left drained


def test_check_mode_reports_and_changes_nothing(lab: Lab, store: Path) -> None:
    before = snapshot(lab, exclude_site="none")
    rc, report, err = upgrade(lab, store, "site3", GOOD, "--check")
    assert rc == 0, err
    assert report["outcome"] == "would-change"
    assert all(n > 0 for n in report["changed_hosts"].values())
    assert snapshot(lab, exclude_site="none") == before
    assert running(lab)["site3-cs1"] == "5.6.0-lab1"


def test_rollback_after_a_good_upgrade_is_quick(lab: Lab, store: Path) -> None:
    """Site1 was upgraded above; roll it back and record the Ansible time."""
    proc = cli("site", "rollback", "site1", "-i", str(lab.inventory), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    seconds = {s["name"]: s["seconds"] for s in report["steps"]}
    print(f"\nrollback figures: {seconds}")
    assert seconds["rollback"] < 20
    rel = running(lab)
    assert rel["site1-cs1"] == rel["site1-cs2"] == "5.6.0-lab1"


def test_a_config_that_fails_kamailio_c_is_refused_before_current_changes(lab: Lab, store: Path) -> None:
    current = current_links(lab, "site2")
    rc, report, err = upgrade(lab, store, "site2", "5.6.0-badsyntax")
    assert rc == 4, err
    assert "preflight of site2 (nothing was switched) failed" in report["error"]["message"]
    assert "site2-cs1" in report["error"]["message"] and "site2-cs2" in report["error"]["message"]
    assert current_links(lab, "site2") == current
    assert " 1 0 duid=site2" not in edge_list_text(lab)


def test_a_release_that_dies_at_start_is_rolled_back_with_traffic_restored(lab: Lab, store: Path) -> None:
    traffic(lab, "start")
    try:
        t0 = time.monotonic()
        rc, report, err = upgrade(lab, store, "site4", "5.6.0-dies")
        elapsed = time.monotonic() - t0
    finally:
        lost = traffic(lab, "stop")
    assert rc == 6, err
    assert "rolled back to the previous release and traffic restored" in report["error"]["message"]
    rel = running(lab)
    assert rel["site4-cs1"] == rel["site4-cs2"] == "5.6.0-lab1"
    assert " 1 0 duid=site4" not in edge_list_text(lab)
    assert lost["failed"] == 0, lost
    print(f"\nfailed upgrade + automatic rollback took {elapsed:.1f}s")


def test_a_bundle_with_one_byte_changed_is_refused_before_any_host_is_touched(lab: Lab, store: Path) -> None:
    bundle = find_bundle(store, "5.6.0-tampered")
    cfg = bundle / "kamailio.cfg"
    data = bytearray(cfg.read_bytes())
    data[100] ^= 0x20
    cfg.write_bytes(bytes(data))
    proc = cli("release", "verify", str(bundle))
    assert proc.returncode == 2 and "modified" in proc.stdout and "kamailio.cfg" in proc.stdout
    before = snapshot(lab, exclude_site="none")
    rc, report, _ = upgrade(lab, store, "site5", "5.6.0-tampered")
    assert rc == 2
    assert "fails verification" in report["error"]["message"] and "modified kamailio.cfg" in report["error"]["message"]
    assert snapshot(lab, exclude_site="none") == before


def test_a_changed_host_key_fails_the_upgrade_naming_the_host(lab: Lab, store: Path, tmp_path: Path) -> None:
    inv = impostor_inventory(lab, tmp_path, hosts=["site6-cs2"])
    proc = cli("site", "upgrade", "site6", "--to", GOOD, "--store", str(store), "-i", str(inv))
    assert proc.returncode == 4
    assert "site6-cs2: Host key verification failed" in proc.stderr
    assert "site6-cs1" not in proc.stderr.split("failed:", 1)[1]
    assert running(lab)["site6-cs2"] == "5.6.0-lab1"
    # Fabric refuses it alike
    proc = cli("exec", "--site", "site6", "-i", str(inv), "--", "true")
    assert proc.returncode == 4
    assert "site6-cs2" in proc.stdout + proc.stderr and "host key did not verify" in proc.stdout + proc.stderr
