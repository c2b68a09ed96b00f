"""The JSON documents of `--json`: every command has its documents, shipped schemas match the
models, and real command output validates against them: every command's failure, and the
success of every command that runs offline (lab commands are checked in tests/lab)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.release.bundle import build_bundle
from orchestrator.schemas import COMMANDS, DOCUMENTS, generate, shipped, validate
from tests.conftest import REPO

EXAMPLE = REPO / "inventory" / "production.example.yml"
SCHEMA_DIR = Path(str(files("orchestrator.schemas")))


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_the_shipped_schema_is_the_models(name: str) -> None:
    assert shipped(name) == generate(name), "run `python -m orchestrator.schemas --write` and commit the files"


def _json(*args: str) -> tuple[int, object]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout)


def test_plan_success_and_failure_documents_validate(tmp_path: Path) -> None:
    code, doc = _json("plan", "--declared", "--to", "5.7.0", "-i", str(EXAMPLE), "--json")
    assert code == 0
    validate("plan", doc)
    bad = tmp_path / "bad.yml"
    bad.write_text("rollout:\n  sites_per_wave: 2\n")
    code, doc = _json("plan", "--declared", "--to", "5.7.0", "-i", str(EXAMPLE), "--policy", str(bad), "--json")
    assert code == 2
    validate("error", doc)


@pytest.mark.parametrize("argv", [
    ["estate", "show", "-i", "/nonexistent/inventory.yml", "--json"],
    ["release", "verify", "/nonexistent/bundle", "--json"],
    ["rollout", "status", "--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE), "--json"],
])
def test_every_failure_is_one_error_document(argv: list[str]) -> None:
    code, doc = _json(*argv)
    assert code == 2
    validate("error", doc)
    assert isinstance(doc, dict) and doc["exit_code"] == 2


def test_release_verify_document_validates(tmp_path: Path) -> None:
    bundle = build_bundle(source=REPO / "releases" / "stock", version="9.0", out_dir=tmp_path)
    code, doc = _json("release", "verify", str(bundle), "--json")
    assert code == 0
    validate("release-verify", doc)


# --- every --json command has a schema, and its output validates against it -------------------

def _json_commands() -> set[str]:
    import typer

    found: set[str] = set()

    def walk(group: Any, prefix: str) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            walk(sub, path)
            if any("--json" in getattr(p, "opts", ()) for p in sub.params):
                found.add(path)

    walk(typer.main.get_command(app), "")
    return found


def test_every_json_command_names_its_documents_and_every_document_has_a_schema_file() -> None:
    assert set(COMMANDS) == _json_commands()
    printed = {d for docs in COMMANDS.values() for d in docs}
    assert printed <= set(DOCUMENTS) and set(DOCUMENTS) - printed == {"error"}
    files = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert files == set(DOCUMENTS), "a schema file without a document (or the reverse)"


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_every_shipped_schema_is_a_valid_json_schema_requiring_schema_version(name: str) -> None:
    schema = shipped(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"][0] == "schema_version" and schema["properties"]["schema_version"] == {"const": 1}


def _journal_with_a_run(tmp_path: Path) -> tuple[Path, str]:
    from orchestrator.estate.inventory import load_inventory
    from orchestrator.policy.load import load_policy
    from orchestrator.rollout.journal import Journal
    from orchestrator.rollout.plan import build_plan

    plan = build_plan(estate=load_inventory(EXAMPLE), policy=load_policy(None), target="5.7.0")
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, create=True)
    run = journal.create_run(plan=plan.model_dump(mode="json"), digest=plan.digest, target="5.7.0",
                             inventory=str(EXAMPLE), policy="policies/default.yml")
    journal.record(run.id, "note", site="paris", data={"why": "a unit test"})
    return path, run.id


def test_offline_success_documents_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "locks"))  # this test's own estate claim
    journal, run_id = _journal_with_a_run(tmp_path)
    cases: list[tuple[str, list[str]]] = [
        ("estate", ["estate", "show", "-i", str(EXAMPLE)]),
        ("estate-validation", ["estate", "validate", "-i", str(EXAMPLE)]),
        ("plan", ["plan", "--declared", "--to", "5.7.0", "--limit", "lyon", "-i", str(EXAMPLE)]),
        ("run-status", ["rollout", "status", "--journal", str(journal), "-i", str(EXAMPLE)]),
        ("run-list", ["rollout", "history", "--journal", str(journal), "-i", str(EXAMPLE)]),
        ("run-events", ["rollout", "history", run_id, "--journal", str(journal), "-i", str(EXAMPLE)]),
        ("approval", ["rollout", "approve", run_id, "--wave", "2", "--by", "ci", "--journal", str(journal),
                      "-i", str(EXAMPLE)]),
        ("release-build", ["release", "build", str(REPO / "releases" / "stock"), "--version", "9.1",
                           "--out", str(tmp_path / "store")]),
        ("release-package", ["release", "package", str(tmp_path / "store" / "callserver-9.1"),
                             "--repo", str(tmp_path / "apt")]),
        ("lab-down", ["lab", "down", "--state-dir", str(tmp_path / "no-lab")]),
        ("incidents", ["incidents", "--store", str(tmp_path / "alerts.sqlite")]),
    ]
    for name, argv in cases:
        code, doc = _json(*argv, "--json")
        assert code == 0, (argv, doc)
        validate(name, doc)
    _, listed = _json("rollout", "history", "--journal", str(journal), "-i", str(EXAMPLE), "--json")
    assert isinstance(listed, dict) and [r["id"] for r in listed["runs"]] == [run_id]


def test_watch_prints_json_lines_each_a_watch_round_with_its_schema_version(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.watch_cmd import _emit
    from orchestrator.watch.report import RoundReport, SiteLine

    emit = _emit(True)
    for n in (1, 2):
        emit(RoundReport(round=n, at="2026-12-02T05:00:00Z", elapsed_s=1.5, incidents=[],
                         sites={"paris": SiteLine(status="ok", drained=False, drained_by_watch=False,
                                                  release="5.6.0")}))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        validate("watch-round", json.loads(line))


# One failing invocation per --json command that fails offline, before touching anything:
# the error document on stdout, its exit code the process's.
FAILURES: dict[str, list[str]] = {
    "estate show": ["-i", "/nonexistent/inventory.yml"],
    "estate validate": ["-i", "/nonexistent/inventory.yml"],
    "plan": ["--to", "5.7.0", "--declared", "--limit", "nice", "-i", str(EXAMPLE)],
    "upgrade": ["--to", "5.7.0", "--yes", "--limit", "nice", "-i", str(EXAMPLE)],
    "rollout status": ["--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout history": ["--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout resume": ["--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout advance": ["--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout abort": ["r1", "--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout undo": ["r1", "--yes", "--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "rollout approve": ["r1", "--wave", "1", "--by", "ci", "--journal", "/nonexistent/j.sqlite", "-i", str(EXAMPLE)],
    "gate": ["--site", "nice", "-i", str(EXAMPLE)],
    "probe": ["--site", "nice", "-i", str(EXAMPLE)],
    "exec": ["--site", "nice", "-i", str(EXAMPLE)],  # --json goes before the command: appended below
    "diag": ["--site", "nice", "-i", str(EXAMPLE)],
    "watch": ["-i", "/nonexistent/inventory.yml"],
    "lab up": ["--sites", "0", "--state-dir", "/nonexistent/lab"],
    "lab status": ["--state-dir", "/nonexistent/lab"],
    "lab down": ["--state-dir", "/proc/no-lab"],  # not a directory one can create
    "lab traffic start": ["--rate", "0", "--state-dir", "/nonexistent/lab"],
    "lab traffic stop": ["--state-dir", "/nonexistent/lab"],
    "lab traffic report": ["--state-dir", "/nonexistent/lab"],
    "lab fault cut": ["site1-cs1", "--state-dir", "/nonexistent/lab"],
    "lab fault freeze": ["site1-cs1", "--state-dir", "/nonexistent/lab"],
    "lab fault poweroff": ["site1-cs1", "--state-dir", "/nonexistent/lab"],
    "lab fault disk-full": ["site1-cs1", "--state-dir", "/nonexistent/lab"],
    "lab fault stop-service": ["site1", "--state-dir", "/nonexistent/lab"],
    "lab fault list": ["--state-dir", "/proc/no-lab"],
    "lab fault clear": ["--state-dir", "/nonexistent/lab"],
    "site upgrade": ["nice", "--to", "5.7.0", "-i", str(EXAMPLE)],
    "site rollback": ["nice", "-i", str(EXAMPLE)],
    "site drain": ["nice", "-i", str(EXAMPLE)],
    "site undrain": ["nice", "-i", str(EXAMPLE)],
    "release build": ["/nonexistent/src", "--version", "1.0", "--out", "/nonexistent/store"],
    "release verify": ["/nonexistent/bundle"],
    "release package": ["/nonexistent/bundle", "--repo", "/nonexistent/repo"],
    "provision preview": ["--stack", "no such stack!"],
    "provision up": ["--stack", "no such stack!"],
    "provision destroy": ["--stack", "no such stack!", "--yes"],
    "provision outputs": ["--stack", "no such stack!"],
    "provision inventory": ["--stack", "no such stack!"],
    "alert test": ["--channel", "x", "--config", "/nonexistent/alerts.yml"],
    "incidents": ["--config", "/nonexistent/alerts.yml"],
    "report run": ["--journal", "/nonexistent/journal.sqlite"],
    "report monthly": ["--month", "2026-13"],
    "incidents show": ["no-such-incident", "--store", "/nonexistent/alerts.sqlite"],
    "incidents callers": ["no-such-incident", "--journal", "/nonexistent/watch.sqlite"],
}


def test_every_json_command_has_a_failure_case() -> None:
    assert set(FAILURES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(FAILURES))
def test_every_json_command_fails_with_one_error_document(command: str) -> None:
    argv = [*command.split(), *FAILURES[command], "--json"]
    if command == "exec":
        argv = [*command.split(), "--json", *FAILURES[command], "--", "uptime"]
    result = CliRunner().invoke(app, argv)
    doc = json.loads(result.stdout)
    validate("error", doc)
    assert result.exit_code not in (0, 1) and doc["exit_code"] == result.exit_code, (argv, doc)


def test_a_bug_under_json_is_still_one_error_document_with_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import estate_cmd

    def broken(path: Path) -> None:
        raise RuntimeError("boom")

    monkeypatch.delenv("CALLFLEET_DEBUG", raising=False)
    monkeypatch.setattr(estate_cmd, "load_inventory", broken)
    result = CliRunner().invoke(app, ["estate", "show", "-i", str(EXAMPLE), "--json"])
    doc = json.loads(result.stdout)
    validate("error", doc)
    assert result.exit_code == 1 and doc["exit_code"] == 1
    assert doc["error"]["kind"] == "InternalError" and "RuntimeError: boom" in doc["error"]["message"]


def test_docs_cli_lists_every_document_and_command() -> None:
    text = (REPO / "docs" / "CLI.md").read_text()
    for name in DOCUMENTS:
        assert f"`{name}`" in text, f"docs/CLI.md does not list the document {name}"
    for command in COMMANDS:
        assert f"`{command}" in text, f"docs/CLI.md does not name `{command}`"


class _FakeEngine:
    """The provision port without Pulumi: what a stack with the example estate would report."""

    def __init__(self) -> None:
        from orchestrator.estate.inventory import load_inventory

        self.values = {"estate": load_inventory(EXAMPLE).model_dump(mode="json")}

    def _result(self, operation: str, stack: str) -> Any:
        from orchestrator.provision.automation import OperationResult

        return OperationResult.model_validate({"operation": operation, "stack": stack, "changes": {"create": 12},
                                               "outputs": self.values})

    def preview(self, *, stack: str, on_progress: Any = None) -> Any:
        return self._result("preview", stack)

    def up(self, *, stack: str, on_progress: Any = None) -> Any:
        return self._result("up", stack)

    def destroy(self, *, stack: str, on_progress: Any = None) -> Any:
        return self._result("destroy", stack)

    def outputs(self, *, stack: str) -> dict[str, Any]:
        return self.values


def test_provision_documents_validate_with_a_fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import provision_cmd

    monkeypatch.setattr(provision_cmd, "_engine", lambda stack: (_FakeEngine(), tmp_path))
    cases = [("provision-operation", ["preview"]), ("provision-operation", ["up"]),
             ("provision-operation", ["destroy", "--yes"]), ("provision-outputs", ["outputs"]),
             ("provision-inventory", ["inventory", "--out", str(tmp_path / "inv.yml")])]
    for name, argv in cases:
        code, doc = _json("provision", *argv, "--stack", "lab", "--json")
        assert code == 0, (argv, doc)
        validate(name, doc)


def test_python_m_orchestrator_schemas_lists_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.schemas import main

    assert main([]) == 0
    listing = capsys.readouterr().out
    assert "plan.schema.json  (plan)" in listing and "outcome.schema.json  (upgrade, rollout resume" in listing
    assert main(["plan"]) == 0
    assert json.loads(capsys.readouterr().out) == shipped("plan")
    assert main(["no-such-document"]) == 2
