"""The Automation API path end to end, with the real Pulumi engine.

The engine is the `pulumi` CLI that callfleet finds (PATH, else the checkout's .tools/bin
that `make pulumi` builds): these tests never skip, they fail when it is missing. Nothing
is mocked: a local file backend and the passphrase secrets provider under the test's own
directory (PULUMI_HOME too: no account, no network), the program run inline, the Python
dynamic provider and the CrossGuard pack each in their own process through callfleet's
shims, and the `callfleet provision` commands.

The program and the pack run in this interpreter's venv: the test builds a throw-away
project directory whose Pulumi.yaml and PulumiPolicy.yaml point at sys.prefix, so the
checkout's Pulumi.yaml (which names .venv) and its stacks are left alone. Only the
up/destroy test needs a live lab (marker `lab`); the others preview a lab stack, which
computes the lab's estate without touching a lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli.provision_cmd import app
from orchestrator.errors import ToolMissing
from orchestrator.estate.inventory import load_inventory
from orchestrator.lab.ingress import current_ssh_ingress
from orchestrator.lab.topology import LabParams, lab_estate
from orchestrator.lab.variants import make_release
from orchestrator.provision.automation import PulumiAutomation, locate_pulumi
from tests.conftest import cli
from tests.labnet import free_base

from .conftest import LAB_BASE, callserver_states

# The engine's own lab: not the provider test's (a lab it failed to take down must not
# meet this one), nor a developer's or the lab test session's.
ENGINE_LAB_BASE = free_base("198.18.80")

REPO = Path(__file__).resolve().parents[3]
BUILD_WAIT_S = 3600


def wait_for_background_build(tools: Path) -> None:
    """Wait while `tools/pulumi/build.sh --background` runs; fail with its log if it failed."""
    pid_file, rc_file = tools / "build.pid", tools / "build.rc"
    if not pid_file.exists():
        return
    deadline = time.monotonic() + BUILD_WAIT_S
    while not rc_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 0)
        except (ProcessLookupError, ValueError):
            break  # gone without a result: the lookup below says what is missing
        if time.monotonic() > deadline:
            pytest.fail(f"the background Pulumi build is still running after {BUILD_WAIT_S}s", pytrace=False)
        time.sleep(5)
    if rc_file.exists() and rc_file.read_text().strip() != "0":
        log = (tools / "build.log").read_text()[-3000:] if (tools / "build.log").exists() else ""
        pytest.fail(f"the background Pulumi build failed:\n{log}", pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def pulumi_engine() -> Path:
    """The engine these tests drive; a missing one fails them (it is built by `make pulumi`).
    `make test` builds it in the background: wait (bounded) for that build to finish."""
    wait_for_background_build(REPO / ".tools")
    try:
        return locate_pulumi()
    except ToolMissing as exc:
        pytest.fail(f"no Pulumi engine: run `make pulumi` (it builds one into .tools/bin) "
                    f"or install Pulumi; {exc.message}", pytrace=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir running this venv, with a local file backend and its own PULUMI_HOME."""
    root = tmp_path / "project"
    (root / "policies" / "crossguard").mkdir(parents=True)
    (root / "program").symlink_to(REPO / "orchestrator" / "provision", target_is_directory=True)
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({
        "name": "callfleet", "main": "program/",
        "runtime": {"name": "python", "options": {"virtualenv": sys.prefix}}}))
    pack = REPO / "policies" / "crossguard"
    policy = yaml.safe_load((pack / "PulumiPolicy.yaml").read_text())
    policy["runtime"]["options"]["virtualenv"] = sys.prefix
    (root / "policies" / "crossguard" / "PulumiPolicy.yaml").write_text(yaml.safe_dump(policy))
    for name in ("__main__.py", "analyzer"):
        shutil.copy(pack / name, root / "policies" / "crossguard" / name)
    backend = tmp_path / "backend"
    backend.mkdir()
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{backend}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "callfleet-test")
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    # No network here: a missing plugin must be reported, not looked for on the Internet.
    monkeypatch.setenv("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    monkeypatch.setenv("CALLFLEET_PROJECT_DIR", str(root))
    return root


def _engine(project: Path) -> PulumiAutomation:
    return PulumiAutomation(work_dir=project, policy_packs=[project / "policies" / "crossguard"])


def _resources(project: Path, stack: str) -> list[str]:
    """The types of the resources the backend holds for the stack (the stack itself aside)."""
    engine = _engine(project)
    handle = engine._stack(stack, create=False)
    deployment = handle.export_stack().deployment or {}
    return [r["type"] for r in deployment.get("resources") or [] if r["type"] != "pulumi:pulumi:Stack"]


def test_a_lab_stack_previews_in_the_real_engine(project: Path, tmp_path: Path) -> None:
    """Program, dynamic provider (check/diff in its own process) and pack, no lab needed."""
    _engine(project).set_config(stack="lab", values={
        "substrate": "lab", "labStateDir": str(tmp_path / "no-lab"), "labBase": LAB_BASE, "peakCps": "600"})
    preview = CliRunner().invoke(app, ["preview", "--stack", "lab", "--json"])
    assert preview.exit_code == 0, preview.output
    result = json.loads(preview.stdout)
    # the stack itself, the estate, the lab network, 6 site components, 6 lab sites and
    # their 6 SSH ingress rules
    assert result["changes"]["create"] == 21
    assert result["violations"] == []
    assert not (tmp_path / "no-lab").exists()


@pytest.mark.lab
@pytest.mark.timeout(1500)
def test_provision_up_brings_the_lab_from_nothing_and_destroy_leaves_nothing(
        project: Path, tmp_path: Path) -> None:
    """`provision up --stack lab` on an empty state dir: 6 sites x 2 machines reachable over
    SSH, `lab status` agrees, a one-site upgrade works on the inventory the stack writes,
    preview then shows no change, destroy leaves no machine, bridge or address."""
    lab_dir = tmp_path / "lab"
    engine = PulumiAutomation(work_dir=project, policy_packs=[project / "policies" / "crossguard"])
    engine.set_config(stack="lab", values={"substrate": "lab", "labStateDir": str(lab_dir),
                                           "labBase": ENGINE_LAB_BASE, "peakCps": "600"})
    runner = CliRunner()
    destroyed = False
    try:
        up = runner.invoke(app, ["up", "--stack", "lab", "--json"])
        assert up.exit_code == 0, up.output
        assert json.loads(up.stdout)["changes"]["create"] == 21
        assert callserver_states(lab_dir) == {"running"}
        estate = lab_estate(LabParams(base=ENGINE_LAB_BASE), lab_dir / "machines")
        for host in (h.name for site in estate.sites for h in site.hosts):
            dropin = current_ssh_ingress(state_dir=lab_dir, host=host)
            assert dropin is not None and f"@{ENGINE_LAB_BASE}.0/24" in dropin, host
        status = cli("lab", "status", "--state-dir", str(lab_dir), "--json")
        assert status.returncode == 0, status.stdout

        inventory = tmp_path / "from-stack.yml"
        written = runner.invoke(app, ["inventory", "--stack", "lab", "--out", str(inventory), "--json"])
        assert written.exit_code == 0, written.output
        assert load_inventory(inventory) == lab_estate(LabParams(base=ENGINE_LAB_BASE), lab_dir / "machines")
        reached = cli("exec", "--all", "--json", "-i", str(inventory), "--", "hostname")
        assert reached.returncode == 0, reached.stderr
        assert len(json.loads(reached.stdout)["results"]) == 12

        store = tmp_path / "store"
        make_release(store, "5.6.0-stack1")
        upgraded = cli("site", "upgrade", "site2", "--to", "5.6.0-stack1", "--store", str(store), "-i",
                       str(inventory), "--json")
        assert upgraded.returncode == 0, upgraded.stderr
        assert json.loads(upgraded.stdout)["outcome"] == "upgraded"

        again = runner.invoke(app, ["preview", "--stack", "lab", "--json"])
        assert again.exit_code == 0, again.output
        assert {k: v for k, v in json.loads(again.stdout)["changes"].items() if k != "same" and v} == {}

        down = runner.invoke(app, ["destroy", "--stack", "lab", "--yes", "--json"])
        assert down.exit_code == 0, down.output
        destroyed = True
        assert json.loads(down.stdout)["changes"]["delete"] == 21
        links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout)
        assert not [x["ifname"] for x in links if "cf18n80" in x["ifname"]]
        assert not (lab_dir / "machines" / "machines.json").exists()
    finally:
        if not destroyed:
            runner.invoke(app, ["destroy", "--stack", "lab", "--yes"])
        cli("lab", "down", "--state-dir", str(lab_dir))


def test_a_stack_without_a_declared_peak_fails_preview_with_exit_2(project: Path, tmp_path: Path) -> None:
    # No declared peak: the N+1 rule is mandatory and must stop the preview.
    _engine(project).set_config(stack="nopeak", values={
        "substrate": "lab", "labStateDir": str(tmp_path / "no-lab"), "labBase": LAB_BASE})
    result = CliRunner().invoke(app, ["preview", "--stack", "nopeak"])
    assert result.exit_code == 2, result.output
    assert "n-plus-one-capacity" in result.output


@pytest.mark.parametrize("command", ["preview", "up"])
def test_the_engine_refuses_a_violating_stack_naming_the_rules(
        project: Path, tmp_path: Path, command: str) -> None:
    """Five sites of one host each, SSH open to the world: the pack, run by the engine,
    refuses it; nothing is created."""
    lab = tmp_path / "no-lab"
    _engine(project).set_config(stack="bad", values={
        "substrate": "lab", "labStateDir": str(lab), "labBase": LAB_BASE, "peakCps": "600",
        "labSites": "5", "labHostsPerSite": "1", "bastionCidrs": '["0.0.0.0/0"]'})
    result = CliRunner().invoke(app, [command, "--stack", "bad", "--json"])
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["error"]["kind"] == "InvalidInput"
    message = doc["error"]["message"]
    assert "the policy pack refused stack bad" in message
    for rule in ("exactly-six-sites", "two-call-servers-per-site", "no-world-open-ssh-sip"):
        assert rule in message
    assert _resources(project, "bad") == []
    assert not lab.exists()


def test_an_openstack_preview_without_the_provider_plugin_names_it(
        project: Path, example_inventory: Path) -> None:
    """The OpenStack provider plugin is not installed here: exit 3 and how to install it."""
    _engine(project).set_config(stack="os", values={
        "substrate": "openstack", "inventory": str(example_inventory), "image": "debian-12-callserver",
        "flavor": "cs.large", "peakCps": "1200", "bastionCidrs": '["203.0.113.0/24"]'})
    result = CliRunner().invoke(app, ["preview", "--stack", "os", "--json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["error"]["kind"] == "ToolMissing"
    text = f"{doc['error']['message']} {doc['error'].get('hint') or ''}"
    assert "openstack" in text and "pulumi plugin install resource openstack" in text
    assert _resources(project, "os") == []
