"""The lab estate: machines of their own, status, probes, the background caller, restart of
crashed parts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from orchestrator import procs
from orchestrator.schemas import validate
from tests.conftest import cli
from tests.lab.conftest import LAB_BASE, Lab, host_service


def _status(lab: Lab) -> dict:  # type: ignore[type-arg]
    proc = cli("lab", "status", "--state-dir", str(lab.state_dir), "--json")
    doc = json.loads(proc.stdout)
    validate("lab-status", doc)
    return {"rc": proc.returncode, **doc}


def test_status_shows_six_sites_of_two_hosts_on_the_stock_release(lab: Lab) -> None:
    st = _status(lab)
    assert st["rc"] == 0
    servers = [c for c in st["components"] if c["kind"] == "callserver"]
    assert len(servers) == 12
    assert {c["site"] for c in servers} == {f"site{i}" for i in range(1, 7)}
    assert all(c["status"] == "running" and c["service"] == "active" and c["release"] == "5.6.0-lab1"
               for c in servers)
    kinds = {c["kind"] for c in st["components"] if c["status"] == "running"}
    assert kinds >= {"edge", "services", "psap", "prometheus", "callserver"}
    assert all(c["memory_mb"] and c["memory_mb"] > 1 for c in st["components"]
               if c["kind"] in ("callserver", "edge", "services"))
    assert {c["name"] for c in st["components"] if c["kind"] == "psap"} == {
        "psap-15", "psap-17", "psap-18", "psap-112"}


def _exec_all(lab: Lab, command: str) -> dict[str, str]:
    proc = cli("exec", "--all", "--json", "-i", str(lab.inventory), "--", command)
    assert proc.returncode == 0, proc.stderr
    return {r["host"]: r["stdout"].strip() for r in json.loads(proc.stdout)["results"]}


def test_every_host_is_a_machine_of_its_own(lab: Lab) -> None:
    """Over SSH through callfleet: distinct hostname, machine-id and host key on every host,
    kamailio.service active, and a file written on one host absent on all the others."""
    facts = _exec_all(lab, "hostname; cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub; "
                           "systemctl is-active kamailio; id -un; ip -4 route show default | wc -l")
    assert len(facts) == 12
    rows = {host: out.splitlines() for host, out in facts.items()}
    assert all(r[0] == host for host, r in rows.items())                    # its own hostname
    assert len({r[1] for r in rows.values()}) == 12                          # its own machine-id
    assert len({r[2] for r in rows.values()}) == 12                          # its own host key
    assert all(r[3:] == ["active", "callfleet", "0"] for r in rows.values()), rows  # no default route
    marker = f"/var/tmp/callfleet-test-{os.getpid()}"
    proc = cli("exec", "--host", "site3-cs1", "-i", str(lab.inventory), "--", f"echo here > {marker}")
    assert proc.returncode == 0, proc.stderr
    try:
        seen = _exec_all(lab, f"test -e {marker} && echo present || echo absent")
        assert seen.pop("site3-cs1") == "present"
        assert set(seen.values()) == {"absent"}
    finally:
        cli("exec", "--host", "site3-cs1", "-i", str(lab.inventory), "--", f"rm -f {marker}")


def test_lab_up_twice_is_harmless(lab: Lab) -> None:
    before = {c["name"]: c["pid"] for c in _status(lab)["components"]}
    proc = cli("lab", "up", "--state-dir", str(lab.state_dir), "--base", LAB_BASE)
    assert proc.returncode == 0, proc.stderr
    after = {c["name"]: c["pid"] for c in _status(lab)["components"]}
    assert before == after


def test_lab_up_with_another_shape_is_refused_while_running(lab: Lab) -> None:
    proc = cli("lab", "up", "--state-dir", str(lab.state_dir), "--base", LAB_BASE, "--sites", "3")
    assert proc.returncode == 2
    assert "lab down" in proc.stderr


def test_probes_answer_every_number_on_every_site_while_the_public_loses_nothing(lab: Lab) -> None:
    """Acceptance: 200 calls per number per site give SER 100%; the background caller
    at 20 calls/s for 60 s loses 0 calls (probes run meanwhile)."""
    start = cli("lab", "traffic", "start", "--rate", "20", "--duration", "120",
                "--state-dir", str(lab.state_dir), "--json")
    assert start.returncode == 0, start.stderr
    validate("traffic-started", json.loads(start.stdout))
    t0 = time.monotonic()
    proc = cli("probe", "--all", "--calls", "200", "--rate", "100", "--json", "-i", str(lab.inventory))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    validate("probe-report", report)
    assert report["healthy"] is True
    assert len(report["sites"]) == 6
    for site in report["sites"]:
        assert {n["number"] for n in site["numbers"]} == {"15", "17", "18", "112"}
        for n in site["numbers"]:
            assert n["attempted"] == 200 and n["answered"] == 200 and n["ser"] == 1.0, n
            assert n["srd_p95_ms"] is not None
    time.sleep(max(0.0, 60 - (time.monotonic() - t0)))
    stop = cli("lab", "traffic", "stop", "--state-dir", str(lab.state_dir), "--json")
    traffic = json.loads(stop.stdout)
    validate("traffic-report", traffic)
    assert traffic["state"] == "stopped"
    assert traffic["attempted"] >= 1150, traffic
    assert traffic["failed"] == 0, traffic
    assert traffic["answered"] == traffic["attempted"], traffic


def test_a_crashed_machine_is_reported_and_lab_up_boots_it_again(lab: Lab) -> None:
    from orchestrator.lab.machines import MachineLab
    from orchestrator.lab.state import machines_dir

    machines = MachineLab.open(machines_dir(lab.state_dir))
    machine = machines.machine("site6-cs2")
    assert machine.init_pid and procs.alive(machine.init_pid)
    os.kill(machine.init_pid, signal.SIGKILL)  # the machine's systemd dies: the whole machine goes
    assert procs.wait_for(lambda: not procs.alive(machine.nspawn_pid), timeout=20)
    st = _status(lab)
    assert st["rc"] == 4
    assert {c["name"]: c["status"] for c in st["components"]}["site6-cs2"] == "crashed"
    assert cli("lab", "up", "--state-dir", str(lab.state_dir), "--base", LAB_BASE).returncode == 0
    st = _status(lab)
    assert st["rc"] == 0, st
    row = {c["name"]: c for c in st["components"]}["site6-cs2"]
    # booted again on its own disk: the release it ran is still installed and kamailio.service runs it
    assert (row["status"], row["service"], row["release"]) == ("running", "active", "5.6.0-lab1"), row


def test_probe_of_an_unreachable_host_is_an_error_not_a_success(lab: Lab) -> None:
    host = lab.estate.host("site5-cs1")
    host_service(lab, host.name, "stop")
    try:
        proc = cli("probe", "--site", "site5", "--host", "site5-cs1", "--calls", "5", "-i", str(lab.inventory))
        assert proc.returncode == 4, proc.stderr
        assert "site5-cs1" in proc.stderr and "unreachable" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        host_service(lab, host.name, "start")


def test_missing_or_crashing_sipp_is_an_error(lab: Lab, tmp_path: Path) -> None:
    venv_bin = str(Path(os.sys.executable).parent)
    proc = cli("probe", "--site", "site1", "--calls", "5", "-i", str(lab.inventory),
               env={"PATH": venv_bin})
    assert proc.returncode == 3 and "sipp is not installed" in proc.stderr
    fake = tmp_path / "sipp"
    fake.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake.chmod(0o755)
    proc = cli("probe", "--site", "site1", "--calls", "5", "-i", str(lab.inventory),
               env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert proc.returncode == 4, proc.stderr
    assert "sipp" in proc.stderr and "failed" in proc.stderr


def test_probe_reports_a_failing_number_with_its_sip_code(lab: Lab) -> None:
    """A number the call server does not route is answered 404: the probe reports it
    as failed, by code, and exits 5 (health check failed)."""
    from orchestrator.estate.model import EmergencyNumber
    from orchestrator.probe.runner import probe_site

    broken = lab.estate.model_copy(update={"numbers": (*lab.estate.numbers, EmergencyNumber(
        number="114", label="not routed by the stock release", probe_route="114",
        psap_uri=f"sip:{LAB_BASE}.250.9:5060"))})
    report = probe_site(estate=broken, site=broken.site("site2"), numbers=["114", "15"], calls=20, rate=50)
    by_number = {n.number: n for n in report.numbers}
    assert by_number["114"].failures == {"404": 20} and by_number["114"].ser == 0.0
    assert by_number["15"].ser == 1.0
    assert not report.all_answered
