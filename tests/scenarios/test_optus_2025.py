"""Optus, September 2025: a routine firewall change blocked emergency calls for 13 hours while
ordinary calls still worked; aggregate health looked fine.

Replay: the release breaks the route of one emergency number (17) and nothing else. The gate
probes every number separately, so the canary fails on 17 alone while drained."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.variants import breaks_number
from tests.lab.conftest import Lab
from tests.scenarios.replay import policy, replay

pytestmark = pytest.mark.lab


def test_one_broken_emergency_route_is_caught_per_number_at_the_canary(lab: Lab, tmp_path: Path) -> None:
    r = replay(lab, tmp_path, "5.6.0-optus2025", breaks_number("17"), policy())
    stage = r.failed_stage
    assert stage["stage"] == "synthetic+canary", stage["reasons"]
    assert any("17" in reason for reason in stage["reasons"]), stage["reasons"]
    broken = r.number(stage, "17")
    assert broken["verdict"] == "FAIL" and broken["canary_ser"] == 0.0, broken
    for number in ("15", "18", "112"):  # the other routes worked: an aggregate would have looked fine
        ok = r.number(stage, number)
        assert ok["canary_failed"] == 0 and ok["canary_ser"] == 1.0, ok
