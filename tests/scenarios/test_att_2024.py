"""AT&T, 22 February 2024: an element misconfigured during an expansion put the network into
protect mode minutes after the change; 25,000+ 911 calls were blocked.

Replay: the release works at first, then its call servers answer every call 503 once they
have run 30 s (the lab's "minutes"). The synthetic stages and the drill pass; a soak longer
than that window (35 s here) is what sees it, while the canary is still drained."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.lab.variants import rejects_after
from tests.lab.conftest import Lab
from tests.scenarios.replay import DRAINED_STAGES, policy, replay

pytestmark = pytest.mark.lab

AFTER_S = 30


def test_a_node_rejecting_calls_minutes_after_the_change_is_caught_by_the_soak(lab: Lab, tmp_path: Path) -> None:
    soak = {"duration_s": AFTER_S + 5, "rate": 40, "settle_s": 1.5, "sample_every_s": 5}
    r = replay(lab, tmp_path, "5.6.0-att2024", rejects_after(AFTER_S), policy(soak=soak))
    stage = r.failed_stage
    # on an unloaded machine the soak sees it; on a slow one the earlier drained stages may already
    assert stage["stage"] in DRAINED_STAGES, stage["reasons"]
    failures = {code for n in stage["evidence"]["numbers"] for code in n["canary_failures"]}
    assert "503" in failures, stage["evidence"]["numbers"]
