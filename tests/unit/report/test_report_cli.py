"""`callfleet report` and `rollout status --html`: documents that validate, one-line errors
with exit 2 for an unknown run or a missing or foreign journal, never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.schemas import validate
from tests.conftest import cli
from tests.unit.report.journals import drive_halted_run


@pytest.fixture
def halted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Path]:
    result = drive_halted_run(tmp_path, monkeypatch)
    # no alert store but the one named: never a store of this machine's own rollouts
    monkeypatch.setenv("CALLFLEET_ALERTS", str(tmp_path / "no-alerts.yml"))
    monkeypatch.setenv("CALLFLEET_ALERTS_DB", str(tmp_path / "no-alerts.sqlite"))
    return result


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_json_validates_and_html_is_written(halted: tuple[Path, str, Path], tmp_path: Path) -> None:
    journal, run_id, alerts = halted
    page = tmp_path / "out.html"
    code, out, err = _invoke("report", run_id, "--journal", str(journal), "--alerts", str(alerts), "--html",
                             str(page), "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate("rollout-report", doc)
    assert doc["schema_version"] == 1 and doc["verdict"] == "halted" and doc["exit_code"] == 6
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_report_human_summary_names_the_failing_stage(halted: tuple[Path, str, Path], tmp_path: Path) -> None:
    journal, _, _ = halted
    page = tmp_path / "latest.html"
    code, out, err = _invoke("report", "--journal", str(journal), "--html", str(page))  # the latest run
    assert code == 0, err
    assert "halted" in out and "stage synthetic+canary: FAIL" in out and page.as_uri() in out


def test_rollout_status_html_writes_and_links_the_report(halted: tuple[Path, str, Path], tmp_path: Path) -> None:
    journal, run_id, _ = halted
    page = tmp_path / "status.html"
    code, out, err = _invoke("rollout", "status", run_id, "--journal", str(journal), "--html", str(page), "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate("run-status", doc)
    assert doc["report_html"] == str(page) and f"rollout {run_id}" in page.read_text()
    code, out, _ = _invoke("rollout", "status", run_id, "--journal", str(journal), "--html", str(page))
    assert code == 0 and page.as_uri() in out


def test_an_unknown_run_is_one_line_and_exit_2(halted: tuple[Path, str, Path]) -> None:
    journal, _, _ = halted
    code, out, _ = _invoke("report", "no-such-run", "--journal", str(journal), "--json")
    assert code == 2
    doc = json.loads(out)
    validate("error", doc)
    assert "no rollout run 'no-such-run'" in doc["error"]["message"]


def test_an_unwritable_page_is_exit_2(halted: tuple[Path, str, Path], tmp_path: Path) -> None:
    journal, run_id, _ = halted
    code, _, err = _invoke("report", run_id, "--journal", str(journal), "--html", str(tmp_path / "no" / "dir.html"))
    assert code == 2 and "cannot write the report" in err


def test_missing_and_foreign_journals_exit_2_without_a_traceback(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    for path, says in ((tmp_path / "missing.sqlite", "no rollout journal here"),
                       (foreign, "not a callfleet rollout journal")):
        proc = cli("report", "some-run", "--journal", str(path), timeout=120)  # a real process, as a user runs it
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
        assert proc.stderr.startswith("error:")
