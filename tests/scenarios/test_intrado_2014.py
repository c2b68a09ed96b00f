"""Intrado, April 2014: a counter of calls reached its cap and every later 911 call was
refused, for six hours across seven states; a short canary passes such a count-triggered bug.

Replay: the release refuses calls (500) once a call server has handled 600. The synthetic
stage and the drill put 200 calls each on each canary host (400: passed); the soak (800 more
calls over the site) goes past the cap while the canary is drained."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.variants import counter_cap
from tests.lab.conftest import Lab
from tests.scenarios.replay import policy, replay

pytestmark = pytest.mark.lab

CAP = 600


def test_a_counter_cap_reached_after_n_calls_is_caught_by_the_soak(lab: Lab, tmp_path: Path) -> None:
    soak = {"duration_s": 16, "rate": 50, "settle_s": 1.5, "sample_every_s": 4}
    r = replay(lab, tmp_path, "5.6.0-intrado2014", counter_cap(CAP), policy(soak=soak))
    stages = {s["stage"]: s for s in r.gate["stages"]}
    assert stages["synthetic+canary"]["verdict"] == "PASS" and stages["drill"]["verdict"] == "PASS"
    soaked = stages["soak"]
    assert soaked["verdict"] == "FAIL", soaked["reasons"]
    failures = {code for n in soaked["evidence"]["numbers"] for code in n["canary_failures"]}
    assert "500" in failures, soaked["evidence"]["numbers"]
