"""The lab estate: status, probes, the background caller, restart of crashed parts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from orchestrator import procs
from tests.conftest import cli
from tests.lab.conftest import LAB_BASE, Lab


def _status(lab: Lab) -> dict:  # type: ignore[type-arg]
    proc = cli("lab", "status", "--state-dir", str(lab.state_dir), "--json")
    return {"rc": proc.returncode, **json.loads(proc.stdout)}


def test_status_shows_six_sites_of_two_hosts_on_the_stock_release(lab: Lab) -> None:
    st = _status(lab)
    assert st["rc"] == 0
    servers = [c for c in st["components"] if c["kind"] == "callserver"]
    assert len(servers) == 12
    assert {c["site"] for c in servers} == {f"site{i}" for i in range(1, 7)}
    assert all(c["status"] == "running" and c["release"] == "5.6.0-lab1" for c in servers)
    kinds = {c["kind"] for c in st["components"] if c["status"] == "running"}
    assert kinds >= {"sshd", "edge", "psap", "callserver"}
    assert {c["name"] for c in st["components"] if c["kind"] == "psap"} == {
        "psap-15", "psap-17", "psap-18", "psap-112"}


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
    t0 = time.monotonic()
    proc = cli("probe", "--all", "--calls", "200", "--rate", "100", "--json", "-i", str(lab.inventory))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
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
    assert traffic["state"] == "stopped"
    assert traffic["attempted"] >= 1150, traffic
    assert traffic["failed"] == 0, traffic
    assert traffic["answered"] == traffic["attempted"], traffic


def test_crashed_call_server_is_reported_and_lab_up_restarts_it(lab: Lab) -> None:
    host = lab.estate.host("site6-cs2")
    pid = procs.read_pidfile(Path(host.root) / "run" / "kamailio.pid")
    assert pid and procs.alive(pid)
    os.kill(pid, signal.SIGKILL)
    assert procs.wait_for(lambda: not procs.alive(pid), timeout=5)
    st = _status(lab)
    assert st["rc"] == 4
    assert {c["name"]: c["status"] for c in st["components"]}["site6-cs2"] == "crashed"
    assert cli("lab", "up", "--state-dir", str(lab.state_dir), "--base", LAB_BASE).returncode == 0
    st = _status(lab)
    assert st["rc"] == 0
    assert {c["name"]: c["status"] for c in st["components"]}["site6-cs2"] == "running"
    # the killed main's workers (same process group) must not survive, still bound to the port;
    # zombies hold no port (this machine's PID 1 may reap them late), SIGKILL lands asynchronously
    assert procs.wait_for(lambda: _live_group_members(pid) == [], timeout=5), _live_group_members(pid)


def _live_group_members(pgid: int) -> list[str]:
    """Processes of group `pgid` that are not zombies."""
    members = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    live = []
    for member in members:
        try:
            state = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state not in ("Z", "X"):
            live.append(member)
    return live


def test_probe_of_an_unreachable_host_is_an_error_not_a_success(lab: Lab) -> None:
    host = lab.estate.host("site5-cs1")
    ctl = Path(host.root) / "bin" / "callserverctl"
    subprocess.run([str(ctl), "stop"], check=True, capture_output=True)
    try:
        proc = cli("probe", "--site", "site5", "--host", "site5-cs1", "--calls", "5", "-i", str(lab.inventory))
        assert proc.returncode == 4, proc.stderr
        assert "site5-cs1" in proc.stderr and "unreachable" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run([str(ctl), "start"], check=True, capture_output=True)


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
