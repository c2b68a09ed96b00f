"""Fabric adapter and `callfleet exec|diag` against the lab: parallel runs grouped per host,
the worst exit code, diagnostics, and host keys that are refused when unknown or changed.

Sites 5 and 6 are used so these tests never race the upgrade tests on the first sites.
The remote shell tells which host it runs on from $SSH_CONNECTION (its third word is the
address the client connected to).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from orchestrator.errors import InvalidInput, RemoteError
from orchestrator.estate.model import Estate
from orchestrator.fabricops import diag, run_on_hosts, select_hosts
from orchestrator.fabricops.connect import host_label
from orchestrator.fabricops.diag import host_diag, parse_dialog_stats, parse_shmmem, split_sections
from orchestrator.fabricops.run import HostRun
from orchestrator.schemas import validate
from tests.lab.conftest import Lab, host_service, on_host

WHERE = 'set -- $SSH_CONNECTION; addr=$3'  # the lab address this session reached


def cli_app() -> typer.Typer:
    """The two commands, registered the way orchestrator/cli/main.py does."""
    from orchestrator.cli import ops_cmd

    app = typer.Typer()
    app.command("exec", context_settings=ops_cmd.EXEC_CONTEXT_SETTINGS)(ops_cmd.exec_command)
    app.command("diag")(ops_cmd.diag)
    return app


def invoke(*args: str) -> typer.testing.Result:
    return CliRunner().invoke(cli_app(), list(args))


def with_known_hosts(estate: Estate, path: Path) -> Estate:
    return estate.model_copy(update={"ssh_known_hosts": str(path)})


def inventory_with_known_hosts(lab: Lab, path: Path, out: Path) -> Path:
    """The lab inventory, its known_hosts replaced (what the CLI reads)."""
    doc = yaml.safe_load(lab.inventory.read_text())
    doc["all"]["vars"]["callfleet_ssh_known_hosts"] = str(path)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def impostor_known_hosts(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A known_hosts holding another key for every host (host replaced, or an impostor)."""
    d = tmp_path_factory.mktemp("fabric-impostor")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "other")], check=True)
    key_type, key = (d / "other.pub").read_text().split()[:2]
    (d / "known_hosts").write_text("".join(f"{h.address} {key_type} {key}\n" for h in lab.estate.hosts))
    return d / "known_hosts"


# --- parsing (no SSH) -------------------------------------------------------------------

SHMMEM = "{\n\ttotal: 67108864\n\tfree: 64295688\n\tused: 2571888\n\treal_used: 2813176\n" \
         "\tmax_used: 3265784\n\tfragments: 1\n}\n"
DIALOGS = "dialog:active_dialogs = 3\ndialog:early_dialogs = 1\ndialog:expired_dialogs = 0\n" \
          "dialog:failed_dialogs = 2\ndialog:processed_dialogs = 19\n"


def test_kamcmd_answers_are_parsed_into_numbers() -> None:
    shm = parse_shmmem(SHMMEM)
    assert (shm.total, shm.free, shm.used, shm.real_used, shm.max_used, shm.fragments) == \
        (67108864, 64295688, 2571888, 2813176, 3265784, 1)
    dlg = parse_dialog_stats(DIALOGS)
    assert (dlg.active, dlg.early, dlg.expired, dlg.failed, dlg.processed) == (3, 1, 0, 2, 19)


def test_rpc_errors_with_exit_0_and_log_lines_that_look_like_markers(lab: Lab) -> None:
    host = lab.estate.site("site6").hosts[0]
    token = "abc123"
    out = (f"error: 400 - Failed to get the variable\n@@{token} release 0\n"
           "{\n\tnow: x\n\tup_since: y\n\tuptime: 42\n}\n" f"@@{token} uptime 0\n"
           f"{SHMMEM}@@{token} shmmem 0\n"
           f"error: 500 - command not found\n@@{token} dialogs 0\n"
           f"line one\n@@deadbeef release 0\nline three\n@@{token} log 0\n")
    d = host_diag(host, HostRun(host=host.name, site=host.site, address=str(host.address), exit_code=0,
                                stdout=out), token=token)
    assert d.running_release is None and d.dialogs is None
    assert d.uptime_s == 42 and d.shmmem is not None and d.shmmem.total == 67108864
    assert d.log_tail == ("line one", "@@deadbeef release 0", "line three")
    assert not d.ok
    assert [e.split(":")[1].strip() for e in d.errors] == ["release", "dialogs"]
    assert all(e.startswith(f"{host.name}: ") for e in d.errors)
    assert "Failed to get the variable" in d.errors[0]
    assert split_sections("no markers at all\n", token=token) == {}


# --- exec ---------------------------------------------------------------------------------

def test_run_on_a_site_runs_on_both_hosts_and_keeps_the_worst_exit(lab: Lab) -> None:
    hosts = select_hosts(estate=lab.estate, sites=["site5"])
    assert [h.name for h in hosts] == ["site5-cs1", "site5-cs2"]
    # Each host exits with the last byte of its address: each result must carry its own host's output.
    report = run_on_hosts(estate=lab.estate, hosts=hosts, command=f'{WHERE}; echo "on $addr"; exit ${{addr##*.}}')
    assert [(r.host, r.exit_code, r.stdout.strip(), r.failure) for r in report.results] == [
        (h.name, int(str(h.address).rsplit(".", 1)[1]), f"on {h.address}", None) for h in hosts]
    assert report.exit_code == max(int(str(h.address).rsplit(".", 1)[1]) for h in hosts)
    assert [r.host for r in report.failed] == ["site5-cs1", "site5-cs2"]


def test_exec_groups_output_per_host_and_fails_where_the_marker_is_missing(lab: Lab) -> None:
    cs1, cs2 = lab.estate.site("site5").hosts
    marker = "/var/tmp/callfleet-exec-marker"
    on_host(lab, cs1.name, f"touch {marker}")  # only site5-cs1 finds its marker
    res = invoke("exec", "-i", str(lab.inventory), "--site", "site5", "--",
                 f'{WHERE}; echo "marker check on $addr"; test -e {marker}')
    assert res.exit_code == 1, res.output
    out = res.stdout
    i1, i2 = out.index(f"{cs1.name} {cs1.address} exit 0"), out.index(f"{cs2.name} {cs2.address} exit 1")
    # Each host's line sits under its own header.
    assert i1 < out.index(f"marker check on {cs1.address}") < i2 < out.index(f"marker check on {cs2.address}")
    assert "2 host(s): 1 ok, failed: site5-cs2; exit 1" in out
    on_host(lab, cs2.name, f"touch {marker}")
    again = invoke("exec", "-i", str(lab.inventory), "--site", "site5", "--", f"test -e {marker}")
    assert again.exit_code == 0, again.output
    invoke("exec", "-i", str(lab.inventory), "--site", "site5", "--", f"rm -f {marker}")


def test_exec_all_covers_the_twelve_hosts(lab: Lab) -> None:
    res = invoke("exec", "-i", str(lab.inventory), "--all", "--json", "--", f'{WHERE}; echo "at $addr"')
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    validate("exec-report", doc)
    assert doc["exit_code"] == 0
    assert len(doc["results"]) == 12
    assert {r["host"]: r["stdout"].strip() for r in doc["results"]} == \
        {h.name: f"at {h.address}" for h in lab.estate.hosts}


def test_the_remote_commands_options_are_not_taken_for_ours(lab: Lab) -> None:
    host = lab.estate.host("site6-cs1")
    # Without `--`: `-s` here belongs to ls (sizes), not to exec (--site).
    res = invoke("exec", "-i", str(lab.inventory), "--host", host.name, "ls", "-s", f"{host.root}/releases")
    assert res.exit_code == 0, res.output
    assert "5.6.0-lab1" in res.stdout and "site6-cs2" not in res.stdout


def test_exec_argument_errors_exit_2(lab: Lab) -> None:
    inv = str(lab.inventory)
    for args in (["--site", "nosuch", "--", "true"], ["--all", "--site", "site5", "--", "true"],
                 ["--", "true"], ["--site", "site5"]):
        res = invoke("exec", "-i", inv, *args)
        assert res.exit_code == 2, (args, res.output)
    assert "no site 'nosuch'" in invoke("exec", "-i", inv, "--site", "nosuch", "--", "true").stderr


def test_a_command_that_outlives_the_timeout_is_a_failure(lab: Lab) -> None:
    report = run_on_hosts(estate=lab.estate, hosts=[lab.estate.host("site6-cs1")], command="sleep 5", timeout=1)
    (run,) = report.results
    assert run.failure == "timeout" and run.exit_code is None and "site6-cs1" in (run.error or "")
    assert report.exit_code == 4


# --- diag -------------------------------------------------------------------------------

def test_diag_reads_release_memory_dialogs_and_log_of_each_host(lab: Lab) -> None:
    report = diag(estate=lab.estate, site="site6")
    assert [h.host for h in report.hosts] == ["site6-cs1", "site6-cs2"]
    for h in report.hosts:
        assert h.errors == ()
        assert h.running_release == "5.6.0-lab1"
        assert h.shmmem is not None and 0 < h.shmmem.used < h.shmmem.real_used <= h.shmmem.total
        assert h.shmmem.total == 64 * 2**20  # the lab starts Kamailio with -m 64
        assert h.dialogs is not None and h.dialogs.active >= 0
        assert h.uptime_s is not None and h.uptime_s >= 0
        assert 0 < len(h.log_tail) <= 20
    assert report.ok


def test_diag_cli_json_and_a_host_whose_call_server_is_stopped(lab: Lab) -> None:
    res = invoke("diag", "-i", str(lab.inventory), "--site", "site6", "--json", "--lines", "5")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    validate("diag-report", doc)
    assert [len(h["log_tail"]) for h in doc["hosts"]] == [5, 5]
    assert {h["running_release"] for h in doc["hosts"]} == {"5.6.0-lab1"}
    # kamailio.service stopped on site6-cs2: no control socket (kamcmd exit 255); its journal remains
    host_service(lab, "site6-cs2", "stop")
    try:
        report = diag(estate=lab.estate, site="site6")
    finally:
        host_service(lab, "site6-cs2", "start")
    good, bad = report.hosts
    assert good.ok and good.running_release == "5.6.0-lab1"
    assert not report.ok and bad.running_release is None and bad.shmmem is None
    assert [e.split(":")[1].strip() for e in bad.errors] == ["release", "uptime", "shmmem", "dialogs"]
    assert all(e.startswith("site6-cs2: ") for e in bad.errors)
    assert bad.log_tail  # the journal still tells what happened


# --- host keys --------------------------------------------------------------------------

def test_a_changed_host_key_is_refused_naming_the_host(lab: Lab, impostor_known_hosts: Path) -> None:
    hosts = select_hosts(estate=lab.estate, sites=["site5"])
    marker = "/var/tmp/callfleet-ran-on-impostor"
    bad = run_on_hosts(estate=with_known_hosts(lab.estate, impostor_known_hosts), hosts=hosts,
                       command=f"touch {marker}")
    assert bad.exit_code == 4
    for h, r in zip(hosts, bad.results, strict=True):
        assert r.failure == "host-key" and r.exit_code is None
        assert (r.error or "").startswith(f"{host_label(h)}: host key did not verify")
    for h in hosts:  # the command never ran on an impostor
        assert on_host(lab, h.name, f"test -e {marker} && echo ran || echo never").strip() == "never"
    with pytest.raises(RemoteError, match=r"site5-cs1 .*host key did not verify.*site5-cs2 "):
        bad.raise_for_failures()


def test_the_cli_refuses_a_changed_host_key_with_exit_4(lab: Lab, impostor_known_hosts: Path,
                                                        tmp_path: Path) -> None:
    inv = str(inventory_with_known_hosts(lab, impostor_known_hosts, tmp_path / "inventory.yml"))
    res = invoke("exec", "-i", inv, "--host", "site6-cs1", "--", "echo should-not-run")
    assert res.exit_code == 4, res.output
    assert host_label(lab.estate.host("site6-cs1")) in res.stdout and "host key did not verify" in res.stdout
    assert "should-not-run" not in res.stdout
    d = invoke("diag", "-i", inv, "--site", "site6")
    assert d.exit_code == 4, d.output
    assert "site6-cs1" in d.stderr and "site6-cs2" in d.stderr and "host key did not verify" in d.stderr


def test_an_unknown_host_is_refused_and_does_not_hide_a_known_one(lab: Lab, tmp_path: Path) -> None:
    cs1, cs2 = lab.estate.site("site5").hosts
    lines = Path(lab.estate.ssh_known_hosts or "").read_text().splitlines()
    only_cs1 = [line for line in lines if str(cs1.address) in line.split()[0].split(",")]
    assert len(only_cs1) == 1
    (tmp_path / "only-cs1").write_text(only_cs1[0] + "\n")
    report = run_on_hosts(estate=with_known_hosts(lab.estate, tmp_path / "only-cs1"), hosts=[cs1, cs2],
                          command="echo hello")
    first, second = report.results
    assert first.ok and first.stdout == "hello\n"
    assert second.failure == "host-key"
    assert second.error == f"{host_label(cs2)}: host key did not verify: " \
                           f"the host is not in {tmp_path / 'only-cs1'}"
    (tmp_path / "empty").write_text("")
    empty = run_on_hosts(estate=with_known_hosts(lab.estate, tmp_path / "empty"), hosts=[cs1, cs2], command="true")
    assert [r.failure for r in empty.results] == ["host-key", "host-key"] and empty.exit_code == 4


def test_a_missing_known_hosts_file_is_invalid_input(lab: Lab, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        run_on_hosts(estate=with_known_hosts(lab.estate, tmp_path / "nope"), hosts=lab.estate.hosts[:1],
                     command="true")
