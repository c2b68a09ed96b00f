"""The Automation API adapter and the `callfleet provision` commands.

Nothing is mocked here. Engine events are built from the JSON the engine emits
(EngineEvent.from_json) and fed to the event sink; the CLI runs with the `pulumi` CLI
made absent (PATH and HOME pointing at an empty directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi.automation import EngineEvent
from typer.testing import CliRunner

from orchestrator.cli.provision_cmd import app
from orchestrator.errors import InvalidInput, RemoteError, ToolMissing
from orchestrator.provision import automation, program
from orchestrator.provision.automation import EventSink, Progress, locate_pulumi
from orchestrator.provision.engine_env import engine_env, policy_pack_arg

REPO = Path(__file__).resolve().parents[3]

INSTALL_FRAGMENTS = ("https://www.pulumi.com/docs/install/", "curl -fsSL https://get.pulumi.com | sh",
                     "not on PyPI")


@pytest.fixture
def no_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment in which no `pulumi` CLI can be found."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("HOME", str(empty))
    monkeypatch.setenv("CALLFLEET_TOOLS_DIR", str(empty))  # nor a `make pulumi` build
    return {"PATH": str(empty), "HOME": str(empty), "CALLFLEET_TOOLS_DIR": str(empty)}


def test_locate_pulumi_without_the_cli_says_how_to_install_it(no_pulumi: dict[str, str]) -> None:
    with pytest.raises(ToolMissing) as caught:
        locate_pulumi()
    assert caught.value.exit_code == 3
    assert "Pulumi CLI" in caught.value.message
    for fragment in INSTALL_FRAGMENTS:
        assert fragment in (caught.value.hint or "")


def test_locate_pulumi_finds_the_get_pulumi_install(no_pulumi: dict[str, str]) -> None:
    binary = Path(no_pulumi["HOME"]) / ".pulumi" / "bin" / "pulumi"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert locate_pulumi() == binary


@pytest.mark.parametrize("command", [["preview"], ["up"], ["destroy", "--yes"], ["outputs"], ["inventory"]])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_every_command_without_the_cli_exits_3_with_the_hint(
        no_pulumi: dict[str, str], command: list[str], json_flag: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--stack", "lab", *json_flag])
    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "error: the Pulumi CLI (`pulumi`) is not installed" in result.output
    for fragment in INSTALL_FRAGMENTS:
        assert fragment in result.output
    if json_flag:  # --json: one error document on stdout, the human message on stderr
        doc = json.loads(result.stdout)
        assert doc["exit_code"] == 3 and doc["error"]["kind"] == "ToolMissing" and doc["schema_version"] == 1
    else:
        assert result.stdout == ""


def test_provision_preview_in_a_real_process_exits_3_without_traceback(no_pulumi: dict[str, str]) -> None:
    env = {**os.environ, **no_pulumi, "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-c", "from orchestrator.cli.provision_cmd import app; app()",
                           "preview", "--stack", "lab"], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert "https://www.pulumi.com/docs/install/" in proc.stderr


def test_the_stack_option_is_required() -> None:
    result = CliRunner().invoke(app, ["preview"])
    assert result.exit_code == 2
    assert "--stack" in result.output


# --- engine events -> progress, violations and typed errors ------------------------
URN = ("urn:pulumi:prod::callfleet::callfleet:estate:Estate$callfleet:estate:Site"
       "$openstack:compute/instance:Instance::paris-cs1")


def event(**body: Any) -> EngineEvent:
    return EngineEvent.from_json({"sequence": 1, "timestamp": 0, **body})


def policy_event(level: str, message: str = "site paris has 1 call server(s)") -> EngineEvent:
    return event(policyEvent={"resourceUrn": "", "message": message, "color": "never",
                              "policyName": "two-call-servers-per-site", "policyPackName": "callfleet-estate",
                              "policyPackVersion": "0.0.1", "policyPackVersionTag": "0.0.1",
                              "enforcementLevel": level})


def diagnostic(message: str, severity: str = "error") -> EngineEvent:
    return event(diagnosticEvent={"message": message, "color": "never", "severity": severity})


def pre_event(op: str) -> EngineEvent:
    return event(resourcePreEvent={"metadata": {"op": op, "urn": URN, "type": "openstack:compute/instance:Instance",
                                                "provider": ""}})


def test_the_sink_reports_steps_policies_and_errors() -> None:
    seen: list[Progress] = []
    sink = EventSink(seen.append)
    for e in (pre_event("create"), pre_event("same"), policy_event("advisory"), diagnostic("boom\n"),
              diagnostic("just info", "info")):
        sink(e)
    assert [(p.kind, p.op, p.resource) for p in seen] == [
        ("step", "create", "paris-cs1"), ("policy", None, None), ("diagnostic", None, None)]
    assert sink.errors == ["boom"]
    assert [v.level for v in sink.violations] == ["advisory"]
    assert sink.mandatory == []


def test_a_program_config_error_becomes_invalid_input() -> None:
    assert automation.INVALID_INPUT_MARKER == program.INVALID_INPUT_MARKER
    sink = EventSink(None)
    sink(diagnostic(f"error: {program.INVALID_INPUT_MARKER} stack config callfleet:substrate is not set\n"))
    error = sink.failure(operation="preview", stack="lab", detail="exit status 255")
    assert isinstance(error, InvalidInput)
    assert error.message == "stack lab: stack config callfleet:substrate is not set"


def test_a_mandatory_policy_violation_becomes_invalid_input() -> None:
    sink = EventSink(None)
    sink(policy_event("mandatory"))
    sink(diagnostic("preview failed due to policy violations"))
    error = sink.failure(operation="up", stack="prod", detail="")
    assert isinstance(error, InvalidInput)
    assert error.exit_code == 2
    assert "two-call-servers-per-site: site paris has 1 call server(s)" in error.message


def test_other_failures_become_remote_errors_naming_the_last_error() -> None:
    sink = EventSink(None)
    sink(policy_event("advisory"))
    sink(diagnostic("openstack: quota exceeded for instances"))
    error = sink.failure(operation="up", stack="prod", detail="code: 255\nstderr: ...")
    assert isinstance(error, RemoteError)
    assert error.exit_code == 4
    assert error.message == "pulumi up failed on stack prod: openstack: quota exceeded for instances"
    bare = EventSink(None).failure(operation="destroy", stack="prod", detail="line one\nlast line\n")
    assert bare.message == "pulumi destroy failed on stack prod: last line"


def test_locate_pulumi_finds_the_make_pulumi_build(no_pulumi: dict[str, str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "tools" / "bin" / "pulumi"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("CALLFLEET_TOOLS_DIR", str(tmp_path / "tools"))
    assert locate_pulumi() == binary


def test_the_engine_env_puts_the_engine_dir_first_and_names_this_python(tmp_path: Path) -> None:
    env = engine_env(tmp_path / "bin" / "pulumi", {"PATH": "/usr/bin"})
    assert env["PATH"] == f"{tmp_path / 'bin'}{os.pathsep}/usr/bin"
    assert env["PULUMI_PYTHON_CMD"] == sys.executable


def test_without_a_python_language_host_the_pack_runs_as_its_analyzer(tmp_path: Path) -> None:
    pack = REPO / "policies" / "crossguard"
    assert policy_pack_arg(pack, {"PATH": str(tmp_path)}) == pack / "analyzer"
    host = tmp_path / "pulumi-language-python"
    host.write_text("#!/bin/sh\n")
    host.chmod(0o755)
    assert policy_pack_arg(pack, {"PATH": str(tmp_path)}) == pack


@pytest.mark.parametrize("text", [
    "no resource plugin 'pulumi-resource-openstack' found in the workspace at version v5.5.3 or on your $PATH",
    "Could not automatically download and install resource plugin 'pulumi-resource-openstack' at version v5.5.3, "
    "install the plugin using `pulumi plugin install resource openstack v5.5.3`: failed to download plugin",
])
def test_a_missing_provider_plugin_is_a_missing_tool_naming_it(text: str) -> None:
    sink = EventSink(None)
    sink.errors.append(text)
    error = sink.failure(operation="preview", stack="prod", detail="")
    assert isinstance(error, ToolMissing) and error.exit_code == 3
    assert "'openstack' (version 5.5.3)" in error.message
    assert "pulumi plugin install resource openstack 5.5.3" in (error.hint or "")


def test_a_missing_dynamic_provider_shim_says_make_pulumi() -> None:
    sink = EventSink(None)
    sink.errors.append("no resource plugin 'pulumi-resource-pulumi-python' found in the workspace or on your $PATH")
    error = sink.failure(operation="preview", stack="lab", detail="")
    assert isinstance(error, ToolMissing) and "make pulumi" in (error.hint or "")
