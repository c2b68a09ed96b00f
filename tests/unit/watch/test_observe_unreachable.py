"""The watch's prober: a host that stops answering between its reachability ping and its probe
calls is failing (its calls recorded as unreachable), not a blind spot; a probe that breaks for
another reason is blind. (The lab's monthly-report test once stopped a host in that gap.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import RemoteError
from orchestrator.estate.inventory import load_inventory
from orchestrator.estate.model import Estate, Host
from orchestrator.probe import runner
from orchestrator.watch import observe
from orchestrator.watch.observe import SippProber
from tests.unit.watch.helpers import POLICY

EXAMPLE = Path(__file__).resolve().parents[3] / "inventory" / "production.example.yml"


def _prober(monkeypatch: pytest.MonkeyPatch, failure: Exception, tmp_path: Path) -> tuple[SippProber, Estate]:
    estate = load_inventory(EXAMPLE)
    victim = estate.sites[0].hosts[0].name

    def reachable(_estate: Estate, hosts: list[Host]) -> None:
        return None  # the first ping answers: the host is still up

    def probe_site(**kw: Any) -> runner.ProbeReport:
        if kw["host"] == victim:
            raise failure
        return runner.ProbeReport(site=kw["site"].name, hosts=(kw["host"],), calls_per_number=kw["calls"],
                                  rate=kw["rate"], numbers=(), per_host=())

    monkeypatch.setattr(observe, "check_reachable", reachable)
    monkeypatch.setattr(observe, "probe_site", probe_site)
    return SippProber(estate=estate, policy=POLICY, workdir=tmp_path), estate


def test_a_host_lost_between_ping_and_probe_is_failing_not_blind(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    prober, estate = _prober(monkeypatch, runner.Unreachable("no SIP answer from x: the site is unreachable"),
                             tmp_path)
    samples, blind = prober.probe(at=1000.0)
    victim = estate.sites[0].hosts[0].name
    lost = [s for s in samples if s.host == victim]
    assert blind == []
    assert {s.number for s in lost} == {n.number for n in estate.numbers}
    assert all(s.answered == 0 and s.failed == s.attempted > 0 and s.causes == {"unreachable": s.attempted}
               for s in lost)


def test_a_probe_that_breaks_otherwise_is_blind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prober, estate = _prober(monkeypatch, RemoteError("sipp to x ran past its 40s bound"), tmp_path)
    samples, blind = prober.probe(at=1000.0)
    victim = estate.sites[0].hosts[0].name
    assert not [s for s in samples if s.host == victim]
    assert [(b.source, b.site) for b in blind] == [("probes", estate.sites[0].name)]
    assert "ran past" in blind[0].message
