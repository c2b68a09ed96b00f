"""The lab's public waits for an answer longer than the edge's own INVITE timer, so that a call
the edge ends with its 408 is a failed call in the caller's record too (the failed-callers list
and the caller's log must name the same calls)."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.lab import traffic

EDGE_CFG = Path(traffic.__file__).parent / "files" / "edge.cfg"


def _tm_timer(name: str) -> int:
    found = re.search(rf'modparam\("tm",\s*"{name}",\s*(\d+)\)', EDGE_CFG.read_text())
    assert found, f"edge.cfg sets no tm {name}"
    return int(found[1])


def test_the_public_outwaits_every_edge_timer() -> None:
    assert traffic.RECV_TIMEOUT_MS > _tm_timer("fr_inv_timer") >= _tm_timer("fr_timer")
