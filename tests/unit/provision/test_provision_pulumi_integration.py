"""The Automation API path end to end, with the real Pulumi engine and the real lab.

Runs only when a `pulumi` CLI is on PATH (it cannot be installed from the registries these
machines reach; see docs/PROVISIONING.md), and is skipped with that reason otherwise.
Nothing is mocked: a local file backend, the lab substrate, the policy pack, and the
`callfleet provision` commands: up, outputs, inventory, destroy.

The program and the pack run in this interpreter's venv: the test builds a throw-away
project directory whose Pulumi.yaml and PulumiPolicy.yaml point at sys.prefix and whose
program is the package's own orchestrator/provision (symlinked), so the checkout's
Pulumi.yaml (which names .venv) is left alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli.provision_cmd import app
from orchestrator.estate.inventory import load_inventory
from orchestrator.lab.topology import LabParams, lab_estate
from orchestrator.provision.automation import PulumiAutomation

from .conftest import LAB_BASE, callserver_states

REPO = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("pulumi") is None,
                       reason="the Pulumi CLI (`pulumi`) is not installed: the engine is not on PyPI; "
                              "install it from https://www.pulumi.com/docs/install/ to run this test"),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir running this venv, with a local file backend."""
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
    shutil.copy(pack / "__main__.py", root / "policies" / "crossguard" / "__main__.py")
    backend = tmp_path / "backend"
    backend.mkdir()
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{backend}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    monkeypatch.setenv("CALLFLEET_PROJECT_DIR", str(root))
    return root


@pytest.mark.timeout(900)
def test_up_outputs_inventory_destroy_on_the_lab(lab_dir: Path, project: Path, tmp_path: Path) -> None:
    engine = PulumiAutomation(work_dir=project, policy_packs=[project / "policies" / "crossguard"])
    engine.set_config(stack="lab", values={"substrate": "lab", "labStateDir": str(lab_dir),
                                           "labBase": LAB_BASE, "peakCps": "600"})
    runner = CliRunner()
    destroyed = False
    try:
        preview = runner.invoke(app, ["preview", "--stack", "lab", "--json"])
        assert preview.exit_code == 0, preview.output
        # the stack itself, the estate, 6 site components and 6 lab sites
        assert json.loads(preview.stdout)["changes"]["create"] == 14

        up = runner.invoke(app, ["up", "--stack", "lab", "--json"])
        assert up.exit_code == 0, up.output
        assert json.loads(up.stdout)["changes"]["create"] == 14
        assert callserver_states(lab_dir) == {"running"}

        outputs = runner.invoke(app, ["outputs", "--stack", "lab", "--json"])
        assert outputs.exit_code == 0, outputs.output
        assert json.loads(outputs.stdout)["outputs"]["substrate"] == "lab"

        inventory = tmp_path / "from-stack.yml"
        written = runner.invoke(app, ["inventory", "--stack", "lab", "--out", str(inventory), "--json"])
        assert written.exit_code == 0, written.output
        assert load_inventory(inventory) == lab_estate(LabParams(base=LAB_BASE), lab_dir)

        down = runner.invoke(app, ["destroy", "--stack", "lab", "--yes", "--json"])
        assert down.exit_code == 0, down.output
        destroyed = True
        assert json.loads(down.stdout)["changes"]["delete"] == 14
        assert "running" not in callserver_states(lab_dir)
    finally:
        if not destroyed:
            runner.invoke(app, ["destroy", "--stack", "lab", "--yes"])


@pytest.mark.timeout(600)
def test_a_policy_violation_fails_preview_with_exit_2(lab_dir: Path, project: Path) -> None:
    engine = PulumiAutomation(work_dir=project, policy_packs=[project / "policies" / "crossguard"])
    # No declared peak: the N+1 rule is mandatory and must stop the preview.
    engine.set_config(stack="nopeak", values={"substrate": "lab", "labStateDir": str(lab_dir),
                                              "labBase": LAB_BASE})
    result = CliRunner().invoke(app, ["preview", "--stack", "nopeak"])
    assert result.exit_code == 2, result.output
    assert "n-plus-one-capacity" in result.output
