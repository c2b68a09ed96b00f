"""Orange, 2 June 2021: a call-server bug shipped weeks earlier is activated by the routine
PSAP-trunk reconnection commands; memory fills up after a few hundred calls; entered on all
six sites at once, it made 11% of emergency calls fail for seven hours.

Replay: the release leaks about 160 KB of shared memory per call once the reconnection
command has run (64 MB per call server: exhausted after a few hundred calls). callfleet runs
that very command on the drained canary (the drill) and watches memory per call under load
(the soak): the fault shows on the canary only, and no call of the public is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.variants import breaks_after_reconnect, exhausts_memory_after_reconnect
from tests.conftest import cli
from tests.lab.conftest import Lab
from tests.scenarios.replay import DRAINED_STAGES, Replay, policy, replay
from tests.unit.report.browser import dump_dom, screenshot

pytestmark = pytest.mark.lab


def test_memory_exhausted_after_the_reconnection_command_is_contained_to_the_canary(
        lab: Lab, tmp_path: Path) -> None:
    r = replay(lab, tmp_path, "5.6.0-orange2021", exhausts_memory_after_reconnect(160), policy())
    stage = r.failed_stage
    assert stage["stage"] in {"drill", "soak"}, stage["reasons"]  # passed before the reconnection command
    assert all(s["verdict"] == "PASS" for s in r.gate["stages"][:-1]), r.gate["stages"]
    if stage["stage"] == "soak":  # memory per call is what the soak saw
        assert any("shared memory grew" in reason for reason in stage["reasons"]), stage["reasons"]


def test_every_call_failing_after_the_reconnection_command_is_contained_to_the_canary(
        lab: Lab, tmp_path: Path) -> None:
    r = replay(lab, tmp_path, "5.6.0-orange2021b", breaks_after_reconnect, policy())
    stage = r.failed_stage
    assert stage["stage"] == "drill", stage["reasons"]
    assert stage["stage"] in DRAINED_STAGES
    _report_shows_the_halt(r, tmp_path)


def _report_shows_the_halt(r: Replay, tmp_path: Path) -> None:
    """#19: the rollout's report, as a release engineer opens it after the halt, rendered by a
    real browser: every wave, the canary rolled back at the failing drill, the rest untouched."""
    page = tmp_path / "report.html"
    made = cli("report", r.outcome["run"], "--journal", str(tmp_path / "journal.sqlite"), "--html", str(page))
    assert made.returncode == 0, made.stderr
    dom = dump_dom(page, tmp_path / "profile")
    rows = {row.attrs["data-site"]: row.attrs["data-state"] for row in dom.find("tr") if "data-wave" in row.attrs}
    assert rows[r.canary] == "rolled_back" and len(rows) == 6, rows
    assert all(state == "not_reached" for site, state in rows.items() if site != r.canary), rows
    assert dom.find("section", data_stage="drill", data_verdict="FAIL"), "the failing drill is on the page"
    screenshot(page, tmp_path / "report.png", tmp_path / "profile", keep_as="report-orange2021")
