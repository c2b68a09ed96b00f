"""The report page in a real headless browser (Debian's chromium): it renders, and the DOM
shows every wave, the failing stage and number with its statistic, the rollback and the
alerts; a screenshot is kept as a test artefact (tests/artifacts/, ignored by git).

Chromium missing is a failure, not a skip: `make deps` installs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.main import app
from orchestrator.rollout.journal import Journal
from tests.unit.report.browser import dump_dom, screenshot
from tests.unit.report.journals import FAILING_NUMBER, drive_halted_run


def test_the_page_renders_in_chromium_with_waves_failing_stage_rollback_and_alerts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, run_id, alerts = drive_halted_run(tmp_path, monkeypatch)
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", run_id, "--journal", str(journal), "--alerts", str(alerts),
                                      "--html", str(page)])
    assert result.exit_code == 0, result.stderr
    html = page.read_text()
    # self-contained: every reference is to the page itself (the SVG's own #ids), nothing fetched
    refs = re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(r"url\(([^)]*)\)", html)
    assert refs and all(ref.startswith("#") for ref in refs), [r for r in refs if not r.startswith("#")]
    assert "<script" not in html and "@import" not in html

    dom = dump_dom(page, tmp_path / "profile")

    plan = Journal(journal, read_only=True).run(run_id).plan
    sites = [w["site"] for w in plan["waves"]]
    rows = {r.attrs["data-site"]: r for r in dom.find("tr") if "data-wave" in r.attrs}
    assert list(rows) == sites  # every wave, in order
    assert rows[sites[0]].attrs["data-state"] == "done" and rows[sites[1]].attrs["data-state"] == "rolled_back"
    assert all(rows[s].attrs["data-state"] == "not_reached" for s in sites[2:])
    timeline = dom.find("figure", id="timeline")[0].content
    assert all(f"{i} {s}" in timeline for i, s in enumerate(sites, 1))  # the chart's wave labels are text

    failing = [s for s in dom.find("section", data_stage="synthetic+canary", data_verdict="FAIL")]
    assert len(failing) == 1 and "failing" in failing[0].classes
    gate = dom.find("section", data_wave="2", data_site=sites[1], data_verdict="FAIL")
    assert gate and failing[0].content in gate[0].content
    number = [r for r in dom.find("tr", data_number=FAILING_NUMBER, data_verdict="FAIL")]
    assert len(number) == 1
    assert "Fisher (failures) p=" in number[0].content and "< α 0.01: crossed" in number[0].content
    assert "SER 67.0% below floor 99%" in number[0].content

    rollback = dom.find("p", data_wave="2", data_site=sites[1])
    assert rollback and "rolled back to 5.6.0-lab1" in rollback[0].content and "traffic restored" in rollback[0].content
    states = {(a.attrs["data-kind"], a.attrs["data-state"]) for a in dom.find("tr") if "alert" in a.classes}
    assert {("gate_failed", "failed"), ("gate_failed", "sent"), ("rolled_back", "sent")} <= states
    assert "alice@noc" in dom.find("div", id="decisions")[0].content
    assert dom.find("span", id="run-verdict")[0].content == "halted"

    shot = screenshot(page, tmp_path / "report.png", tmp_path / "profile")
    assert shot.stat().st_size > 50_000  # a drawn page, not a blank one
