"""`--limit SITE[,SITE]` on `plan` and `upgrade`, offline: validated against the estate before
anything is done, reflected in the plan printed, its JSON and the plan a run journals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import rollout_cmd
from orchestrator.cli.main import app
from orchestrator.estate.model import Estate
from orchestrator.rollout.journal import Journal, Run
from orchestrator.schemas import validate
from tests.conftest import REPO

EXAMPLE = REPO / "inventory" / "production.example.yml"
PLAN = ["plan", "--declared", "--to", "5.7.0", "-i", str(EXAMPLE)]


def _run(*args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout) if "--json" in args else result.stdout


def test_plan_limit_plans_only_those_sites_and_says_so() -> None:
    code, doc = _run(*PLAN, "--limit", "rennes,lyon", "--json")
    assert code == 0
    validate("plan", doc)
    assert [(w["site"], w["role"]) for w in doc["waves"]] == [("lyon", "canary"), ("rennes", "wave")]
    assert doc["limit"] == ["lyon", "rennes"]
    assert doc["unlimited"] == ["paris", "marseille", "bordeaux", "lille"]
    code, text = _run(*PLAN, "--limit", "lyon", "--limit", "rennes")
    assert code == 0 and "--limit lyon,rennes: left as they are: paris, marseille, bordeaux, lille" in text


def test_plan_without_limit_has_a_null_limit() -> None:
    code, doc = _run(*PLAN, "--json")
    assert code == 0 and doc["limit"] is None and doc["unlimited"] == []
    assert len(doc["waves"]) == 6


def test_plan_limit_with_detailed_exitcode_is_2_when_a_limited_site_would_change() -> None:
    code, _ = _run(*PLAN, "--limit", "lille", "--detailed-exitcode", "--json")
    assert code == 2


@pytest.mark.parametrize(("value", "detail"), [("lyon,nice", "no site 'nice' in estate fr-emergency"),
                                               ("lyon,,rennes", "empty site name")])
def test_plan_refuses_an_unknown_or_empty_site(value: str, detail: str) -> None:
    code, doc = _run(*PLAN, "--limit", value, "--json")
    assert code == 2
    validate("error", doc)
    assert detail in doc["error"]["message"] and doc["exit_code"] == 2


def test_upgrade_refuses_an_unknown_site_before_contacting_any_host(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ssh(estate: Estate) -> Estate:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr(rollout_cmd, "observe", no_ssh)
    inv = tmp_path / "inventory.yml"
    shutil.copy(EXAMPLE, inv)
    journal = tmp_path / "journal.sqlite"
    code, doc = _run("upgrade", "--to", "5.7.0", "-i", str(inv), "--journal", str(journal), "--limit", "nice",
                     "--yes", "--json")
    assert code == 2
    validate("error", doc)
    assert "no site 'nice'" in doc["error"]["message"]
    assert not journal.exists() and not (tmp_path / ".callfleet").exists()


def test_upgrade_journals_the_limited_plan_that_plan_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driven: list[Run] = []
    monkeypatch.setenv("CALLFLEET_LOCK_DIR", str(tmp_path / "locks"))  # this test's own estate claim
    monkeypatch.setattr(rollout_cmd, "observe", lambda estate: estate)  # the declared releases, no SSH
    monkeypatch.setattr(rollout_cmd, "find_bundle", lambda store, version: tmp_path)
    monkeypatch.setattr(rollout_cmd, "_drive", lambda j, run, **_: driven.append(run))
    inv = tmp_path / "inventory.yml"
    shutil.copy(EXAMPLE, inv)
    _, printed = _run("plan", "--declared", "--to", "5.7.0", "-i", str(inv), "--limit", "lyon,rennes", "--json")
    result = CliRunner().invoke(app, ["upgrade", "--to", "5.7.0", "-i", str(inv), "--journal",
                                      str(tmp_path / "j.sqlite"), "--limit", "lyon,rennes", "--yes",
                                      "--expect-digest", printed["digest"], "--json"])
    assert result.exit_code == 0 and len(driven) == 1
    journalled = Journal(tmp_path / "j.sqlite", read_only=True).run(driven[0].id)
    assert journalled.plan["limit"] == ["lyon", "rennes"] and journalled.digest == printed["digest"]
    assert [w["site"] for w in journalled.plan["waves"]] == ["lyon", "rennes"]
    status = CliRunner().invoke(app, ["rollout", "status", "--journal", str(tmp_path / "j.sqlite"), "-i", str(inv)],
                                env={"COLUMNS": "200"})
    assert "--limit lyon,rennes: left as they are: paris, marseille, bordeaux, lille" in status.stdout


def test_limit_is_on_the_commands_that_act_on_the_whole_estate() -> None:
    for command in ("plan", "upgrade"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--limit" in result.stdout and "SITE[,SITE]" in result.stdout
